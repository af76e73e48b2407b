"""What each figure draws, already reduced (data/figNN.csv or .npz), and the per-seed numbers that decide
its claim, from the run files. The notebooks only read these files and draw."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.sets import consistency_sets
from ..layout import run_dir
from .camclaims import COUNT, RECORDED, metric_count
from .claims import claims_frame, frame
from .inputs import (CKPT_CLAIMS, SETS, analysis_path, attack_columns, checkpoint_runs, load_csv, load_json, load_npz,
                     load_parquet, metrics_path, models, records_path, seeds, sweep_bases, sweep_runs)

def active_features(c) -> int:
    """Active features: those with a nonzero contribution c_j > 0 on the analysed samples (a feature whose
    activation, or whose gradient, is zero on every analysed sample contributes exactly 0)."""
    return int((np.asarray(c, dtype=np.float64) > 0).sum())


def n50_share_of_active(n50: int, active: int) -> float:
    """n50 out of the active features, in percent: 100 · n50 / active. n50 counted among the active features is
    n50 itself (a feature with c = 0 holds none of the contribution); as a share of them, dead features do not
    decide."""
    return 100.0 * n50 / active


def contribution_curves(cfg: dict, name: str = "fig01") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sorted contribution curves (data) and n50/n90/gini/active/n50_active claims of the models of `name` (n50,
    n90, gini from summary.json; active: active_features() of contributions.csv; n50_active: n50 as a share of
    the active features, n50_share_of_active(), in percent, none for a model without active features).

    data: dataset, method, seed, rank (1 = largest), share (c sorted descending, normalised to sum 1;
    all-zero c gives share 0), cum (cumulative share up to this rank), active (this seed's active features),
    feature_dim."""
    curves, claims = [], []
    for d, ms in models(cfg, name):
        for m in ms:
            for s in seeds(cfg, d, m):
                summ = load_json(analysis_path(d, m, s, "summary.json"))
                for k in ("n50", "n90", "gini"):
                    claims.append({"dataset": d, "method": m, "claim": k, "seed": s, "value": summ[k]})
                c = np.sort(load_csv(analysis_path(d, m, s, "contributions.csv"))["c"].to_numpy(np.float64))[::-1]
                share = c / c.sum() if c.sum() > 0 else np.zeros_like(c)
                active = active_features(c)
                claims.append({"dataset": d, "method": m, "claim": "active", "seed": s, "value": active})
                if active:
                    claims.append({"dataset": d, "method": m, "claim": "n50_active", "seed": s,
                                   "value": n50_share_of_active(summ["n50"], active)})
                curves.append(pd.DataFrame({"dataset": d, "method": m, "seed": s, "rank": np.arange(1, len(c) + 1),
                                            "share": share, "cum": np.cumsum(share), "active": active,
                                            "feature_dim": len(c)}))
    cols = ["dataset", "method", "seed", "rank", "share", "cum", "active", "feature_dim"]
    data = pd.concat(curves, ignore_index=True)[cols] if curves else pd.DataFrame(columns=cols)
    return data, claims_frame(claims)


# Class names by dataset source (the prepared manifest carries only num_classes); SVHN's labels are the digits
# (torchvision maps the digit 0 to label 0). Any other source: 'class k'.
CLASS_NAMES = {
    "mnist": [str(k) for k in range(10)],
    "svhn": [str(k) for k in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def class_names(cfg: dict, dataset: str, n: int = 10) -> np.ndarray:
    """The names of the classes 0..n-1 of `dataset` (by its source, CLASS_NAMES; 'class k' otherwise)."""
    names = CLASS_NAMES.get(cfg["datasets"][dataset]["source"], [])
    return np.array([names[k] if k < len(names) else f"class {k}" for k in range(n)])


def cam_count(cfg: dict, available: int) -> int:
    """How many Grad-CAM samples a grid draws: analysis.cam_samples, or all there are when fewer (the CAM
    metrics' own count is what each analysis holds: camclaims.metric_count)."""
    return min(int(cfg["analysis"]["cam_samples"]), int(available))


def metric_counts(cfg: dict, d: str, m: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed of (d, m): the images its CAM metrics are over and whether its analysis records that count
    (camclaims.metric_count, from summary.json)."""
    got = [metric_count(load_json(analysis_path(d, m, s, "summary.json"))) for s in seeds(cfg, d, m)]
    return np.array([n for n, _ in got], dtype=np.int64), np.array([r for _, r in got], dtype=bool)


def cam_grid(cfg: dict, name: str = "fig02") -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Grad-CAM maps of the first seed's models of `name`, the cam_count() samples drawn (arrays
    '<dataset>/<method>/<field>' with field x, x_adv, cam_clean, cam_adv, label, pred_adv, index (float32 for
    the float16 ones), cam_adv_peak (each map's maximum; 0: the map is zero everywhere), class_names and, per
    seed, cam_metric_samples and cam_metric_recorded (metric_counts)) and the cam_area_adv / cam_on_object_adv
    claims over all seeds (cam_on_object_adv only for 1-channel inputs) with the count ('cam_metric_samples')."""
    arrays, claims = {}, []
    for d, ms in models(cfg, name):
        for m in ms:
            for s in seeds(cfg, d, m):
                summ = load_json(analysis_path(d, m, s, "summary.json"))
                for k in ("cam_area_adv", "cam_on_object_adv"):
                    if summ.get(k) is not None:
                        claims.append({"dataset": d, "method": m, "claim": k, "seed": s, "value": summ[k]})
                claims.append({"dataset": d, "method": m, "claim": COUNT, "seed": s, "value": metric_count(summ)[0]})
            arrays[f"{d}/{m}/{COUNT}"], arrays[f"{d}/{m}/{RECORDED}"] = metric_counts(cfg, d, m)
            z = load_npz(analysis_path(d, m, seeds(cfg, d, m)[0], "cam.npz"))
            k = cam_count(cfg, len(z["x"]))
            for f in ("x", "x_adv", "cam_clean", "cam_adv", "label", "pred_adv", "index"):
                arrays[f"{d}/{m}/{f}"] = (z[f].astype(np.float32) if z[f].dtype == np.float16 else z[f])[:k]
            arrays[f"{d}/{m}/cam_adv_peak"] = arrays[f"{d}/{m}/cam_adv"].reshape(k, -1).max(axis=1) if k else np.zeros(0, np.float32)
            arrays[f"{d}/{m}/class_names"] = class_names(cfg, d)
    return arrays, claims_frame(claims)


def records_with_sets(cfg: dict, d: str, m: str, s: int) -> pd.DataFrame:
    r = load_parquet(records_path(d, m, s))
    return r.assign(set=consistency_sets(r))


def records_of(cfg: dict, name: str) -> dict[tuple[str, str, int], pd.DataFrame]:
    return {(d, m, s): records_with_sets(cfg, d, m, s) for d, ms in models(cfg, name) for m in ms for s in seeds(cfg, d, m)}


def adversarial_confidence(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 3: the ALP model's adversarial true-class confidence (train_conf) of each Consistent and
    Inconsistent test sample (data: dataset, method, seed, sample, set, train_conf); claims: mean per set
    ('adv_conf_consistent', 'adv_conf_inconsistent'; a seed with an empty set gives no value)."""
    frames, claims = [], []
    for (d, m, s), r in records_of(cfg, "fig03").items():
        r = r[r.set.isin(SETS)]
        frames.append(pd.DataFrame({"dataset": d, "method": m, "seed": s, "sample": r["sample"], "set": r.set,
                                    "train_conf": r.train_conf}))
        for st in SETS:
            v = r.train_conf[r.set == st]
            if len(v):
                claims.append({"dataset": d, "method": m, "claim": f"adv_conf_{st}", "seed": s, "value": float(v.mean())})
    cols = ["dataset", "method", "seed", "sample", "set", "train_conf"]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


def consistent_share(r: pd.DataFrame) -> tuple[float, float]:
    """% of the evaluated samples that are Consistent, and % of the clean-correct ones."""
    n_cons = float((r.set == "consistent").sum())
    n_ok = float(r.set.isin(SETS).sum())
    return 100.0 * n_cons / max(len(r), 1), (100.0 * n_cons / n_ok if n_ok else float("nan"))


def confidence_scatter(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 11: clean vs adversarial true-class confidence of every evaluated sample of ALP and AALP
    (data: dataset, method, seed, sample, set, clean_conf, train_conf, drawn (the scatter draws the run's first
    seed only), n (evaluated samples of this run and seed), set_n (of them, in this row's set), consistent_pct
    (this seed's, the panel title's number)); claims: 'consistent_pct' (% of evaluated samples that are
    Consistent, Table 4) and 'consistent_pct_of_clean_correct'."""
    frames, claims = [], []
    for (d, m, s), r in records_of(cfg, "fig11").items():
        pct, pct_ok = consistent_share(r)
        frames.append(pd.DataFrame({"dataset": d, "method": m, "seed": s, "sample": r["sample"], "set": r.set,
                                    "clean_conf": r.clean_conf, "train_conf": r.train_conf,
                                    "drawn": s == seeds(cfg, d, m)[0], "n": len(r),
                                    "set_n": r.set.map(r.set.value_counts()).astype(int), "consistent_pct": pct}))
        claims += [{"dataset": d, "method": m, "claim": "consistent_pct", "seed": s, "value": pct},
                   {"dataset": d, "method": m, "claim": "consistent_pct_of_clean_correct", "seed": s, "value": pct_ok}]
    cols = ["dataset", "method", "seed", "sample", "set", "clean_conf", "train_conf", "drawn", "n", "set_n",
            "consistent_pct"]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


def second_half(epochs) -> list[int]:
    """The epochs of the 'second half of training' the Fig. 4 slope is fitted on: the later half of the
    sorted epochs (epochs[len // 2:]), or the last two epochs when that leaves fewer than two."""
    e = sorted(set(int(x) for x in epochs))
    half = e[len(e) // 2:]
    return half if len(half) >= 2 else e[-2:]


def probe_alp_by_set(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 4: per epoch, the mean probe ALP loss of the ALP model's probe samples of each set, the sets
    fixed by the final epoch (Consistent: clean and adversarial correct then; Inconsistent: clean correct,
    adversarial wrong). data: dataset, method, seed, set, epoch, alp, n, fit (least-squares line over
    second_half(); NaN elsewhere), fit_first / fit_last (the first and last epoch of that fit, NaN without
    one; the figure's title names them). Claims: 'alp_slope_<set>' (per epoch; none for an empty set or one epoch)."""
    frames, claims = [], []
    for d, _ in models(cfg, "fig04"):
        for s in seeds(cfg, d, "alp"):
            p = load_parquet(run_dir(d, "alp", s) / "probe.parquet")
            last = p[p.epoch == p.epoch.max()].set_index("sample")
            clean_ok, adv_ok = last.clean_correct.astype(bool), last.adv_correct.astype(bool)
            members = {"consistent": last.index[clean_ok & adv_ok], "inconsistent": last.index[clean_ok & ~adv_ok]}
            fit_epochs = second_half(p.epoch.unique())
            for st, idx in members.items():
                q = p[p["sample"].isin(idx)].groupby("epoch")["alp"].agg(alp="mean", n="count").reset_index()
                q["fit"], q["fit_first"], q["fit_last"] = np.nan, np.nan, np.nan
                if len(idx) and len(fit_epochs) >= 2:
                    sel = q.epoch.isin(fit_epochs)
                    slope, icpt = np.polyfit(q.epoch[sel].to_numpy(float), q.alp[sel].to_numpy(float), 1)
                    q.loc[sel, "fit"] = icpt + slope * q.epoch[sel]
                    q["fit_first"], q["fit_last"] = q.epoch[sel].min(), q.epoch[sel].max()
                    claims.append({"dataset": d, "method": "alp", "claim": f"alp_slope_{st}", "seed": s,
                                   "value": float(slope)})
                frames.append(q.assign(dataset=d, method="alp", seed=s, set=st))
    cols = ["dataset", "method", "seed", "set", "epoch", "alp", "n", "fit", "fit_first", "fit_last"]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


HISTORY = ["probe_alp", "probe_clean_acc", "probe_adv_acc"]


def training_curves(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 12: history.csv's probe ALP loss, clean and adversarial accuracy per epoch of ALP and AALP
    (data: dataset, method, seed, epoch + HISTORY); claims: the final epoch's values ('final_<column>')."""
    frames, claims = [], []
    for d, ms in models(cfg, "fig12"):
        for m in ms:
            for s in seeds(cfg, d, m):
                h = load_csv(run_dir(d, m, s) / "history.csv")
                frames.append(h[["epoch", *HISTORY]].assign(dataset=d, method=m, seed=s))
                last = h.loc[h.epoch.idxmax()]
                claims += [{"dataset": d, "method": m, "claim": f"final_{k}", "seed": s, "value": float(last[k])}
                           for k in HISTORY]
    cols = ["dataset", "method", "seed", "epoch", *HISTORY]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


def sweep_accuracy(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 6: accuracy (metrics.json) of every sweep run against the swept value, for attack_columns(), and of
    the swept method itself at its own value (sweep_bases(): e.g. aalp at lambda 0.5; base True).
    data: dataset, method (the swept base method), param, value, run, base, seed, metric, accuracy.
    Claims: per sweep run (method = the run name, e.g. aalp_lambda0p25), claim = the metric (the base run's
    accuracies are Table 2's)."""
    rows, claims = [], []
    metrics = attack_columns(cfg)
    runs = ([(d, base, p, run, v, False) for d, base, p, run, v in sweep_runs(cfg)]
            + [(d, base, p, base, v, True) for d, base, p, v in sweep_bases(cfg)])
    for d, base, p, run, v, is_base in runs:
        for s in seeds(cfg, d, run):
            acc = load_json(metrics_path(d, run, s))["accuracy"]
            for k in metrics:
                rows.append({"dataset": d, "method": base, "param": p, "value": v, "run": run, "base": is_base,
                             "seed": s, "metric": k, "accuracy": acc[k]})
                if not is_base:
                    claims.append({"dataset": d, "method": run, "claim": k, "seed": s, "value": acc[k]})
    return (frame(rows, ["dataset", "method", "param", "value", "run", "base", "seed", "metric", "accuracy"]),
            claims_frame(claims))


def checkpoint_series(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Figs. 9-10: checkpoints.csv of every checkpoint run and seed (data: dataset, method, seed, step, n50,
    n90, gini, cam_area_adv, cam_on_object_adv, cam_metric_samples, cam_metric_recorded (metric_counts));
    claims of Fig. 9 ('step<N>/n50', 'step<N>/gini') and of Fig. 10 ('step<N>/cam_area_adv',
    'step<N>/cam_on_object_adv' where defined), both with the CAM metrics' count ('cam_metric_samples')."""
    frames, c9, c10 = [], [], []
    for d, m in checkpoint_runs(cfg):
        counts, recorded = metric_counts(cfg, d, m)
        for s, n_cam, rec in zip(seeds(cfg, d, m), counts, recorded):
            ck = load_csv(analysis_path(d, m, s, "checkpoints.csv"))
            frames.append(ck.assign(dataset=d, method=m, seed=s, **{COUNT: n_cam, RECORDED: rec}))
            for out in (c9, c10):
                out.append({"dataset": d, "method": m, "claim": COUNT, "seed": s, "value": int(n_cam)})
            for _, row in ck.iterrows():
                for name, out in (("fig09", c9), ("fig10", c10)):
                    for k in CKPT_CLAIMS[name]:
                        if pd.notna(row[k]):
                            out.append({"dataset": d, "method": m, "claim": f"step{int(row.step)}/{k}", "seed": s,
                                        "value": float(row[k])})
    cols = ["dataset", "method", "seed", "step", "n50", "n90", "gini", "cam_area_adv", "cam_on_object_adv", COUNT,
            RECORDED]
    data = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    return data, claims_frame(c9), claims_frame(c10)


MAX_CHECKPOINT_COLUMNS = 8


def checkpoint_cams(cfg: dict) -> dict[str, np.ndarray]:
    """Fig. 10: first seed's per-checkpoint adversarial Grad-CAM maps of the checkpoints drawn (at most
    MAX_CHECKPOINT_COLUMNS, evenly spaced, first and last kept) and the cam_count() samples drawn:
    '<d>/<m>/steps' (S), 'cam_adv' (S x K x H x W), 'x_adv' (S x K x C x H x W), 'cam_adv_peak' (S x K, each map's
    maximum), the clean inputs and labels of the same samples ('x', 'label', from cam.npz), 'class_names' and,
    per seed, 'cam_metric_samples' and 'cam_metric_recorded' (metric_counts)."""
    arrays = {}
    for d, m in checkpoint_runs(cfg):
        s = seeds(cfg, d, m)[0]
        z = load_npz(analysis_path(d, m, s, "checkpoint_cams.npz"))
        cam = load_npz(analysis_path(d, m, s, "cam.npz"))
        n_steps = len(z["steps"])
        pick = np.unique(np.linspace(0, n_steps - 1, min(n_steps, MAX_CHECKPOINT_COLUMNS)).round().astype(int))
        k = cam_count(cfg, min(z["cam_adv"].shape[1], len(cam["x"])))
        maps = z["cam_adv"][pick, :k].astype(np.float32)
        arrays.update({f"{d}/{m}/steps": z["steps"][pick], f"{d}/{m}/cam_adv": maps,
                       f"{d}/{m}/x_adv": z["x_adv"][pick, :k].astype(np.float32),
                       f"{d}/{m}/cam_adv_peak": maps.reshape(len(pick), k, -1).max(axis=2) if k else maps.reshape(len(pick), 0),
                       f"{d}/{m}/x": cam["x"][:k].astype(np.float32), f"{d}/{m}/label": cam["label"][:k],
                       f"{d}/{m}/class_names": class_names(cfg, d)})
        arrays[f"{d}/{m}/{COUNT}"], arrays[f"{d}/{m}/{RECORDED}"] = metric_counts(cfg, d, m)
    return arrays
