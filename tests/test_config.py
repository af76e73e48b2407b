"""params.yaml validation: every bad input gets a one-line error naming the key, before any work."""
import copy

import pytest
import yaml

from aalp import config as C
from conftest import REPO, run


def check_error(params, *needles):
    with pytest.raises(C.ConfigError) as e:
        C.validate(params)
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_shipped_profiles_are_valid(ci_params, paper_params):
    for p in (ci_params, paper_params):
        cfg = C.validate(p)
        assert cfg["methods"]["raw"]["guided_dropout"] is False  # defaults filled from the schema
        assert cfg["evaluation"]["cw_kappa"] == 50.0


def test_unknown_key(ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["epoch"] = 3
    check_error(p, "unknown key 'experiments.synthetic.epoch'", "allowed keys:", "epochs", "batch_size")


def test_unknown_top_level_key(ci_params):
    p = copy.deepcopy(ci_params)
    p["trainig"] = {}
    check_error(p, "unknown key 'trainig'", "training")


def test_unknown_method_name(ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["methods"].append("aalpp")
    check_error(p, "experiments.synthetic.methods", "'aalpp'", "allowed values: aalp, adv, adv_gd, alp, alp_aw, alp_gd, raw, raw_gd, trades")


def test_unknown_objective(ci_params):
    p = copy.deepcopy(ci_params)
    p["methods"]["adv"]["objective"] = "madry"
    check_error(p, "methods.adv.objective", "'madry'", "allowed values: raw, adv, alp, trades")


def test_unknown_dataset_name(ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["mnistt"] = p["experiments"]["synthetic"]
    check_error(p, "experiments.mnistt", "unknown dataset", "allowed values: synthetic, synthetic_rgb")


def test_unknown_dataset_source(ci_params):
    p = copy.deepcopy(ci_params)
    p["datasets"]["synthetic"]["source"] = "imagenet"
    check_error(p, "datasets.synthetic.source", "'imagenet'", "mnist", "cifar10")


def test_negative_epsilon(ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["attack"]["eps"] = -0.1
    check_error(p, "experiments.synthetic.attack.eps = -0.1", ">= 0")


def test_negative_epsilon_in_method_override(ci_params):
    p = copy.deepcopy(ci_params)
    p["methods"]["adv"]["attack"] = {"eps": -1}
    check_error(p, "methods.adv.attack.eps", ">= 0")


def test_wrong_type(ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["epochs"] = "three"
    check_error(p, "experiments.synthetic.epochs = 'three'", "expected integer")


def test_model_that_does_not_fit_the_dataset(ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["model"] = "resnet32"
    check_error(p, "experiments.synthetic.model = 'resnet32'", "(1, 28, 28)", "allowed values: lenet, lenet_small")


def test_unknown_attack_name(ci_params):
    p = copy.deepcopy(ci_params)
    p["evaluation"]["attacks"] = ["pgd", "fgsm"]
    check_error(p, "evaluation.attacks.0")


def test_method_override_of_training_attack(ci_params):
    p = copy.deepcopy(ci_params)
    p["methods"]["adv"]["attack"] = {"steps": 7}
    cfg = C.validate(p)
    assert C.train_attack(cfg, "synthetic", "adv").steps == 7
    assert C.train_attack(cfg, "synthetic", "raw").steps == 3
    assert C.run_spec(cfg, "synthetic", "adv", 0).attack.eps == ci_params["experiments"]["synthetic"]["attack"]["eps"]


def test_cli_reports_bad_params_in_one_line_before_work(tmp_path, ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["attack"]["eps"] = -0.3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    r = run("python -m aalp train --dataset synthetic --method raw --seed 0", tmp_path, check=False)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines == ["error: params.yaml: experiments.synthetic.attack.eps = -0.3 is out of range; it must be >= 0"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_snakemake_reports_bad_params(tmp_path, ci_params):
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["methods"] = ["raw", "nope"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    r = run(f"snakemake -n --cores 1 -s {REPO / 'Snakefile'}", tmp_path, check=False)
    assert r.returncode != 0
    assert "experiments.synthetic.methods: unknown method 'nope'; allowed values: aalp, adv, adv_gd, alp, alp_aw, alp_gd, raw, raw_gd, trades" in r.stdout + r.stderr


@pytest.mark.parametrize("where", ["experiments", "method override"])
@pytest.mark.parametrize("key,value", [("eps", 8), ("step", 2), ("eps", 1.5)])
def test_eps_and_step_in_pixels_are_rejected(ci_params, where, key, value):
    """Inputs live in [0, 1]: eps 8 would mean no constraint at all."""
    p = copy.deepcopy(ci_params)
    if where == "experiments":
        p["experiments"]["synthetic"]["attack"][key] = value
        name = f"experiments.synthetic.attack.{key}"
    else:
        p["methods"]["adv"]["attack"] = {key: value}
        name = f"methods.adv.attack.{key}"
    check_error(p, f"{name} = {value}", "above 1", "8/255 as 0.0314")


def test_eps_at_the_range_limit_is_accepted(ci_params):
    p = copy.deepcopy(ci_params)
    p["methods"]["adv"]["attack"] = {"eps": 1.0, "step": 0.0314}
    assert C.train_attack(C.validate(p), "synthetic", "adv").eps == 1.0


@pytest.mark.parametrize("where", ["experiments", "method override"])
@pytest.mark.parametrize("key,needle", [("step", "> 0"), ("steps", ">= 1")])
def test_zero_step_or_steps_rejected(ci_params, where, key, needle):
    p = copy.deepcopy(ci_params)
    if where == "experiments":
        p["experiments"]["synthetic"]["attack"][key] = 0
        name = f"experiments.synthetic.attack.{key}"
    else:
        p["methods"]["alp"]["attack"] = {key: 0}
        name = f"methods.alp.attack.{key}"
    check_error(p, f"{name} = 0", needle)


def test_paper_parameter_set_runs_three_seeds(paper_params):
    """Means and intervals over seeds need more than one; the paper's set runs three of each run."""
    cfg = C.validate(paper_params)
    assert cfg["seeds"] == [0, 1, 2]
    runs = list(C.runs(cfg, sweeps=False))
    assert {s for _, _, s in runs} == {0, 1, 2} and len(runs) == 3 * sum(len(e["methods"]) for e in cfg["experiments"].values())


def test_sweep_variants_are_runs_with_the_swept_value(ci_params):
    p = copy.deepcopy(ci_params)
    p["sweeps"] = [{"dataset": "synthetic", "method": "aalp", "param": "lambda", "values": [0.1, 2]}]
    cfg = C.validate(p)
    assert C.variant_name("aalp", "lambda", 0.25) == "aalp_lambda0p25"
    runs = list(C.runs(cfg))
    assert ("synthetic", "aalp_lambda0p1", 0) in runs and ("synthetic", "aalp_lambda2", 0) in runs
    assert ("synthetic", "aalp_lambda2", 0) not in list(C.runs(cfg, sweeps=False))
    spec = C.run_spec(cfg, "synthetic", "aalp_lambda0p1", 0)
    base = C.run_spec(cfg, "synthetic", "aalp", 0)
    assert spec.lam == 0.1 and base.lam == 0.5
    assert (spec.guided_dropout, spec.adaptive_weight, spec.attack) == (True, True, base.attack)


def test_sweep_and_checkpoint_runs_must_name_runs_of_the_matrix(ci_params):
    p = copy.deepcopy(ci_params)
    p["sweeps"] = [{"dataset": "synthetic_rgb", "method": "aalp", "param": "lambda", "values": [1]}]
    check_error(p, "sweeps.0.method = 'aalp' is not run on synthetic_rgb", "allowed values: raw, adv")
    p = copy.deepcopy(ci_params)
    p["sweeps"] = [{"dataset": "synthetic", "method": "aalp", "param": "epochs", "values": [1]}]
    check_error(p, "sweeps.0.param", "allowed values: lambda, beta")
    p = copy.deepcopy(ci_params)
    p["training"]["checkpoint_runs"] = ["synthetic/aalpp"]
    check_error(p, "training.checkpoint_runs", "'synthetic/aalpp'")


def test_autoattack_samples_off_the_batch_grid_is_rejected_before_training(ci_params):
    """Found by evaluate only after every model had trained; now C.validate says it at once."""
    p = copy.deepcopy(ci_params)
    p["evaluation"].update(batch_size=40, autoattack_samples=50)
    check_error(p, "evaluation.autoattack_samples = 50 is not a multiple of evaluation.batch_size = 40")
    p["evaluation"]["autoattack_samples"] = 80
    C.validate(p)


def test_run_seeds_give_single_runs_more_seeds(ci_params):
    p = copy.deepcopy(ci_params)
    p["seeds"], p["run_seeds"] = [0], {"synthetic/alp": [0, 1], "synthetic/aalp_lambda2": [0, 3]}
    runs = list(C.runs(C.validate(p)))
    assert [r for r in runs if r[:2] == ("synthetic", "alp")] == [("synthetic", "alp", 0), ("synthetic", "alp", 1)]
    assert ("synthetic", "aalp_lambda2", 3) in runs and ("synthetic", "adv", 1) not in runs
    p["run_seeds"] = {"synthetic/nope": [0]}
    check_error(p, "run_seeds.synthetic/nope names no run; allowed values: ")
    p["run_seeds"] = {"synthetic/alp": [1, 0]}
    check_error(p, "run_seeds.synthetic/alp must start with the first of seeds (0)")


def test_only_runs_keeps_exactly_the_given_runs(ci_params):
    """The matrix of a set published in slices: exactly the kept runs, in the set's order; a method, sweep
    value or dataset without a kept run is left out."""
    cfg = C.validate(ci_params)
    every = list(C.runs(cfg))
    keep = [r for r in every if r[1] in ("raw", "alp") and r[0] == "synthetic" and r[2] == 1 or r[1] == "adv"
            or r[1] == "aalp_lambda2"]
    keep = [r for r in every if r in set(keep) | {("synthetic", "aalp", 0)}]
    sub = C.only_runs(cfg, keep)
    assert list(C.runs(sub)) == keep
    assert sub["sweeps"] == [{**cfg["sweeps"][0], "values": [2]}]
    assert set(sub["experiments"]) == {"synthetic", "synthetic_rgb"}
    assert C.only_runs(cfg, every)["experiments"] == cfg["experiments"] and list(C.runs(C.only_runs(cfg, every))) == every
    assert "synthetic_rgb" not in C.only_runs(cfg, [r for r in every if r[0] == "synthetic"])["experiments"]


def test_a_slice_without_the_checkpoint_run_asks_no_checkpoint_files(ci_params):
    """A set published in slices whose first slice holds no AALP run (configs/mnist_cpu's first GPU slice):
    Figs. 9-10 say which runs they need instead of reading checkpoints.csv of runs that are not there; with
    one AALP run kept, they read exactly that run's series."""
    from aalp.report import inputs as report_in

    cfg = C.validate(ci_params)
    assert report_in.checkpoint_runs(cfg) == [("synthetic", "aalp")]
    every = list(C.runs(cfg))
    sub = C.only_runs(cfg, [r for r in every if r[1] in ("raw", "adv")])
    assert report_in.checkpoint_runs(sub) == []
    assert report_in.item_inputs(sub, "fig09") == [] and report_in.item_inputs(sub, "fig10") == []
    assert report_in.needs(sub, "fig09").startswith("This set keeps no training checkpoints: Fig. 9 needs AALP on synthetic")
    one = C.only_runs(cfg, [r for r in every if r[1] == "raw" or r == ("synthetic", "aalp", 1)])
    assert [p.as_posix() for p in report_in.item_inputs(one, "fig09")] == [
        "runs/synthetic/aalp/s1/analysis/summary.json", "runs/synthetic/aalp/s1/analysis/checkpoints.csv"]


def test_eval_step_per_k_hand_worked(paper_params):
    """evaluation.step_rule (docs/method.md#evaluation-step). MNIST, eps 0.3, step 0.01: under `reach` k = 10 and
    20 cannot cross the ball (0.1, 0.2 < 0.3) and take 2.5 · 0.3 / k = 0.075 and 0.0375; 40 · 0.01 = 0.4 and
    100 · 0.01 = 1 can, and keep 0.01. SVHN (12/255, 3/255) and CIFAR-10 (8/255, 2/255) cross in 10 steps (30/255
    >= 12/255, 20/255 >= 8/255): unchanged. Under `fixed`, the schema default, every k takes the dataset's step."""
    cfg = C.validate(paper_params)
    assert cfg["evaluation"]["step_rule"] == "reach"  # the paper set takes the rule
    got = {d: [C.eval_step(cfg, d, k) for k in (10, 20, 40, 100)] for d in ("mnist", "svhn", "cifar10")}
    assert got["mnist"] == pytest.approx([0.075, 0.0375, 0.01, 0.01], abs=1e-15)
    assert got["svhn"] == [3 / 255] * 4 and got["cifar10"] == [2 / 255] * 4
    p = copy.deepcopy(paper_params)
    del p["evaluation"]["step_rule"]
    fixed = C.validate(p)
    assert fixed["evaluation"]["step_rule"] == "fixed"
    assert [C.eval_step(fixed, "mnist", k) for k in (10, 20, 40, 100)] == [0.01] * 4


def test_published_sets_keep_the_fixed_step():
    """configs/mnist_cpu and configs/fashion_cpu were evaluated at the dataset's step for every k: they load with
    the default `fixed`, so their PGD-10 keeps step 0.01."""
    for s in ("mnist_cpu", "fashion_cpu"):
        cfg = C.load(REPO / "configs" / s / "params.yaml")
        assert cfg["evaluation"]["step_rule"] == "fixed"
        d = next(iter(cfg["experiments"]))
        assert C.eval_step(cfg, d, 10) == cfg["experiments"][d]["attack"]["step"]


def test_unknown_step_rule(ci_params):
    p = copy.deepcopy(ci_params)
    p["evaluation"]["step_rule"] = "madry"
    check_error(p, "evaluation.step_rule = 'madry' is not allowed; allowed values: fixed, reach")
