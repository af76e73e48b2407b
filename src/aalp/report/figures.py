"""Drawing helpers shared by the report notebooks (notebooks/fig*.ipynb): style, labels and colours of
the methods and sets, saving a figure as PNG and SVG under <report>/figures/, the page of a figure whose runs are missing (a
sentence, no image), error bars and the Claim section (labels.py, tablehtml.py), and Grad-CAM overlays."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display

from .labels import PARAMS, SETS, attack_name, method_name  # noqa: F401 (PARAMS, attack_name: for the notebooks)
from .tablehtml import claims_html

COLORS = {"raw": "tab:gray", "raw_gd": "0.6", "adv": "tab:orange", "adv_gd": "tab:brown", "alp": "tab:blue",
          "alp_gd": "tab:cyan", "alp_aw": "tab:purple", "trades": "tab:olive", "aalp": "tab:red"}
SET_COLORS = {"consistent": "tab:blue", "inconsistent": "tab:red", "clean_wrong": "0.75"}
SET_LABELS = SETS


def style() -> None:
    """Deterministic, compact output (fixed SVG ids, no dates); the SVG keeps its text as text (searchable,
    and what the tests read a figure's titles, labels and legends from)."""
    plt.rcParams.update({"svg.hashsalt": "aalp", "svg.fonttype": "none", "figure.dpi": 100, "savefig.dpi": 100, "font.size": 8,
                         "axes.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "legend.fontsize": 7, "legend.frameon": False})


def label(method: str) -> str:
    return method_name(method)


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


def intro(title: str, profile: str, needs: str, text: str) -> None:
    """A figure page's head: its title and the parameter set, then `text` (what the figure shows) or, for a
    figure the set cannot draw, `needs` (one sentence: why not, and what would draw it) in its place."""
    body = f"**Not drawn.** {needs}" if needs else text
    display(Markdown(f"# {title}\n\nParameter set **{profile}**. {body}"))


def figure_files_not_drawn(report_dir: str, name: str, title: str, needs: str) -> None:
    """The figure files the pipeline declares for a figure the set cannot draw: a text-only figure saying why
    (`needs`), written but neither shown on the page (intro says it in words) nor linked."""
    fig = plt.figure(figsize=(7, 1.1))
    fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=9, weight="bold")
    fig.text(0.5, 0.3, needs, ha="center", va="center", fontsize=8, wrap=True)
    out = Path(report_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", bbox_inches="tight", metadata={"Software": None})
    fig.savefig(out / f"{name}.svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)


def mean_half(df: pd.DataFrame, by: str, col: str) -> pd.DataFrame:
    """Per value of `by`: the mean of `col` over seeds and the half-width of its 95% Student-t interval
    ('half'; 0 with one seed): the error bars of every figure, the convention of every table."""
    from .units import half_width

    g = df.groupby(by)[col].agg(["mean", "std", "count"])
    g["half"] = [half_width(s, n) if n > 1 else 0.0 for s, n in zip(g["std"].fillna(0.0), g["count"])]
    return g.fillna({"half": 0.0})


def show_claims(text: str, claims: pd.DataFrame) -> None:
    """A figure page's Claim section: `text`, then the claims table (tablehtml.claims_html); nothing for a
    figure without claims (one the set cannot draw)."""
    if claims.empty:
        return
    display(Markdown("## Claim\n\n" + text))
    display(HTML(claims_html(claims)))


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


# The budget curve's points (data/budget.csv): this set's snapshots and final models on one line, the reference
# set (another training attack) and the paper apart.
POINTS = {"snapshot": "snapshot", "final": "final model", "reference": "reference set", "paper": "paper"}


def budget_figure(df: pd.DataFrame):
    """The budget curve of data/budget.csv: a panel per dataset and attack, x the training steps (log scale, a tick
    at each point), y AALP − ALP in points; this set's snapshots and final models joined, mean ± 95% t half-width
    over seeds (black, error bars; n seeds beside each point), the reference set's point (open square, its training
    attack in the legend), the paper's Table 2 gain (red diamond, no interval) and a line at 0. Returns the figure."""
    from matplotlib.ticker import FixedLocator, NullLocator

    panels = list(dict.fromkeys(zip(df.dataset, df.attack)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.4), squeeze=False)
    for ax, (d, a) in zip(axes[0], panels):
        g = df[(df.dataset == d) & (df.attack == a)].sort_values("step")
        ax.axhline(0, color="0.5", lw=0.8, zorder=0)
        for point, style in (("ours", {"fmt": "-o", "color": color("aalp")}),
                             ("reference", {"fmt": "s", "color": "0.3", "mfc": "white"})):
            p = g[g.point.isin(["snapshot", "final"])] if point == "ours" else g[g.point == point]
            if p.empty:
                continue
            ax.errorbar(p.step, p["mean"], yerr=p.half.fillna(0.0), ms=4, capsize=2, lw=1,
                        label=p.training.iloc[0] + (", this set" if point == "ours" else ""),
                        **style)
            for r in p.itertuples():
                ax.annotate(f"n={r.n_seeds}", (r.step, r.mean), xytext=(4, 4), textcoords="offset points", fontsize=6)
        paper = g[g.point == "paper"]
        if len(paper):
            ax.plot(paper.step, paper["mean"], "D", color="tab:red", ms=5, label=paper.training.iloc[0])
        ax.set_xscale("log")
        steps = sorted(g.step.unique())
        ax.xaxis.set_major_locator(FixedLocator(steps))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{s:,}" for s in steps], rotation=30, ha="right")
        ax.set_xlim(min(steps) / 1.6, max(steps) * 1.6)
        ax.set_xlabel("training steps (log scale)")
        ax.set_ylabel("AALP − ALP (points of accuracy)")
        ax.set_title(f"{d}: {attack_name(a)}")
        ax.legend(loc="best")
    fig.tight_layout()
    return fig


def budget_points_html(df: pd.DataFrame) -> str:
    """The budget curve's points as a table: step, which point, training, what it is measured on (the file and
    the test images), seeds, AALP − ALP (mean ± 95% t half-width), ALP and AALP's mean accuracies."""
    from .tablehtml import html_table, minus

    rows = []
    for r in df.itertuples():
        iv = "" if r.n_seeds == 0 else f"{r.mean:.2f}" + (f" ± {r.half:.2f}" if r.n_seeds > 1 else " (1 seed)")
        rows.append([f"{r.dataset}, {attack_name(r.attack)}", {"text": f"{int(r.step):,}", "cls": "num"},
                     POINTS.get(r.point, r.point), r.training, r.source,
                     {"text": "" if r.n_samples != r.n_samples else f"{int(r.n_samples):,}", "cls": "num"},
                     {"text": str(r.n_seeds) if r.n_seeds else "", "cls": "num"},
                     {"text": minus(iv if r.n_seeds else f"{r.mean:.2f}"), "cls": "num"},
                     {"text": f"{r.alp_mean:.2f}", "cls": "num"}, {"text": f"{r.aalp_mean:.2f}", "cls": "num"}])
    return html_table(["attack", "step", "point", "training", "measured on", "test images", "seeds",
                       "AALP − ALP", "ALP", "AALP"], rows, cls="budget")
