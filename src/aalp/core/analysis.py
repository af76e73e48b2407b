"""Analysis of one trained model: penultimate feature contributions (Eq. 5) and Grad-CAM maps on clean
and adversarial test samples, for the final model and for each kept training checkpoint.

Two counts of Grad-CAM images: the CAM metrics (cam_area, cam_on_object, of the final model and of each
checkpoint) are means over the first M = `cam_metric_samples` test images, the grids draw the first
K = `cam_samples` (the same images for every model and seed). The files keep full images and maps only for
the K grid images (M images of maps would make a published set tens of MB larger) and, for all M metric
images, each image's own metric values, of which the summaries are exact means (cam_summary).

Outputs, in <run>/analysis/ (each written atomically; summary.json last, it marks completion):
  contributions.csv      feature, c: Eq. 5 over the first `samples` test samples (one row per feature)
  cam.npz                index, label, x, x_adv, cam_clean, cam_adv, pred_adv of the K grid images (images
                         and maps as float16, maps upsampled to the input size); area_clean, area_adv,
                         on_object_clean, on_object_adv (float64, M each: cam_per_image; on-object NaN where
                         undefined) of the M metric images
  checkpoints.csv        step, n50, n90, gini, cam_area_adv, cam_on_object_adv   (no rows without checkpoints)
  checkpoint_cams.npz    steps, cam_adv (S x K x H x W), x_adv (S x K x C x H x W), area_adv, on_object_adv
                         (S x M)  (no rows without checkpoints)
  summary.json           contribution_summary, cam_summary of clean and adversarial maps, provenance,
                         cam_metric_samples (M) and cam_samples (K). An analysis written before the two
                         counts were separate has cam_samples only, and its metrics are over those images.
Definitions: docs/method.md#feature-contribution.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from tqdm import tqdm

from . import losses
from ..artifacts import atomic_path, provenance, write_json
from .attacks import eval_mode, pgd
from ..config import AttackSpec
from .data import load_prepared, to_float
from .checkpoints import load_model
from .training import select_device

log = logging.getLogger(__name__)
DEFAULTS = {"samples": None, "cam_samples": 8, "cam_metric_samples": 500, "batch_size": 256}
CHECKPOINT_COLUMNS = ("step", "n50", "n90", "gini", "cam_area_adv", "cam_on_object_adv")
OBJECT_THRESHOLD = 0.1  # a pixel of a 1-channel image belongs to the object when its value is above this


def _tensor(a, device) -> torch.Tensor:
    return (a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))).to(device)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return to_float(x) if x.dtype == torch.uint8 else x.float()


def _bar(it, desc: str, **kw):
    return tqdm(it, desc=desc, file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 10, **kw)


# ----------------------------------------------------------------------------- feature contributions
def feature_contributions(model, x, y, batch_size: int, device, desc: str | None = None) -> np.ndarray:
    """Eq. 5 over all samples: c_j = mean_n |h_nj dL_cls/dh_nj|, h = model.features(x), L_cls the true-class
    cross-entropy of model.classifier(h) (summed, so that each row's gradient is its own sample's).
    Eval mode, no Guided Dropout mask. x: uint8 (0..255) or float (0..1) images, numpy or torch.
    desc: show a progress bar with this label."""
    device = torch.device(device)
    n = len(x)
    total = torch.zeros(model.feature_dim, dtype=torch.float64)
    with eval_mode(model):
        for i in _bar(range(0, n, batch_size), desc or "", unit="batch", leave=False, disable=desc is None):
            xb, yb = _as_float(_tensor(x[i:i + batch_size], device)), _tensor(y[i:i + batch_size], device)
            with torch.no_grad():
                h = model.features(xb).float()
            h.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model.classifier(h), yb, reduction="sum")
                (g,) = torch.autograd.grad(loss, h)
            total += (losses.contributions(h.detach(), g) * len(xb)).double().cpu()  # batch mean -> batch sum
    return (total / max(n, 1)).numpy()


def contribution_summary(c) -> dict:
    """Concentration of the contributions c (D,), all >= 0:
    n50 / n90: the fewest features (largest first) whose contributions reach 50% / 90% of the total;
    gini: Gini coefficient, sum_i (2i - n - 1) x_(i) / (n sum x) over ascending x (0: all equal,
    (n-1)/n: one feature holds everything). All-zero c: n50 = n90 = 0 (the empty set already reaches
    0% of nothing) and gini = 0 (all features equal)."""
    c = np.asarray(c, dtype=np.float64).ravel()
    if c.size == 0 or not np.isfinite(c).all() or (c < 0).any():
        raise ValueError("contributions must be a non-empty vector of finite values >= 0")
    d, total = c.size, c.sum()
    if total == 0:
        return {"n50": 0, "n90": 0, "gini": 0.0, "feature_dim": d}
    asc = np.sort(c)
    cum = np.cumsum(asc[::-1])
    tol = 1e-9 * total  # rounding in the cumulative sum must not push a share just past the next feature

    def needed(frac: float) -> int:
        return int(np.searchsorted(cum, frac * total - tol, side="left")) + 1

    i = np.arange(1, d + 1)
    gini = float(((2 * i - d - 1) * asc).sum() / (d * total))
    return {"n50": needed(0.5), "n90": needed(0.9), "gini": gini, "feature_dim": d}


# ----------------------------------------------------------------------------- Grad-CAM
def grad_cam(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (captum's LayerGradCam) of the true-class logit on model.cam_layer, ReLU'd and upsampled
    bilinearly to the input size: B x H x W. Eval mode."""
    with eval_mode(model), torch.enable_grad():
        cam = LayerGradCam(model, model.cam_layer).attribute(x.detach().float().requires_grad_(True), target=y,
                                                            relu_attributions=True)
    cam = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return cam.squeeze(1)


def grad_cam_direct(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same map computed by hand: activations A (B x K x h x w) of model.cam_layer, alpha_k = spatial
    mean of d logit_y / dA_k, cam = relu(sum_k alpha_k A_k), upsampled bilinearly to the input size."""
    acts = []

    def keep(_module, _inputs, out):  # replace the output by a leaf, so the gradient stops there
        a = out.detach().requires_grad_(True)
        acts.append(a)
        return a

    handle = model.cam_layer.register_forward_hook(keep)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(x.detach().float())
            (g,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), acts[0])
    finally:
        handle.remove()
    alpha = g.mean((2, 3), keepdim=True)
    cam = F.relu((alpha * acts[0].detach()).sum(1, keepdim=True))
    return F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False).squeeze(1)


def cam_per_image(cam: torch.Tensor, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each map's area (the fraction of pixels with cam > half that map's maximum; 0 for an all-zero map) and
    on-object share (1-channel x: the share of the map's mass on object pixels, x > 0.1; NaN for an all-zero
    map and for every map of multi-channel x), as float64 arrays of len(cam)."""
    cam = torch.as_tensor(cam).double()
    if len(cam) == 0:
        return np.zeros(0), np.zeros(0)
    peak = cam.flatten(1).amax(1)
    above = cam > 0.5 * peak[:, None, None]
    area = torch.where(peak > 0, above.flatten(1).double().mean(1), torch.zeros_like(peak))
    on_object = torch.full_like(peak, float("nan"))
    if x.shape[1] == 1:
        mass = cam.flatten(1).sum(1)
        on = (cam * (torch.as_tensor(x)[:, 0] > OBJECT_THRESHOLD)).flatten(1).sum(1)
        ok = mass > 0
        on_object[ok] = on[ok] / mass[ok]
    return area.numpy(), on_object.numpy()


def summarise(area, on_object) -> dict:
    """cam_area: the mean of the per-image areas (0 without images); cam_on_object: the mean of the defined
    per-image on-object shares (None when none is)."""
    area, on_object = np.asarray(area, np.float64), np.asarray(on_object, np.float64)
    ok = ~np.isnan(on_object)
    return {"cam_area": float(area.mean()) if len(area) else 0.0,
            "cam_on_object": float(on_object[ok].mean()) if ok.any() else None}


def cam_summary(cam: torch.Tensor, x: torch.Tensor) -> dict:
    """cam_area: mean over samples of the fraction of pixels with cam > half that sample's maximum (an
    all-zero map counts as area 0). cam_on_object (1-channel x only, else None): mean over samples of the
    share of the map's mass on object pixels (x > 0.1), skipping all-zero maps (None if every map is)."""
    return summarise(*cam_per_image(cam, x))


# ----------------------------------------------------------------------------- the stage
def _adversarial(model, x, y, attack: AttackSpec, seed: int, batch_size: int) -> torch.Tensor:
    """PGD of the training attack from a fresh generator seeded with `seed` (same random starts for every model)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return torch.cat([pgd(model, x[i:i + batch_size], y[i:i + batch_size], eps=attack.eps, step=attack.step,
                          steps=attack.steps, random_start=attack.random_start, generator=gen)
                      for i in range(0, len(x), batch_size)])


def _cams(model, x, y, batch_size: int) -> torch.Tensor:
    return torch.cat([grad_cam(model, x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in (run_dir / "checkpoints").glob("step*.pt")
             if (m := re.fullmatch(r"step(\d+)\.pt", p.name))]
    return sorted(found)


def _f16(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float16)


def analyze(cfg: dict, dataset: str, method: str, seed: int, run_dir: str | Path, code_hash: str | None = None) -> dict:
    """Analyse the run in run_dir (model.pt and, when present, checkpoints/step*.pt) into run_dir/analysis/.

    The checkpoint series covers the kept checkpoints only; the final model.pt is not repeated as its
    last row. Adversarial samples come from the dataset's training attack (not a method's override),
    seeded with evaluation.seed, crafted against each analysed model in eval mode. On-object shares of
    adversarial maps use the clean image as the object mask. code_hash: the digest of the stage's source
    files, recorded in summary.json. Returns the summary."""
    run_dir = Path(run_dir)
    out = run_dir / "analysis"
    a = {**DEFAULTS, **cfg.get("analysis", {})}
    exp = cfg["experiments"][dataset]
    attack = AttackSpec(**exp["attack"])
    attack_seed = cfg["evaluation"]["seed"]
    device = select_device(cfg["training"]["device"])
    data = load_prepared(cfg["data"]["dir"], dataset)
    model = load_model(run_dir / "model.pt", expect_model=exp["model"], expect_shape=data.shape, device=device)
    n_test = len(data.test_x)
    samples = a["samples"] if a["samples"] is not None else cfg["evaluation"].get("n_samples")
    n = n_test if samples is None else min(samples, n_test)
    k, m_cam = min(a["cam_samples"], n_test), min(a["cam_metric_samples"], n_test)  # grid, metric images
    kk = max(k, m_cam)  # the images attacked and mapped: the grid's and the metrics' (both the first ones)
    bs = a["batch_size"]
    if a["cam_samples"] < 1 or a["cam_metric_samples"] < 1 or bs < 1 or (samples is not None and samples < 1):
        raise ValueError(f"analysis: samples, cam_samples, cam_metric_samples and batch_size must be >= 1 (got {a})")
    ckpts = _checkpoints(run_dir)
    log.info("analyze %s/%s seed %d on %s: contributions over %d test samples, Grad-CAM metrics on %d, grid %d "
             "(attack eps %.4g, step %.4g, %d steps), %d checkpoints", dataset, method, seed, device, n, m_cam, k,
             attack.eps, attack.step, attack.steps, len(ckpts))

    (out / "summary.json").unlink(missing_ok=True)  # an old summary must not vouch for new files
    x_n, y_n = data.test_x[:n], data.test_y[:n]
    x = to_float(torch.from_numpy(data.test_x[:kk]).to(device))
    y = torch.from_numpy(data.test_y[:kk]).to(device)
    x_m = x[:m_cam].cpu()

    def per_image(cam):  # the metric images' values
        return cam_per_image(cam[:m_cam].cpu(), x_m)

    def measure(m, label):
        c = feature_contributions(m, x_n, y_n, bs, device, desc=f"analyze {dataset}/{method}/s{seed} {label}")
        x_adv = _adversarial(m, x, y, attack, attack_seed, bs)
        return c, x_adv, _cams(m, x_adv, y, bs)

    c, x_adv, cam_adv = measure(model, "final")
    cam_clean = _cams(model, x, y, bs)
    with torch.no_grad(), eval_mode(model):
        pred_adv = model(x_adv[:k]).argmax(1)
    summ = contribution_summary(c)
    (area_clean, on_clean), (area_adv, on_adv) = per_image(cam_clean), per_image(cam_adv)
    clean, adv = summarise(area_clean, on_clean), summarise(area_adv, on_adv)

    with atomic_path(out / "contributions.csv") as tmp:
        pd.DataFrame({"feature": np.arange(len(c)), "c": c}).to_csv(tmp, index=False)
    with atomic_path(out / "cam.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, index=np.arange(k), label=data.test_y[:k], x=_f16(x[:k]), x_adv=_f16(x_adv[:k]),
                 cam_clean=_f16(cam_clean[:k]), cam_adv=_f16(cam_adv[:k]), pred_adv=pred_adv.cpu().numpy(),
                 area_clean=area_clean, area_adv=area_adv, on_object_clean=on_clean, on_object_adv=on_adv)

    rows, ck_cams, ck_x, ck_area, ck_on = [], [], [], [], []
    for step, path in _bar(ckpts, f"analyze {dataset}/{method}/s{seed} checkpoints", unit="ckpt"):
        m = load_model(path, expect_model=exp["model"], expect_shape=data.shape, device=device)
        c_s, x_adv_s, cam_s = measure(m, f"step{step}")
        area_s, on_s = per_image(cam_s)
        s, ca = contribution_summary(c_s), summarise(area_s, on_s)
        rows.append({"step": step, "n50": s["n50"], "n90": s["n90"], "gini": s["gini"],
                     "cam_area_adv": ca["cam_area"], "cam_on_object_adv": ca["cam_on_object"]})
        ck_cams.append(_f16(cam_s[:k]))
        ck_x.append(_f16(x_adv_s[:k]))
        ck_area.append(area_s)
        ck_on.append(on_s)
    # Written for every run (no rows without checkpoints), so that every analysis stage has the same outputs.
    with atomic_path(out / "checkpoints.csv") as tmp:
        pd.DataFrame(rows, columns=list(CHECKPOINT_COLUMNS)).to_csv(tmp, index=False)
    h, w = x.shape[-2:]
    with atomic_path(out / "checkpoint_cams.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, steps=np.array([r["step"] for r in rows], dtype=np.int64),
                 cam_adv=np.stack(ck_cams) if rows else np.zeros((0, k, h, w), np.float16),
                 x_adv=np.stack(ck_x) if rows else np.zeros((0, k, *x.shape[1:]), np.float16),
                 area_adv=np.stack(ck_area) if rows else np.zeros((0, m_cam)),
                 on_object_adv=np.stack(ck_on) if rows else np.zeros((0, m_cam)))

    summary = {**summ, "cam_area_clean": clean["cam_area"], "cam_area_adv": adv["cam_area"],
               "cam_on_object_clean": clean["cam_on_object"], "cam_on_object_adv": adv["cam_on_object"],
               "samples": n, "cam_metric_samples": m_cam, "cam_samples": k}
    write_json(out / "summary.json", provenance(str(device), seed=seed, dataset=dataset, method=method,
                                                model=exp["model"], analysis=a, attack=vars(attack),
                                                attack_seed=attack_seed, checkpoint_steps=[r["step"] for r in rows],
                                                code_hash=code_hash, **summary))
    log.info("n50 %d n90 %d of %d features, gini %.3f | cam area clean %.3f adv %.3f", summ["n50"], summ["n90"],
             summ["feature_dim"], summ["gini"], clean["cam_area"], adv["cam_area"])
    return summary
