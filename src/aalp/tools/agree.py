"""`python -m aalp bench agree`: does the fast path give the plain path's results?

For one (dataset, method) of a parameter set, it trains and evaluates every seed twice through the
pipeline's own `train` and `evaluate`: once on the plain path (every speed option off) and once with the
chosen options on, each into its own folder under --out (a rerun skips what is finished). Then, for clean
accuracy and each attack:

- the per-seed values of both paths, their means and 95% Student-t intervals over seeds;
- the paired difference fast - plain (same seed, same initial weights, same batches) and its interval;
- the seed noise: the standard deviation over seeds, pooled over both paths;
- the verdict: the paths **agree** when |mean difference| <= 2 x seed noise (`TOLERANCE_SD`), else
  they **differ**. With one seed there is no seed noise and the verdict is "inconclusive".

--epochs, --train-samples (the first N training images) and --test-samples shrink the check to what a
CPU finishes; they are recorded in the output and printed beside the verdict.
"""
from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np

from .. import config as C
from ..artifacts import read_json, write_json
from ..report.stats import t_interval

log = logging.getLogger(__name__)
TOLERANCE_SD = 2.0
OPTIONS = ("amp", "channels_last", "fused_adam", "drop_last", "compile")


def parse_options(items: list[str]) -> dict:
    """['amp', 'compile=reduce-overhead'] -> {'amp': True, 'compile': 'reduce-overhead'}."""
    out = {}
    for it in items:
        key, _, value = it.partition("=")
        if key not in OPTIONS:
            raise C.ConfigError(f"unknown speed option {key!r}; allowed values: {', '.join(OPTIONS)}")
        if key == "compile":
            if value not in ("default", "reduce-overhead"):
                raise C.ConfigError("compile needs a mode: compile=default or compile=reduce-overhead")
            out[key] = value
        elif value:
            raise C.ConfigError(f"speed option {key} takes no value")
        else:
            out[key] = True
    if not out:
        raise C.ConfigError("bench agree needs at least one speed option to compare with the plain path")
    return out


def variant_cfg(cfg: dict, options: dict, epochs: int | None, test_samples: int | None,
                attacks: list[str] | None, dataset: str) -> dict:
    """The set's parameters with every speed option off except `options`, and the check's reductions."""
    out = copy.deepcopy(cfg)
    t = out["training"]
    t.update(amp=False, channels_last=False, fused_adam=False, drop_last=False, compile="none", checkpoint_every=0)
    t.update(options)
    t["checkpoint_runs"] = []
    if epochs is not None:
        out["experiments"][dataset]["epochs"] = epochs
    e = out["evaluation"]
    if attacks is not None:
        e["attacks"] = attacks
    if test_samples is not None:
        e["n_samples"] = test_samples
        if e.get("autoattack_samples") is not None:
            e["autoattack_samples"] = min(e["autoattack_samples"], test_samples)
    return out


def verdict(plain: list[float], fast: list[float], k: float = TOLERANCE_SD) -> dict:
    """Compare per-seed values (same seed order). Seed noise: the sd over seeds, pooled over both paths."""
    plain, fast = np.asarray(plain, float), np.asarray(fast, float)
    n = len(plain)
    diff = fast - plain
    d = t_interval(diff)
    if n < 2:
        noise, v = math.nan, "inconclusive"
    else:
        noise = math.sqrt((plain.var(ddof=1) + fast.var(ddof=1)) / 2)
        v = "agree" if abs(d.mean) <= k * noise else "differ"
    p, f = t_interval(plain), t_interval(fast)
    return {"plain": plain.tolist(), "fast": fast.tolist(), "plain_mean": p.mean, "plain_half": p.half,
            "fast_mean": f.mean, "fast_half": f.half, "diff_mean": d.mean, "diff_half": d.half,
            "seed_sd": noise, "verdict": v}


def run(cfg: dict, dataset: str, method: str, seeds: list[int], options: dict, out_dir: str | Path,
        epochs: int | None = None, train_samples: int | None = None, test_samples: int | None = None,
        attacks: list[str] | None = None) -> dict:
    from ..core.evaluation import evaluate
    from ..core.training import train

    from ..core.attacks import EvalAttack

    if not seeds:
        raise C.ConfigError("bench agree needs at least one seed")
    C.run_spec(cfg, dataset, method, seeds[0])  # unknown dataset or method: one-line error before any work
    for a in attacks or []:
        try:
            EvalAttack.parse(a)
        except ValueError as e:
            raise C.ConfigError(str(e)) from None
    out_dir = Path(out_dir)
    result = {"dataset": dataset, "method": method, "seeds": list(seeds), "options": options, "epochs": epochs,
              "train_samples": train_samples, "test_samples": test_samples, "attacks": attacks,
              "tolerance_sd": TOLERANCE_SD, "runs": {}}
    metrics = {}
    for name, opts in (("plain", {}), ("fast", options)):
        vcfg = variant_cfg(cfg, opts, epochs, test_samples, attacks, dataset)
        for seed in seeds:
            rd = out_dir / name / f"s{seed}"
            if not (rd / "model.pt").exists():
                log.info("agree: training %s/%s seed %d, %s path %s", dataset, method, seed, name, opts or "")
                train(vcfg, C.run_spec(vcfg, dataset, method, seed), rd, train_samples=train_samples)
            if not (rd / "eval" / "metrics.json").exists():
                evaluate(vcfg, dataset, method, seed, rd)
            run_meta = read_json(rd / "run.json")
            m = read_json(rd / "eval" / "metrics.json")
            metrics[(name, seed)] = m["accuracy"]
            result["runs"][f"{name}/s{seed}"] = {"train_seconds": run_meta["train_seconds"], "steps": run_meta["steps"],
                                                 "device": run_meta.get("device"), "accuracy": m["accuracy"]}
    keys = [k for k in metrics[("plain", seeds[0])] if k != "train"] + ["train"]
    result["metrics"] = {k: verdict([metrics[("plain", s)][k] for s in seeds], [metrics[("fast", s)][k] for s in seeds])
                         for k in keys}
    secs = {name: sum(result["runs"][f"{name}/s{s}"]["train_seconds"] for s in seeds) for name in ("plain", "fast")}
    result["train_seconds"] = secs
    result["agree"] = all(v["verdict"] == "agree" for v in result["metrics"].values())
    write_json(out_dir / "agree.json", result)
    return result


def format_result(r: dict) -> str:
    opts = " ".join(k if v is True else f"{k}={v}" for k, v in r["options"].items())
    scope = ", ".join(f"{k} {r[k]}" for k in ("epochs", "train_samples", "test_samples") if r[k] is not None)
    lines = [f"{r['dataset']}/{r['method']}, seeds {', '.join(map(str, r['seeds']))}: plain path against "
             f"{opts}" + (f" ({scope})" if scope else ""),
             f"{'accuracy %':<12}{'plain':>20}{'fast':>20}{'fast - plain':>20}{'seed sd':>9}  verdict"]

    def iv(m, h):
        return f"{m:.2f}" + ("" if math.isnan(h) else f" ± {h:.2f}")
    for k, v in r["metrics"].items():
        lines.append(f"{k:<12}{iv(v['plain_mean'], v['plain_half']):>20}{iv(v['fast_mean'], v['fast_half']):>20}"
                     f"{iv(v['diff_mean'], v['diff_half']):>20}{v['seed_sd']:>9.2f}  {v['verdict']}")
    s = r["train_seconds"]
    lines.append(f"training time: plain {s['plain']:.0f} s, fast {s['fast']:.0f} s "
                 f"({s['plain'] / max(s['fast'], 1e-9):.2f}x); rule: agree when |fast - plain| <= "
                 f"{r['tolerance_sd']:g} seed sd")
    return "\n".join(lines)
