"""A failed training never passes as a result: divergence stops training, evaluation refuses a model that is not
one, a collapsed model is flagged, and a corrupt resume point or checkpoint gets one line, not a traceback."""
import copy
import json

import pandas as pd
import pytest
import torch
import yaml

from aalp import cli
from aalp import config as C
from aalp.core import checkpoints, data, evaluation, training

RUN = ["--dataset", "synthetic", "--method", "raw", "--seed", "0"]


@pytest.fixture
def tiny_set(tmp_path, ci_params, monkeypatch):
    """A set of one dataset (256 synthetic training images, 60 test images) and one method, RAW, with FGSM, PGD-5
    and CW-5 on all 60, written to tmp_path/params.yaml (the working directory) and prepared: the raw dict."""
    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(ci_params)
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 256, "n_test": 60}}
    p["experiments"] = {"synthetic": {**p["experiments"]["synthetic"], "epochs": 2, "methods": ["raw"]}}
    p["sweeps"], p["run_seeds"], p["seeds"] = [], {}, [0]
    p["training"].update(checkpoint_runs=[], checkpoint_every=1, device="cpu", probe_size=20)
    p["evaluation"].pop("autoattack_methods", None)
    p["evaluation"].update(attacks=["fgsm", "pgd5", "cw5"], n_samples=60, batch_size=30, autoattack_samples=None)
    p["analysis"].update(samples=20, cam_samples=2)
    write(tmp_path, p)
    data.prepare(C.validate(p), "synthetic")
    return p


def write(folder, p):
    (folder / "params.yaml").write_text(yaml.safe_dump(p))


def run_dir(tmp_path):
    return tmp_path / "runs" / "synthetic" / "raw" / "s0"


def one_error_line(capfd) -> str:
    out, err = capfd.readouterr()
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture
def trained(tiny_set, tmp_path, capfd):
    """tiny_set with RAW seed 0 trained (through the command line) into runs/synthetic/raw/s0."""
    assert cli.main(["train", *RUN]) == 0
    capfd.readouterr()
    return tiny_set


def resave(path, edit):
    """model.pt rewritten after edit(model) (in place, under no_grad), as save_model writes it."""
    m = checkpoints.load_model(path)
    with torch.no_grad():
        edit(m)
    checkpoints.save_model(path, m, "lenet_small", (1, 28, 28))


# ----------------------------------------------------------------------------- 1. divergence
def test_an_overflowing_learning_rate_stops_training_in_one_line_and_keeps_the_last_good_resume_point(
        tiny_set, tmp_path, capfd):
    """Adam moves every weight by about lr per step: at lr 1e10 the first step's loss is finite (the initial
    weights), the second step's logits overflow float32 (~1e10 per layer, four layers), so its loss is not."""
    p = copy.deepcopy(tiny_set)
    p["experiments"]["synthetic"]["lr"] = 1e10
    write(tmp_path, p)
    assert cli.main(["train", *RUN]) == 1
    line = one_error_line(capfd)
    assert "train synthetic/raw/s0" in line and "not finite at step 2" in line and "last finite loss" in line
    assert "at step 1)" in line and "resume point" in line and "kept" in line, line
    rd = run_dir(tmp_path)
    assert not (rd / "model.pt").exists() and not (rd / "history.csv").exists() and not (rd / "run.json").exists()
    st = torch.load(rd / "resume.pt", weights_only=True)  # the state after step 1, the last with a finite loss
    assert st["step"] == 1 and all(torch.isfinite(v).all() for v in st["model"].values())
    # -v keeps the exception, for its traceback
    with pytest.raises(training.Diverged):
        cli.main(["-v", "train", *RUN])


def test_weights_that_stop_being_finite_after_finite_losses_stop_training(tiny_set, tmp_path, monkeypatch):
    """A step whose loss was finite but whose update left a NaN weight (an infinite gradient through Adam) is caught
    at the next check, before a resume point or model.pt is written."""
    cfg = C.validate(tiny_set)
    real = training.Trainer.step
    calls = {"n": 0}

    def step(self, x, y):
        out = real(self, x, y)
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                self.model.classifier.weight[0, 0] = float("nan")
        return out

    monkeypatch.setattr(training.Trainer, "step", step)
    rd = run_dir(tmp_path)
    with pytest.raises(training.Diverged, match=r"weights not finite \(classifier.weight\)"):
        training.train(cfg, C.run_spec(cfg, "synthetic", "raw", 0), rd)
    st = torch.load(rd / "resume.pt", weights_only=True)
    assert st["step"] == 2 and not (rd / "model.pt").exists()


def test_evaluate_and_analyze_refuse_a_model_with_weights_that_are_not_finite(trained, tmp_path, capfd):
    rd = run_dir(tmp_path)
    resave(rd / "model.pt", lambda m: m.classifier.weight.fill_(float("nan")))
    for cmd in ("evaluate", "analyze"):
        assert cli.main([cmd, *RUN]) == 1
        line = one_error_line(capfd)
        assert "model.pt" in line and "not finite" in line and "classifier.weight" in line and "diverged" in line
    assert not (rd / "eval" / "metrics.json").exists()


def test_evaluate_stops_on_logits_that_are_not_finite(trained, tmp_path, capfd):
    """Finite weights whose products overflow: the logits layer scaled to 3e38 (float32's largest is 3.4e38)."""
    rd = run_dir(tmp_path)
    resave(rd / "model.pt", lambda m: m.classifier.weight.mul_(0).add_(3e38))
    assert cli.main(["evaluate", *RUN]) == 1
    line = one_error_line(capfd)
    assert "evaluate synthetic/raw/s0" in line and "logits are not finite" in line and "clean samples 0-29" in line
    assert not (rd / "eval" / "metrics.json").exists()


# ----------------------------------------------------------------------------- 2. a collapsed model
def test_a_constant_classifier_is_flagged_and_the_trained_model_it_came_from_is_not(trained, tmp_path):
    cfg = C.validate(trained)
    rd = run_dir(tmp_path)
    healthy = evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    assert healthy["accuracy"]["clean"] > 60, healthy  # the trained model is a model: well above chance
    assert not healthy["checks"]["clean_at_chance"] and not healthy["checks"]["predictions_one_class"]
    # as the report reads them: JSON booleans in the file (a string "False" would read as fired)
    on_disk = json.loads((rd / "eval" / "metrics.json").read_text())["checks"]
    assert on_disk["clean_at_chance"] is False and on_disk["predictions_one_class"] is False
    from aalp.report.tables import sanity_table
    assert not sanity_table(cfg)[0].query("check in ['clean_at_chance', 'predictions_one_class']").fired.astype(bool).any()

    def constant(m):  # logits = bias: class 3 for every input
        m.classifier.weight.zero_()
        m.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(3), 10).float() * 10)

    resave(rd / "model.pt", constant)
    met = evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    labels = pd.read_parquet(rd / "eval" / "records.parquet").label
    share3 = 100 * float((labels == 3).mean())
    assert met["class_shares"] == {"chance_pct": pytest.approx(100 * labels.value_counts().max() / 60, abs=1e-4),
                                   "top_prediction": 3, "top_prediction_pct": 100.0,
                                   "top_prediction_label_pct": pytest.approx(share3, abs=1e-4)}
    acc = met["accuracy"]
    assert acc["clean"] == pytest.approx(share3, abs=1e-3)
    assert acc["clean"] == acc["fgsm"] == acc["pgd5"] == acc["cw5"]  # what hides a collapse from the masking checks
    checks = met["checks"]
    assert checks["clean_at_chance"] and checks["predictions_one_class"]
    on_disk = json.loads((rd / "eval" / "metrics.json").read_text())["checks"]
    assert on_disk["clean_at_chance"] is True and on_disk["predictions_one_class"] is True
    assert not any(v for k, v in checks.items() if k not in ("clean_at_chance", "predictions_one_class")), checks


# ----------------------------------------------------------------------------- 4. corrupt resume points and models
class Foreign:
    """A pickled object of a class weights_only=True refuses to load."""


@pytest.mark.parametrize("content", ["garbage", "foreign"])
def test_a_corrupt_or_foreign_resume_point_is_ignored_with_one_log_line(tiny_set, tmp_path, caplog, content):
    cfg = C.validate(tiny_set)
    spec = C.run_spec(cfg, "synthetic", "raw", 0)
    training.train(cfg, spec, tmp_path / "fresh")
    evaluation.evaluate(cfg, "synthetic", "raw", 0, tmp_path / "fresh")
    rd = tmp_path / "corrupt"
    (rd / "eval").mkdir(parents=True)
    for path in (rd / "resume.pt", rd / "eval" / "resume.pt"):
        if content == "garbage":
            path.write_bytes(b"\x80\x02 not a torch file")
        else:
            torch.save({"fingerprint": Foreign()}, path)
    with caplog.at_level("WARNING"):
        training.train(cfg, spec, rd)
        evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    ignored = [r.getMessage() for r in caplog.records if "not a readable resume point" in r.getMessage()]
    assert len(ignored) == 2 and all("ignoring" in m for m in ignored), ignored
    a, b = (checkpoints.load_model(d / "model.pt").state_dict() for d in (tmp_path / "fresh", rd))
    assert all(torch.equal(a[k], b[k]) for k in a)  # trained from the start, as without a resume point
    ra, rb = (pd.read_parquet(d / "eval" / "records.parquet") for d in (tmp_path / "fresh", rd))
    pd.testing.assert_frame_equal(ra, rb)


@pytest.mark.parametrize("content", ["truncated", "foreign", "state_dict_of_another_model"])
def test_a_corrupt_model_is_one_line_from_every_command_that_reads_it(trained, tmp_path, capfd, content):
    path = run_dir(tmp_path) / "model.pt"
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif content == "foreign":
        torch.save(Foreign(), path)
    else:
        ck = torch.load(path, weights_only=True)
        ck["state_dict"] = {k: v for k, v in ck["state_dict"].items() if not k.startswith("classifier")}
        torch.save(ck, path)
    with pytest.raises(ValueError, match="model.pt: "):
        checkpoints.load_model(path)
    for cmd in ("evaluate", "analyze"):
        assert cli.main([cmd, *RUN]) == 1
        line = one_error_line(capfd)
        assert str(path.relative_to(tmp_path)) in line or str(path) in line, line


def test_the_front_page_lists_collapsed_runs_apart_from_the_masking_warnings():
    from aalp.report.masking import check_rows, fired_lists

    cfg = {"experiments": {"toy": {"attack": {"eps": 0.3, "step": 0.01}}}}
    shares = {"chance_pct": 11.35, "top_prediction": 1, "top_prediction_pct": 100.0, "top_prediction_label_pct": 11.35}
    adv = {"accuracy": {"clean": 11.35, "fgsm": 11.35, "pgd10": 11.35}, "class_shares": shares,
           "checks": {"clean_at_chance": True, "predictions_one_class": True, "pgd_above_fgsm": False}}
    raw = {"accuracy": {"clean": 98.0, "fgsm": 60.0, "pgd10": 2.0}, "checks": {"fgsm_far_above_pgd": True}}
    out = fired_lists(pd.DataFrame(check_rows(cfg, "toy", "adv", 0, adv, {}) + check_rows(cfg, "toy", "raw", 1, raw, {})))
    assert out["collapsed"] == ["toy/adv seed 0: clean accuracy at or under chance (a collapsed model: every attack "
                                "leaves the same): clean 11.3 against chance 11.3",
                                "toy/adv seed 0: clean predictions concentrated on one class (a collapsed model?): "
                                "class 1 takes 100.0% of the predictions and 11.3% of the labels"]
    assert out["warn"] == ["toy/raw seed 1: FGSM accuracy far above PGD (catastrophic overfitting?): FGSM 60.0 against "
                           "PGD-10 2.0"]
    assert out["explained"] == []
