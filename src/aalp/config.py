"""params.yaml: loading, validation against workflow/schemas/params.schema.json, and typed views.

Every entry point (the command line and the Snakefile) calls :func:`validate` before any work, so a
bad parameter file fails in one line that names the key and the allowed values.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ["workflow/schemas/params.schema.json"]  # its defaults decide what every stage computes (aalp.deps)
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.json"

# Which model families accept which input shapes (C, H, W).
MODEL_SHAPES = {
    "lenet": (1, 28, 28), "lenet_small": (1, 28, 28),
    "resnet9": (3, 32, 32), "resnet9_small": (3, 32, 32),
    "resnet32": (3, 32, 32), "resnet32_small": (3, 32, 32),
}
SOURCE_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "svhn": (3, 32, 32), "cifar10": (3, 32, 32)}
SOURCE_TRAIN = {"mnist": 60000, "fashion_mnist": 60000, "svhn": 73257, "cifar10": 50000}  # core/sources.py checks them


class ConfigError(ValueError):
    """A problem in params.yaml, reported as one line naming the key."""


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(err: jsonschema.ValidationError) -> str:
    key = _dotted(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        where = f"{key}." if err.absolute_path else ""
        return f"unknown key '{where}{extra[0]}'; allowed keys: {', '.join(allowed)}"
    if v == "required":
        return f"{key}: {err.message}"
    if v == "enum":
        return f"{key} = {err.instance!r} is not allowed; allowed values: {', '.join(map(str, err.validator_value))}"
    if v == "type":
        t = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return f"{key} = {err.instance!r} has the wrong type; expected {t}"
    if v == "maximum" and err.absolute_path and err.absolute_path[-1] in ("eps", "step"):
        return (f"{key} = {err.instance!r} is above 1: inputs live in [0, 1], so {err.absolute_path[-1]} is a fraction "
                f"of that range; write 8/255 as 0.0314, not 8")
    if v in ("minimum", "exclusiveMinimum", "maximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}[v]
        return f"{key} = {err.instance!r} is out of range; it must be {op} {err.validator_value}"
    if v == "propertyNames":
        return f"{key}: name {err.instance!r} is not allowed (lower-case letters, digits and _ only)"
    return f"{key}: {err.message}"


def _fill_defaults(node: Any, sch: dict) -> None:
    """Fill the schema's `default` values into `node` in place (objects only)."""
    if not isinstance(node, dict):
        return
    for name, sub in sch.get("properties", {}).items():
        if name not in node and "default" in sub:
            node[name] = copy.deepcopy(sub["default"])
        if name in node:
            _fill_defaults(node[name], sub)
    extra = sch.get("additionalProperties")
    if isinstance(extra, dict):
        for name, value in node.items():
            if name not in sch.get("properties", {}):
                _fill_defaults(value, extra)


def validate(params: dict, source: str = "params.yaml") -> dict:
    """Check `params` against the schema and cross-references; return a copy with defaults filled.

    Raises ConfigError with a one-line message.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(f"{source}: {_describe(errors[0])}")
    cfg = copy.deepcopy(params)
    _fill_defaults(cfg, schema())
    _check_references(cfg, source)
    return cfg


def _check_references(cfg: dict, source: str) -> None:
    ev = cfg.get("evaluation", {})
    if ev.get("autoattack_samples") and ev["autoattack_samples"] % ev["batch_size"]:
        raise ConfigError(f"{source}: evaluation.autoattack_samples = {ev['autoattack_samples']} is not a multiple of "
                          f"evaluation.batch_size = {ev['batch_size']} (AutoAttack runs on whole batches)")
    methods, datasets = sorted(cfg["methods"]), sorted(cfg["datasets"])
    for m in ev.get("autoattack_methods") or []:
        if m not in cfg["methods"]:
            raise ConfigError(f"{source}: evaluation.autoattack_methods: unknown method {m!r}; allowed values: "
                              f"{', '.join(methods)}")
    for name, exp in cfg["experiments"].items():
        if name not in cfg["datasets"]:
            raise ConfigError(f"{source}: experiments.{name} names an unknown dataset; allowed values: {', '.join(datasets)}")
        for m in exp["methods"]:
            if m not in cfg["methods"]:
                raise ConfigError(f"{source}: experiments.{name}.methods: unknown method {m!r}; allowed values: {', '.join(methods)}")
        shape = dataset_shape(cfg, name)
        want = MODEL_SHAPES[exp["model"]]
        if shape != want:
            fits = sorted(k for k, s in MODEL_SHAPES.items() if s == shape)
            raise ConfigError(f"{source}: experiments.{name}.model = {exp['model']!r} expects inputs {want} but dataset "
                              f"{name!r} has shape {shape}; allowed values: {', '.join(fits)}")
    for i, sw in enumerate(cfg["sweeps"]):
        exp = cfg["experiments"].get(sw["dataset"])
        if exp is None:
            raise ConfigError(f"{source}: sweeps.{i}.dataset = {sw['dataset']!r} has no experiment; allowed values: "
                              f"{', '.join(sorted(cfg['experiments']))}")
        if sw["method"] not in exp["methods"]:
            raise ConfigError(f"{source}: sweeps.{i}.method = {sw['method']!r} is not run on {sw['dataset']}; "
                              f"allowed values: {', '.join(exp['methods'])}")
    for run in cfg["training"]["checkpoint_runs"]:
        d, m = run.split("/")
        if m not in cfg["experiments"].get(d, {}).get("methods", []):
            raise ConfigError(f"{source}: training.checkpoint_runs: {run!r} is not a run of the matrix (dataset/method)")
    for name, ds in cfg["datasets"].items():
        if ds["source"] == "synthetic":
            missing = [k for k in ("shape", "n_train", "n_test", "seed") if k not in ds]
            if missing:
                raise ConfigError(f"{source}: datasets.{name}: synthetic datasets need {', '.join(missing)}")
            if tuple(ds["shape"]) not in ((1, 28, 28), (3, 32, 32)):
                raise ConfigError(f"{source}: datasets.{name}.shape = {ds['shape']} is not allowed; allowed values: [1, 28, 28], [3, 32, 32]")
        else:
            extra = sorted(set(ds) - {"source", "n_train"})
            if extra:
                raise ConfigError(f"{source}: datasets.{name}.{extra[0]} only applies to synthetic datasets")
    _check_runs(cfg, source)


def steps_per_epoch(cfg: dict, dataset: str) -> int:
    """Batches of an epoch: the train images (n_train, at most the source's) over batch_size, unless drop_last."""
    ds, bs = cfg["datasets"][dataset], cfg["experiments"][dataset]["batch_size"]
    n = min(SOURCE_TRAIN.get(ds["source"], ds.get("n_train")), ds.get("n_train") or SOURCE_TRAIN[ds["source"]])
    return n // bs if cfg["training"].get("drop_last") and n >= bs else -(-n // bs)


def _check_runs(cfg: dict, source: str) -> None:
    for key, ss in cfg.get("run_seeds", {}).items():
        known = {f"{dd}/{mm}" for dd, e in cfg["experiments"].items() for mm in e["methods"]} | {
            f"{dd}/{nn}" for dd, nn in variants(cfg)}
        if key not in known:
            raise ConfigError(f"{source}: run_seeds.{key} names no run; allowed values: {', '.join(sorted(known))}")
        if ss[0] != cfg["seeds"][0]:
            raise ConfigError(f"{source}: run_seeds.{key} must start with the first of seeds ({cfg['seeds'][0]}): "
                              "per-sample figures compare the models of that seed")
    for run in cfg["training"]["checkpoint_runs"] if cfg["training"]["snapshot_steps"] else []:
        per, epochs = steps_per_epoch(cfg, run.split("/")[0]), cfg["experiments"][run.split("/")[0]]["epochs"]
        if max(cfg["training"]["snapshot_steps"]) >= epochs * per:
            raise ConfigError(f"{source}: training.snapshot_steps = {cfg['training']['snapshot_steps']} must lie below the "
                              f"{epochs * per} training steps of {run} ({epochs} epochs of {per} steps)")


def dataset_shape(cfg: dict, dataset: str) -> tuple[int, int, int]:
    ds = cfg["datasets"][dataset]
    return tuple(ds["shape"]) if ds["source"] == "synthetic" else SOURCE_SHAPES[ds["source"]]


def load(path: str | os.PathLike = "params.yaml") -> dict:
    """Read and validate a params file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such parameter file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return validate(raw, str(path))


@dataclass(frozen=True)
class AttackSpec:
    eps: float
    step: float
    steps: int
    random_start: bool = True


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run reads, resolved from params.yaml."""
    dataset: str
    method: str
    seed: int
    model: str
    epochs: int
    batch_size: int
    lr: float
    attack: AttackSpec
    objective: str
    guided_dropout: bool
    adaptive_weight: bool
    lam: float
    pairing: str
    beta: float
    gd_mask_source: str
    gd_rescale: bool
    mixed_batch: bool = True
    attack_mode: str = "eval"
    augment: str = "none"
    snapshots: bool = False  # keep checkpoints/step<N>.pt (training.checkpoint_runs)


def eval_attacks(cfg: dict, dataset: str, method: str) -> list[str]:
    """The evaluation attacks of one run: evaluation.attacks, without AutoAttack where
    evaluation.autoattack_methods leaves out the run's (base) method."""
    only = cfg["evaluation"].get("autoattack_methods")
    keep_aa = only is None or base_method(cfg, dataset, method) in only
    return [a for a in cfg["evaluation"]["attacks"] if keep_aa or a != "autoattack"]


def eval_step(cfg: dict, dataset: str, k: int) -> float:
    """The step of the evaluation PGD-k and CW-k on `dataset` (docs/method.md#evaluation-step): the dataset attack's
    step; under evaluation.step_rule `reach`, 2.5 · eps / k (Madry et al.'s rule) where k of it cannot cross the ball."""
    att = cfg["experiments"][dataset]["attack"]
    eps, step = float(att["eps"]), float(att["step"])
    reach = cfg.get("evaluation", {}).get("step_rule", "fixed") == "reach"
    return 2.5 * eps / k if reach and k * step < eps else step


def train_attack(cfg: dict, dataset: str, method: str) -> AttackSpec:
    """The dataset's training attack with the method's overrides applied."""
    spec = dict(cfg["experiments"][dataset]["attack"])
    spec.update(cfg["methods"][method].get("attack", {}))
    return AttackSpec(**spec)


def variant_name(method: str, param: str, value: float) -> str:
    """The run name of one sweep value: aalp, lambda, 0.25 -> aalp_lambda0p25."""
    return f"{method}_{param}{value:g}".replace(".", "p").replace("-", "m").replace("+", "")


def variants(cfg: dict) -> dict[tuple[str, str], tuple[str, str, float]]:
    """(dataset, variant run name) -> (base method, param, value) for every value of every sweep."""
    return {(sw["dataset"], variant_name(sw["method"], sw["param"], v)): (sw["method"], sw["param"], float(v))
            for sw in cfg.get("sweeps", []) for v in sw["values"]}


def base_method(cfg: dict, dataset: str, method: str) -> str:
    """The method of params.yaml a run name stands for (itself, or a sweep variant's base)."""
    v = variants(cfg).get((dataset, method))
    return v[0] if v else method


def method_params(cfg: dict, dataset: str, method: str) -> dict:
    """methods.<method> with defaults, or for a sweep variant its base method with the swept value."""
    v = variants(cfg).get((dataset, method))
    if v is None:
        return cfg["methods"][method]
    base, param, value = v
    return {**cfg["methods"][base], param: value}


def run_spec(cfg: dict, dataset: str, method: str, seed: int) -> RunSpec:
    if dataset not in cfg["experiments"]:
        raise ConfigError(f"unknown dataset {dataset!r}; allowed values: {', '.join(sorted(cfg['experiments']))}")
    exp = cfg["experiments"][dataset]
    names = exp["methods"] + [v for d, v in variants(cfg) if d == dataset]
    if method not in names:
        raise ConfigError(f"method {method!r} is not run on {dataset}; allowed values: {', '.join(names)}")
    m = method_params(cfg, dataset, method)
    return RunSpec(dataset=dataset, method=method, seed=int(seed), model=exp["model"], epochs=exp["epochs"],
                   batch_size=exp["batch_size"], lr=float(exp["lr"]),
                   attack=train_attack(cfg, dataset, base_method(cfg, dataset, method)),
                   objective=m["objective"], guided_dropout=m["guided_dropout"], adaptive_weight=m["adaptive_weight"],
                   lam=float(m["lambda"]), pairing=m["pairing"], beta=float(m["beta"]),
                   gd_mask_source=m["gd_mask_source"], gd_rescale=m["gd_rescale"], mixed_batch=m["mixed_batch"],
                   attack_mode=m["attack_mode"], augment=exp["augment"],
                   snapshots=f"{dataset}/{method}" in cfg["training"].get("checkpoint_runs", []))


def seeds(cfg: dict, dataset: str, method: str) -> list[int]:
    """The seeds of one run: `run_seeds["<dataset>/<method>"]` where given, else `seeds`."""
    return list(cfg.get("run_seeds", {}).get(f"{dataset}/{method}", cfg["seeds"]))


def runs(cfg: dict, sweeps: bool = True):
    """Every (dataset, method, seed) of the experiment matrix, then every sweep variant, in a stable order."""
    for dataset, exp in cfg["experiments"].items():
        for method in exp["methods"]:
            for seed in seeds(cfg, dataset, method):
                yield dataset, method, seed
    if sweeps:
        for dataset, name in variants(cfg):
            for seed in seeds(cfg, dataset, name):
                yield dataset, name, seed


def only_runs(cfg: dict, keep) -> dict:
    """A copy of cfg whose experiment matrix and sweeps hold only the runs in `keep` ((dataset, method, seed)
    triples): a method, sweep value or dataset without a kept run is left out, and each kept run name gets
    its kept seeds as run_seeds. What the report of a set published in slices is built from."""
    keep, out = set(keep), copy.deepcopy(cfg)
    out["run_seeds"], out["sweeps"] = {}, []

    def kept(d, name):  # records the run's kept seeds; whether it has any
        ss = [s for s in seeds(cfg, d, name) if (d, name, s) in keep]
        if ss:
            out["run_seeds"][f"{d}/{name}"] = ss
        return bool(ss)

    for d, exp in cfg["experiments"].items():
        out["experiments"][d]["methods"] = [m for m in exp["methods"] if kept(d, m)]
        if not out["experiments"][d]["methods"]:
            del out["experiments"][d]
    for sw in cfg.get("sweeps", []):
        base_kept = sw["method"] in out["experiments"].get(sw["dataset"], {}).get("methods", [])
        values = [v for v in sw["values"] if base_kept and kept(sw["dataset"], variant_name(sw["method"], sw["param"], v))]
        if values:
            out["sweeps"].append({**sw, "values": values})
    return out
