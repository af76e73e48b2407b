"""Drawing helpers shared by the report notebooks (notebooks/fig*.ipynb): style, labels and colours of
the methods and sets, saving a figure as PNG and SVG under <report>/figures/, the text-only figure of
a figure whose runs are missing, and Grad-CAM overlays. Matplotlib only; nothing is computed here."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

LABELS = {"raw": "RAW", "raw_gd": "RAW+GD", "adv": "ADV", "adv_gd": "ADV+GD", "alp": "ALP", "alp_gd": "ALP+GD",
          "alp_aw": "ALP+AW", "trades": "TRADES", "aalp": "AALP"}
COLORS = {"raw": "tab:gray", "raw_gd": "0.6", "adv": "tab:orange", "adv_gd": "tab:brown", "alp": "tab:blue",
          "alp_gd": "tab:cyan", "alp_aw": "tab:purple", "trades": "tab:olive", "aalp": "tab:red"}
SET_COLORS = {"consistent": "tab:blue", "inconsistent": "tab:red", "clean_wrong": "0.75"}
SET_LABELS = {"consistent": "Consistent", "inconsistent": "Inconsistent", "clean_wrong": "clean wrong (neither set)"}


def style() -> None:
    """Deterministic, compact output (fixed SVG ids, no dates); the SVG keeps its text as text (searchable,
    and what the tests read a figure's titles, labels and legends from)."""
    plt.rcParams.update({"svg.hashsalt": "aalp", "svg.fonttype": "none", "figure.dpi": 100, "savefig.dpi": 100, "font.size": 8,
                         "axes.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "legend.fontsize": 7, "legend.frameon": False})


def label(method: str) -> str:
    return LABELS.get(method, method)


def color(method: str) -> str:
    return COLORS.get(method, "black")


def save(fig, report_dir: str, name: str, alt: str | None = None) -> None:
    """<report_dir>/figures/<name>.png and .svg; in a notebook, the saved PNG is then shown as the cell's output
    and the figure closed: the page embeds the file itself, and matplotlib's inline backend does not draw the
    figure a third time (drawing is most of a figure item's time). alt: the page's text for the image."""
    out = Path(report_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    fig.savefig(png, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(out / f"{name}.svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    from IPython import get_ipython

    if get_ipython() is not None:
        from IPython.display import Image, display

        display(Image(filename=str(png), alt=alt or name))  # alt: the item's title


def needs_figure(report_dir: str, name: str, title: str, needs: str):
    """A small text-only figure stating which runs `name` needs; saved like any figure."""
    fig = plt.figure(figsize=(7, 1.1))
    fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=9, weight="bold")
    fig.text(0.5, 0.3, needs, ha="center", va="center", fontsize=8)
    save(fig, report_dir, name, alt=f"{title}: {needs}")
    return fig


def image(x: np.ndarray) -> np.ndarray:
    """C x H x W in [0, 1] -> H x W (gray) or H x W x 3."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    return x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))


def show_image(ax, x) -> None:
    ax.imshow(image(x), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def integer_ticks(ax) -> None:
    """Whole numbers only on the x axis (epochs)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


CAM_CMAP = "jet"
ZERO_MAP = "Grad-CAM zero\neverywhere"


def overlay(ax, x, cam):
    """The image in gray (RGB as is) with the Grad-CAM map, scaled to its own maximum (0..1), over it; a map
    that is zero everywhere (no positive evidence for the true class) leaves the image uncovered and says so.
    Returns the map's image (for cam_colorbar), or None for a zero map."""
    show_image(ax, x)
    cam = np.asarray(cam, dtype=np.float32)
    peak = float(cam.max())
    if not peak > 0:
        ax.text(0.5, 0.06, ZERO_MAP, transform=ax.transAxes, ha="center", va="bottom", fontsize=6, color="black",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
        return None
    return ax.imshow(cam / peak, cmap=CAM_CMAP, alpha=0.45, vmin=0, vmax=1)


def cam_colorbar(fig, axes) -> None:
    """One colour scale for the Grad-CAM overlays of `axes`: each map relative to its own maximum."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cb = fig.colorbar(ScalarMappable(Normalize(0, 1), CAM_CMAP), ax=axes, shrink=0.5, aspect=30, pad=0.02)
    cb.set_label("Grad-CAM / the map's own maximum")


def class_name(names, k) -> str:
    """The name of class k (names: a figure's 'class_names' array)."""
    return str(names[int(k)]) if 0 <= int(k) < len(names) else f"class {int(k)}"


# Fig. 9's quantities in words.
METRIC_LABELS = {"n50": "n50: features holding 50 % of the contribution",
                 "n90": "n90: features holding 90 % of the contribution",
                 "gini": "Gini coefficient of the contributions",
                 "cam_area_adv": "Grad-CAM area: share of pixels above half the peak",
                 "cam_on_object_adv": "Grad-CAM on the object: share of the map's mass"}


def metric_label(k: str) -> str:
    return METRIC_LABELS.get(k, k)


def claims_table(claims: pd.DataFrame) -> pd.DataFrame:
    """Claims (dataset, method, claim, mean, std, n_seeds) as one row per dataset/method, one column per claim
    ('mean ± std', n seeds)."""
    if claims.empty:
        return claims
    c = claims.assign(value=[f"{m:.4g} ± {s:.2g}" if n > 1 else f"{m:.4g}"
                             for m, s, n in zip(claims["mean"], claims["std"], claims["n_seeds"])])
    wide = c.pivot(index=["dataset", "method"], columns="claim", values="value")
    wide = wide.reindex(columns=list(dict.fromkeys(claims.claim)))
    n = claims.groupby(["dataset", "method"])["n_seeds"].max().rename("n_seeds")
    return wide.join(n).reindex(list(dict.fromkeys(zip(claims.dataset, claims.method))))
