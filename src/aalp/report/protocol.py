"""Where a parameter set departs from the paper's protocol, computed from the parameters: the set's params
against the paper set's (the repository's root params.yaml). The front page lists the rows first, so that
nobody reads a reduced preview as the paper's experiment."""
from __future__ import annotations

import yaml

from .. import config as C

RESOURCES = ["params.yaml"]
PAPER_PARAMS = C.REPO_ROOT / "params.yaml"
EXPERIMENT_FIELDS = {"model": "model", "epochs": "epochs", "batch_size": "batch size", "lr": "learning rate",
                     "augment": "augmentation"}
EVALUATION_FIELDS = {"n_samples": "test samples attacked", "autoattack_samples": "AutoAttack samples",
                     "autoattack_steps": "AutoAttack iterations", "autoattack_queries": "AutoAttack Square queries",
                     "autoattack_methods": "AutoAttack on the methods", "cw_kappa": "CW margin κ",
                     "step_rule": "evaluation step"}
STEP_RULES = {"fixed": "fixed: the dataset attack's step for every PGD-k and CW-k",
              "reach": "reach: 2.5 · eps / k where k of the dataset attack's steps cannot cross the ball"}
EVERYTHING = {"n_samples": "the whole test set", "autoattack_samples": "every attacked sample",
              "autoattack_methods": "every method", "n_train": "the whole training set", "n_test": "the whole test set"}


def paper_params() -> dict | None:
    """The paper set's parameters (root params.yaml, validated), or None where the checkout has none."""
    if not PAPER_PARAMS.is_file():
        return None
    return C.validate(yaml.safe_load(PAPER_PARAMS.read_text()), str(PAPER_PARAMS))


def _num(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and 0 < v < 1 and round(v * 255) >= 1 and abs(round(v * 255) / 255 - v) < 1e-9:
        return f"{v:.4g} ({round(v * 255)}/255)"  # a pixel step, as the paper writes it
    return f"{v:g}" if isinstance(v, float) else f"{v:,}"


def _value(v, key: str = "") -> str:
    if v is None:
        return EVERYTHING.get(key, "none")
    if key == "step_rule":
        return STEP_RULES[v]
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return _num(v)


def _attack(a: dict) -> str:
    return (f"PGD-{a['steps']}, eps {_num(a['eps'])}, step {_num(a['step'])}"
            + ("" if a.get("random_start", True) else ", no random start"))


def counterpart(cfg: dict, paper: dict, dataset: str) -> tuple[str | None, bool]:
    """(the paper set's dataset this one is compared with, whether it is the same data): the one with the
    same source, else the one with the same model (a stand-in), else None."""
    src = cfg["datasets"][dataset]["source"]
    for d in paper["experiments"]:
        if paper["datasets"][d]["source"] == src:
            return d, True
    model = cfg["experiments"][dataset]["model"]
    same = [d for d, e in paper["experiments"].items() if e["model"] == model]
    return (same[0], False) if same else (None, False)


def budget(cfg: dict, dataset: str, method: str) -> str:
    """A method's training budget on `dataset`: '3 epochs of PGD-10, eps 0.3, step 0.075'."""
    exp = cfg["experiments"][dataset]
    return f"{exp['epochs']} epochs of {_attack({**exp['attack'], **cfg['methods'][method].get('attack', {})})}"


def paper_budget(cfg: dict, dataset: str, method: str, paper: dict | None = None) -> str | None:
    """The same budget in the paper set, on the dataset `dataset` is compared with (counterpart); None where
    there is none or the paper set lacks the method."""
    paper = paper_params() if paper is None else paper
    if paper is None:
        return None
    d, _ = counterpart(cfg, paper, dataset)
    return budget(paper, d, method) if d is not None and method in paper["methods"] else None


def method_seeds(cfg: dict) -> dict[tuple[str, str], list[int]]:
    """(dataset, method) -> the seeds it runs (run_seeds where a set gives them, else the set's seeds)."""
    return {(d, m): list(C.seeds(cfg, d, m)) for d, e in cfg["experiments"].items() for m in e["methods"]}


def _seed_counts(cfg: dict) -> str:
    by_n: dict[int, list[str]] = {}
    for (_, m), ss in method_seeds(cfg).items():
        by_n.setdefault(len(ss), []).append(m)
    if len(by_n) == 1:
        return f"{next(iter(by_n))} per run"
    return "; ".join(f"{n} ({', '.join(dict.fromkeys(ms))})" for n, ms in sorted(by_n.items(), reverse=True))


def deviations(cfg: dict, paper: dict | None = None) -> list[dict]:
    """One row per setting in which `cfg` differs from the paper set: {'setting', 'scope', 'here', 'paper'}.
    Compared: the dataset (a stand-in for the paper's, a subset of it), each experiment's model, epochs,
    batch size, learning rate and augmentation, each method's training attack (dataset attack with the
    method's overrides), the methods run, the seeds, the evaluation attacks and their sample counts, and
    the sweeps, and the evaluation step rule."""
    paper = paper_params() if paper is None else paper
    if paper is None:
        return []
    rows = []

    def add(setting, scope, here, there):
        rows.append({"setting": setting, "scope": scope, "here": here, "paper": there})

    for d, exp in cfg["experiments"].items():
        pd_, same = counterpart(cfg, paper, d)
        src = cfg["datasets"][d]["source"]
        if pd_ is None:
            add("dataset", d, f"{d} ({src}, model {exp['model']})", "no dataset of the paper with this model")
            continue
        pexp, psrc = paper["experiments"][pd_], paper["datasets"][pd_]["source"]
        if not same:
            add("dataset stand-in", d, f"{src}", f"{psrc} (compared with the paper's {pd_} settings: same model)")
        for key in ("n_train", "n_test"):
            here, there = cfg["datasets"][d].get(key), paper["datasets"][pd_].get(key)
            if here != there:
                add("training images" if key == "n_train" else "test images", d, _value(here, key), _value(there, key))
        for key, label in EXPERIMENT_FIELDS.items():
            if exp[key] != pexp[key]:
                add(label, d, _value(exp[key]), _value(pexp[key]))
        attacks: dict[tuple[str, str], list[str]] = {}
        for m in exp["methods"]:
            here = _attack({**exp["attack"], **cfg["methods"][m].get("attack", {})})
            pm = paper["methods"].get(m, {})
            there = _attack({**pexp["attack"], **pm.get("attack", {})})
            if here != there:
                attacks.setdefault((here, there), []).append(m)
        for (here, there), ms in attacks.items():
            who = "every method" if len(ms) == len(exp["methods"]) else ", ".join(ms)
            add("training attack", f"{d}: {who}", here, there)
        missing = [m for m in pexp["methods"] if m not in exp["methods"]]
        if missing:
            add("methods not run", d, ", ".join(exp["methods"]), ", ".join(pexp["methods"]))
    here, there = _seed_counts(cfg), _seed_counts(paper)
    if here != there:
        add("seeds", "", here, there)
    ev, pev = cfg["evaluation"], paper["evaluation"]
    if ev["attacks"] != pev["attacks"]:
        add("evaluation attacks", "", ", ".join(ev["attacks"]), ", ".join(pev["attacks"]))
    for key, label in EVALUATION_FIELDS.items():
        if key.startswith("autoattack") and "autoattack" not in ev["attacks"]:
            continue
        if ev.get(key) != pev.get(key):
            add(label, "", _value(ev.get(key), key), _value(pev.get(key), key))
    sweep = lambda c: "; ".join(f"{s['param']} ∈ {{{', '.join(f'{v:g}' for v in s['values'])}}} for {s['method']} on "  # noqa: E731
                                f"{s['dataset']}" for s in c.get("sweeps", [])) or "none"
    if sweep(cfg) != sweep(paper):
        add("sweeps", "", sweep(cfg), sweep(paper))
    return rows
