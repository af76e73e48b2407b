"""`python -m aalp bench agree`: the verdict rule against values worked out by hand, and the whole check on a
small synthetic set, including a broken fast path that it must catch."""
import copy
import json
import math

import pytest
import yaml

from aalp.tools import agree as AG
from aalp import cli
from aalp.core import training
from aalp.config import ConfigError


def test_verdict_by_hand():
    v = AG.verdict([80.0, 82.0, 84.0], [81.0, 83.0, 85.0])
    # seed sd: both paths have sd 2, pooled 2; fast - plain is 1 on every seed (interval half-width 0)
    assert v["seed_sd"] == pytest.approx(2.0) and v["diff_mean"] == pytest.approx(1.0) and v["diff_half"] == 0
    # plain: 82 ± t(0.975, 2) · 2 / sqrt(3) = 82 ± 4.3027 · 1.1547
    assert v["plain_mean"] == pytest.approx(82.0) and v["plain_half"] == pytest.approx(4.968, abs=1e-3)
    assert v["verdict"] == "agree"  # 1 <= 2 · 2
    assert AG.verdict([80.0, 82.0, 84.0], [84.0, 86.0, 88.0])["verdict"] == "agree"  # 4 <= 4: on the boundary
    assert AG.verdict([80.0, 82.0, 84.0], [84.5, 86.5, 88.5])["verdict"] == "differ"  # 4.5 > 4
    one = AG.verdict([80.0], [95.0])
    assert one["verdict"] == "inconclusive" and math.isnan(one["seed_sd"])


def test_parse_options():
    assert AG.parse_options(["amp", "compile=reduce-overhead"]) == {"amp": True, "compile": "reduce-overhead"}
    for bad, msg in ((["fast"], "unknown speed option 'fast'"), (["compile"], "compile needs a mode"),
                     (["amp=1"], "takes no value"), ([], "at least one speed option")):
        with pytest.raises(ConfigError, match=msg):
            AG.parse_options(bad)


@pytest.fixture
def small(tmp_path, ci_params, monkeypatch):
    from aalp import config as C
    from aalp.core import data

    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(ci_params)
    p["datasets"] = {"synthetic": {"source": "synthetic", "shape": [1, 28, 28], "n_train": 512, "n_test": 128, "seed": 0}}
    p["experiments"] = {"synthetic": dict(p["experiments"]["synthetic"], epochs=2, batch_size=32, methods=["raw"])}
    p["training"].update(probe_size=32, device="cpu")
    p["run_seeds"], p["sweeps"] = {}, []
    p["training"]["checkpoint_runs"] = []
    cfg = C.validate(p)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    data.prepare(cfg, "synthetic")
    return cfg


def test_agree_runs_both_paths_and_catches_a_broken_fast_path(small, tmp_path, monkeypatch):
    r = AG.run(small, "synthetic", "raw", [0, 1], {"fused_adam": True}, tmp_path / "ok", epochs=2,
               train_samples=256, test_samples=64, attacks=["pgd5"])
    assert set(r["runs"]) == {"plain/s0", "plain/s1", "fast/s0", "fast/s1"}
    run0 = json.loads((tmp_path / "ok/plain/s0/run.json").read_text())
    assert run0["train_samples"] == 256 and run0["steps"] == 2 * 8  # 256 images, batch 32, 2 epochs
    assert json.loads((tmp_path / "ok/fast/s0/run.json").read_text())["training"]["fused_adam"] is True
    assert r["runs"]["plain/s0"]["accuracy"]["clean"] > 60  # the synthetic task is learnt
    assert set(r["metrics"]) == {"clean", "pgd5", "train"}
    # fused Adam lands on the plain weights to rounding: the same accuracies, so the paths agree
    assert r["metrics"]["clean"]["diff_mean"] == pytest.approx(0, abs=2) and r["agree"]
    assert json.loads((tmp_path / "ok/agree.json").read_text())["agree"] is True
    assert "agree" in AG.format_result(r)

    # a fast path that silently stops learning: no optimiser step when channels_last is on
    real = training.Trainer.__init__

    def broken(self, *a, channels_last=False, **k):
        real(self, *a, channels_last=channels_last, **k)
        if channels_last:
            self.opt.step = lambda *_, **__: None
    monkeypatch.setattr(training.Trainer, "__init__", broken)
    bad = AG.run(small, "synthetic", "raw", [0, 1], {"channels_last": True}, tmp_path / "bad", epochs=2,
                 train_samples=256, test_samples=64, attacks=["pgd5"])
    assert bad["metrics"]["clean"]["verdict"] == "differ" and not bad["agree"]
    # a rerun finds every run finished and trains nothing
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert AG.run(small, "synthetic", "raw", [0, 1], {"channels_last": True}, tmp_path / "bad", epochs=2,
                  train_samples=256, test_samples=64, attacks=["pgd5"])["metrics"] == bad["metrics"]


def test_cli_errors_before_any_work(small, capsys):
    for argv, msg in ((["bench", "agree", "--options", "turbo"], "unknown speed option"),
                      (["bench", "agree", "--options", "amp", "--methods", "nope"], "method 'nope' is not run"),
                      (["bench", "agree", "--options", "amp", "--methods", "raw", "--attacks", "pgd"], "unknown attack 'pgd'"),
                      (["bench", "agree", "--options", "amp", "--methods", "raw", "--epochs", "0"], "--epochs must be at least 1")):
        assert cli.main(argv) != 0
        assert msg in capsys.readouterr().err
