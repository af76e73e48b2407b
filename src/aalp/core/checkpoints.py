"""What a run keeps on disk besides its tables: model checkpoints (model.pt, checkpoints/step<N>.pt) and the
resume points of training and evaluation (resume.pt). Every load is `weights_only=True`; a file that does not
load that way is a one-line error (a model) or ignored with one log line (a resume point, which only saves time).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import models
from ..artifacts import atomic_path

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def save_model(path: Path, model: models.Classifier, model_name: str, shape, extra: dict | None = None) -> None:
    state = {"format": CHECKPOINT_FORMAT, "model": model_name, "shape": list(shape),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers holding a NaN or an infinity (a diverged training leaves them)."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_model(path: str | Path, expect_model: str | None = None, expect_shape=None,
               device: torch.device | str = "cpu") -> models.Classifier:
    """Load a checkpoint written by save_model (weights_only=True). A missing, unreadable or foreign file, a
    checkpoint of another model or input shape, and weights that are not finite are each a one-line error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, pickled objects weights_only refuses, ...
        raise ValueError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or "model" not in ck:
        raise ValueError(f"{path}: not an aalp model checkpoint")
    if expect_model and ck["model"] != expect_model:
        raise ValueError(f"{path}: checkpoint holds a {ck['model']!r} model, expected {expect_model!r}")
    if expect_shape and tuple(ck["shape"]) != tuple(expect_shape):
        raise ValueError(f"{path}: checkpoint was trained on inputs {tuple(ck['shape'])}, expected {tuple(expect_shape)}")
    c = ck["shape"][0]
    model = models.build(ck["model"], ck["shape"], [0.0] * c, [1.0] * c)
    try:
        model.load_state_dict(ck["state_dict"])  # strict: the architecture must match exactly
    except (RuntimeError, TypeError, AttributeError) as e:  # PyTorch's message spans lines: keep its first
        raise ValueError(f"{path}: its weights do not fit a {ck['model']!r} model ({_first_line(e)})") from None
    bad = nonfinite_parameters(model)
    if bad:
        raise ValueError(f"{path}: {len(bad)} of {len(model.state_dict())} weight tensors are not finite "
                         f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): the training that wrote it "
                         "diverged; retrain it (a lower learning rate)")
    return model.to(device).eval()


def load_resume(path: Path, fingerprint: str) -> dict | None:
    """The state in a resume.pt written for `fingerprint`, or None (with one log line) when there is none, it was
    written for other parameters, data or code, or it does not load under weights_only=True (a truncated or foreign
    file): the run then starts from the beginning, as without one."""
    if not path.exists():
        return None
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        log.warning("ignoring %s: not a readable resume point (%s)", path, _first_line(e))
        return None
    if not isinstance(st, dict) or st.get("fingerprint") != fingerprint:
        log.warning("ignoring %s: it was written for other parameters, data, model or code", path)
        return None
    return st


def save_resume(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
