"""The budget and setting a parameter set's verdicts hold at, and what the set cannot decide, from its
parameters (and the paper set's, the repository's root params.yaml, through protocol.deviations).

A verdict is a statement about models trained as the set trains them ("does not hold at 3 epochs of PGD-10
training (step 0.075), ε 0.3, λ 0.5"), not about the paper's models: scope() names that setting and
undecided() the questions the set leaves open (the paper's budget, the paper's lost λ, what AALP − ALP at
the same λ mixes, the data the paper showed a claim on)."""
from __future__ import annotations

from .claimlist import CLAIMS, PAPER_NAMES, Claim, label
from .inputs import gd_pairs, models, sweep_runs
from .protocol import _num as num, deviations

LAMBDA_DEFAULT = 0.5  # the schema's default of methods.<m>.lambda


def px(v: float) -> str:
    """A step or ε as the paper writes it: '3/255' for a pixel step, else the number ('0.075')."""
    text = num(v)
    return text[text.index("(") + 1:-1] if "(" in text else text


def _attack(spec: dict, with_eps: bool) -> str:
    """'PGD-10 (step 0.075)', with ', ε 0.3' inside the brackets when with_eps."""
    return f"PGD-{spec['steps']} (step {px(spec['step'])}" + (f", ε {px(spec['eps'])})" if with_eps else ")")


def _specs(cfg: dict, dataset: str) -> dict[str, dict]:
    """{method: training attack} of a dataset's adversarially trained methods (objective other than raw), each
    the dataset's attack with the method's overrides."""
    exp = cfg["experiments"][dataset]
    return {m: {**exp["attack"], **cfg["methods"][m].get("attack", {})} for m in exp["methods"]
            if cfg["methods"][m]["objective"] != "raw"}


def training_attacks(cfg: dict, dataset: str) -> dict[str, list[str]]:
    """{training attack text: the methods trained against it}: 'PGD-10 (step 0.075)', with its ε inside the
    brackets only where the methods' ε differ (else scope() names the one ε once)."""
    specs = _specs(cfg, dataset)
    one_eps = len({s["eps"] for s in specs.values()}) <= 1
    out: dict[str, list[str]] = {}
    for m, s in specs.items():
        out.setdefault(_attack(s, not one_eps), []).append(m)
    return out


def _shared_eps(cfg: dict, dataset: str) -> str | None:
    """The ε every adversarially trained method of the dataset uses, or None (none, or several)."""
    eps = {s["eps"] for s in _specs(cfg, dataset).values()}
    return px(eps.pop()) if len(eps) == 1 else None


def lambdas(cfg: dict, dataset: str) -> dict[str, float]:
    """{method: λ} of a dataset's pairing methods (objective alp: ALP, ALP + GD, AALP, ...)."""
    return {m: float(cfg["methods"][m].get("lambda", LAMBDA_DEFAULT)) for m in cfg["experiments"][dataset]["methods"]
            if cfg["methods"][m]["objective"] == "alp"}


def scope(cfg: dict, dataset: str) -> str:
    """The budget and setting a dataset's verdicts hold at: '3 epochs of PGD-10 training (step 0.075), ε 0.3,
    λ 0.5' (epochs, each training attack with the methods it trains where they differ, λ of the pairing
    methods)."""
    epochs = cfg["experiments"][dataset]["epochs"]
    attacks = training_attacks(cfg, dataset)
    if not attacks:
        text = f"{epochs} epochs of standard training"
    elif len(attacks) == 1:
        a = next(iter(attacks))
        text = f"{epochs} epochs of {a.replace(' (', ' training (', 1)}"
    else:
        text = f"{epochs} epochs of training against " + "; ".join(
            f"{a} for {', '.join(map(label, ms))}" for a, ms in attacks.items())
    if eps := _shared_eps(cfg, dataset):
        text += f", ε {eps}"
    lam = lambdas(cfg, dataset)
    if len(set(lam.values())) == 1:
        text += f", λ {next(iter(lam.values())):g}"
    elif lam:
        text += ", λ " + ", ".join(f"{v:g} ({label(m)})" for m, v in lam.items())
    return text


def _budget(cfg: dict, dataset: str) -> str | None:
    """The paper set's training budget where the dataset's differs (epochs, training images, training attack)."""
    items = []
    for r in deviations(cfg):
        where = r["scope"].split(": ", 1)
        if where[0] == dataset and r["setting"] in ("epochs", "training images", "training attack"):
            who = f" ({where[1]})" if len(where) > 1 else ""
            items.append(f"{r['setting']}: {r['paper']}, here {r['here']}{who}")
    return ("whether the verdicts hold at the paper's training budget (the paper set's " + "; ".join(items) + ")"
            if items else None)


def _lambda_lines(cfg: dict, dataset: str) -> list[str]:
    """The paper's lost λ for AALP, and what AALP − ALP at (about) the same λ mixes."""
    lam = lambdas(cfg, dataset)
    if "aalp" not in lam:
        return []
    out = [f"the paper's λ for AALP: lost from its text; λ {lam['aalp']:g} here is a [choice]"]
    if "alp" in lam and cfg["methods"]["aalp"].get("adaptive_weight"):
        same = "the same λ" if lam["alp"] == lam["aalp"] else f"λ {lam['aalp']:g} against ALP's {lam['alp']:g}"
        out.append(f"whether AALP beats ALP at a matched pairing strength: at {same}, AALP's weights w_i = p(y|x) ≤ 1 "
                   "pair each sample less than ALP does, so AALP − ALP mixes the method with a weaker pairing term")
    return out


def _tested(cfg: dict, claim: Claim, dataset: str) -> bool:
    """Whether the set has the runs to test a claim on a dataset."""
    if claim.item == "table3":
        return any(d == dataset for d, _, _ in gd_pairs(cfg))
    if claim.item == "fig06":
        return any(r[0] == dataset for r in sweep_runs(cfg))
    if claim.item == "table2":
        return "aalp" in cfg["experiments"][dataset]["methods"] and "alp" in cfg["experiments"][dataset]["methods"]
    return any(d == dataset for d, _ in models(cfg, claim.item))


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _other_data(cfg: dict, dataset: str) -> str | None:
    """The claims tested here that the paper showed only on other data, grouped by that data."""
    src = cfg["datasets"][dataset]["source"]
    by_data: dict[str, list[str]] = {}
    for c in CLAIMS:
        if c.sources and src not in c.sources and _tested(cfg, c, dataset):
            items = by_data.setdefault(", ".join(PAPER_NAMES.get(s, s) for s in c.sources), [])
            items += [s for s in c.shown.split(", ") if s not in items]  # 'Fig. 3, Table 1': one item each, once
    if not by_data:
        return None
    shown = "; ".join(f"{_and(items)} on {data}" for data, items in by_data.items())
    return f"whether the paper's data shows what this set shows: {shown} (tested here on {PAPER_NAMES.get(src, src)})"


def undecided(cfg: dict, dataset: str) -> list[str]:
    """What a dataset's verdicts cannot decide, one reader's phrase each: the paper's training budget where the
    set's differs from the paper set's (epochs, training images, training attack), the paper's λ for AALP (lost:
    a [choice] here), that at the same λ AALP's weights w ≤ 1 pair less than ALP, and the claims the paper
    showed only on other data."""
    lines = [_budget(cfg, dataset), *_lambda_lines(cfg, dataset), _other_data(cfg, dataset)]
    return [x for x in lines if x]
