"""workflow/scripts/gpu_window.sh (`python -m aalp window`, tools/window.py): as much of a set as fits in a short GPU
window without Snakemake. The order and sizing of the seed groups against numbers worked out by hand; the estimates
from `bench plan`'s rows; a stage stopped at the deadline; what OUT_DIR gets; and on the CPU, a tiny set whose
unpublished seed group a first call leaves mid-training (resume points, no model), a second call resumes and
finishes, a third leaves untouched, and whose runs.tgz unpacks into a folder `publish --add` takes."""
import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
import yaml

from aalp import config as C, publish as P
from aalp.tools import plan as PL, window as W
from conftest import BIN, CI_PARAMS, REPO, run

SCRIPT = REPO / "workflow" / "scripts" / "gpu_window.sh"


def _todo(method, seeds, cost, together=()):
    return W.Todo("d", method, {s: dict(cost) for s in seeds}, together)


def test_groups_start_in_order_as_many_seeds_as_fit():
    """Overhead 10 s a stage process. ALP: 3 seeds of 100 s (train 80, evaluate 15, analyze 5); ADV: 2 of 300 s;
    RAW: 2 of 20 s."""
    alp = _todo("alp", [0, 1, 2], {"train": 80, "evaluate": 15, "analyze": 5})
    adv = _todo("adv", [0, 1], {"train": 250, "evaluate": 40, "analyze": 10})
    raw = _todo("raw", [0, 1], {"train": 10, "evaluate": 5, "analyze": 5})
    # 400 s: ALP's 3 seeds (30 + 300 = 330 s); 70 s left: not one ADV seed (30 + 300), but both RAW seeds (30 + 40 = 70)
    assert W.schedule([alp, adv, raw], 400, overhead=10) == [
        ("d/alp", [0, 1, 2], 330), ("d/adv", None, 330), ("d/raw", [0, 1], 70)]
    # 250 s: 2 ALP seeds (230); 20 s left: the third ALP seed (130), ADV (330) and RAW (50) are passed over, once each
    assert W.schedule([alp, adv, raw], 250, overhead=10) == [
        ("d/alp", [0, 1], 230), ("d/alp", None, 130), ("d/adv", None, 330), ("d/raw", None, 50)]
    # not one seed of anything fits
    assert W.schedule([adv], 329, overhead=10) == [("d/adv", None, 330)]

    # an interrupted group (seeds 1, 2; a quarter of their training left: 20 s each) resumes only as itself; seed 3 is
    # trained (evaluate and analyze left, 20 s); seed 0 is fresh (100 s)
    part = W.Todo("d", "alp", {0: {"train": 80, "evaluate": 15, "analyze": 5}, 1: {"train": 20, "evaluate": 15, "analyze": 5},
                               2: {"train": 20, "evaluate": 15, "analyze": 5}, 3: {"evaluate": 15, "analyze": 5}}, (1, 2))
    # 120 s: the group 1, 2 (30 + 80 = 110); then 10 s: nothing
    assert W.schedule([part], 120, overhead=10) == [("d/alp", [1, 2], 110), ("d/alp", None, 40)]
    # 100 s: the group does not fit whole; of the others, cheapest first: seed 3 (2 stages: 20 + 20 = 40) fits, seed 3
    # and seed 0 (3 stages: 30 + 120 = 150) do not
    assert W.schedule([part], 100, overhead=10)[0] == ("d/alp", [3], 40)
    # 200 s: the group (110), then seeds 3 and 0 no more (150 > 90), seed 3 alone (40)
    assert W.schedule([part], 200, overhead=10) == [("d/alp", [1, 2], 110), ("d/alp", [3], 40), ("d/alp", None, 130)]


def test_order_named_methods_then_autoattack_then_the_set_raw_last(ci_params):
    cfg = C.validate(copy.deepcopy(ci_params))  # evaluation.autoattack_methods: alp, aalp (and aalp's sweep values)
    keys = list(dict.fromkeys((d, m) for d, m, _ in C.runs(cfg)))
    names = lambda ks: [f"{d}/{m}".replace("synthetic", "s") for d, m in ks]  # noqa: E731
    assert names(W.order(cfg, keys)) == [
        "s/alp", "s/aalp", "s/aalp_lambda0p1", "s/aalp_lambda2",  # AutoAttack: the longest evaluations
        "s/adv", "s/trades", "s/alp_gd", "s/alp_aw", "s/adv_gd", "s_rgb/adv",  # the others in the set's order
        "s/raw", "s/raw_gd", "s_rgb/raw"]  # objective raw last
    assert names(W.order(cfg, keys, ["trades", "raw"]))[:5] == ["s/trades", "s/raw", "s_rgb/raw", "s/alp", "s/aalp"]


class FixedTimer(PL.Timer):
    def __init__(self, device=None):
        pass

    def train_step(self, cfg, dataset, method):
        return 0.01

    def passes(self, cfg, dataset, bs):
        return 0.0001, 0.0003


def test_estimates_are_bench_plans_rows_per_run(ci_params, monkeypatch):
    """Per dataset/method, the seconds of `bench plan`'s train, evaluate and analyze rows (tests/tools/test_plan.py
    works them out), timed for the runs to make only (a sweep value with its base method), times WINDOW_SCALE."""
    cfg = C.validate(copy.deepcopy(ci_params))
    monkeypatch.setattr(PL, "Timer", FixedTimer)
    monkeypatch.setenv("WINDOW_SCALE", "2")
    monkeypatch.delenv("WINDOW_ESTIMATE", raising=False)
    est, how = W.estimates(cfg, [("synthetic", "alp", 1), ("synthetic", "aalp_lambda2", 0)])
    assert set(est) == {"synthetic/alp", "synthetic/aalp", "synthetic/aalp_lambda2"} and "x 2" in how
    one = 1 * 0.0001 + 3 * 0.0003 + 2 * 0.0003  # analyze: contributions, the 3-step attack, Grad-CAM
    assert est["synthetic/alp"] == pytest.approx({
        "train": 2 * (189 * 0.01 + 3 * 3 * 0.0003), "evaluate": 2 * (6 * 24 * 0.0003 + 0.0385),
        "analyze": 2 * one * (1 + 4 / 3),  # aalp s0's 4 snapshots shared over the 3 analysed runs timed
        "evaluate_snapshot": 0})  # no training.snapshot_steps (tests/test_snapshots.py has some)
    assert est["synthetic/aalp_lambda2"]["analyze"] == 0  # a sweep value is not analysed


def test_a_stage_gets_sigterm_at_the_deadline_and_sigkill_after_the_grace(tmp_path):
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *_: (print('saved', flush=True), sys.exit(143)))\n"
             "print('ready', flush=True)\ntime.sleep(60)\n")
    t = time.time()
    rc, sec, stopped = W.run_until([sys.executable, "-c", child], t + 1.5, tmp_path / "a.log")
    assert stopped and rc == 143 and 1.5 <= time.time() - t < 10 and sec < 10
    assert (tmp_path / "a.log").read_text().splitlines()[-2:] == ["ready", "saved"]  # after the command line
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    t = time.time()
    rc, sec, stopped = W.run_until([sys.executable, "-c", deaf], t + 1, tmp_path / "b.log", grace=0.5)
    assert stopped and rc == -signal.SIGKILL and 1.5 <= time.time() - t < 10


def test_pack_leaves_out_weights_and_splits_what_is_large(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    rd = work / "runs/d/alp/s0"
    (rd / "eval").mkdir(parents=True)
    (work / "logs").mkdir()
    out.mkdir()
    (work / "params.yaml").write_text("profile: x\n")
    (rd / "eval/records.parquet").write_bytes(os.urandom(300_000))  # incompressible
    for f in ("model.pt", "resume.pt", "eval/resume.pt", ".history.abc.tmp.csv"):
        (rd / f).write_bytes(b"x")
    (out / "runs.tgz").write_bytes(b"from an earlier call")
    res = W.pack(work, out, limit_mb=1, part_mb=0.1)
    assert res["pieces"] == ["runs.tgz.00", "runs.tgz.01", "runs.tgz.02"] and not (out / "runs.tgz").exists()
    whole = tmp_path / "whole.tgz"
    whole.write_bytes(b"".join((out / p).read_bytes() for p in res["pieces"]))
    with tarfile.open(whole) as tar:
        assert tar.getnames() == ["params.yaml", "runs/d/alp/s0/eval/records.parquet"]
    res = W.pack(work, out, limit_mb=0.2)
    assert res["pieces"] == [] and "over the 0.2 MB" in res["refused"] and not list(out.glob("runs.tgz*"))
    assert sorted(p.name for p in out.iterdir()) == ["logs.tgz"]


def _set(root):
    """A tiny set: RAW seed 0 (published) and ALP seeds 0 and 1 (unpublished), 5 epochs of 2 steps each."""
    p = yaml.safe_load(CI_PARAMS.read_text())
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 64, "n_test": 16}}
    p["experiments"] = {"synthetic": {**p["experiments"]["synthetic"], "epochs": 5, "methods": ["raw", "alp"]}}
    p["seeds"], p["run_seeds"], p["sweeps"] = [0], {"synthetic/alp": [0, 1]}, []
    p["training"].update(checkpoint_runs=[], probe_size=16)
    p["evaluation"].update(attacks=["fgsm"], n_samples=16, batch_size=16)
    p["evaluation"].pop("autoattack_samples", None)
    p["analysis"].update(cam_samples=2)
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    published = root / "published"
    published.mkdir()
    sha = hashlib.sha256((root / "params.yaml").read_bytes()).hexdigest()
    (published / "manifest.json").write_text(json.dumps({"runs": {"runs/synthetic/raw/s0": {}}, "params_sha256": sha,
                                                         "files": {}, "total_bytes": 0, "code_hash": None}))
    return root, published


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in (folder / "runs").rglob("*") if p.is_file()}


def test_window_stops_a_group_resumes_it_and_brings_back_what_publish_adds(tmp_path, monkeypatch):
    set_dir, published = _set(tmp_path / "set")
    work, out = tmp_path / "work", tmp_path / "out"
    cmd = f"bash {SCRIPT} {set_dir} {work} {out} {published}"
    env = {"SPEED": "0", "WINDOW_ESTIMATE": "100"}

    # a deadline before even one seed's estimate (3 x 10 s of process starts + 3 x 100 s): passed over, nothing started
    none = run(cmd, tmp_path, env={**env, "DEADLINE": "300"}).stdout
    assert "SKIP" in none and "synthetic/alp: not one of its 2 seeds fits" in none and "START" not in none, none
    assert not (work / "runs").exists() and json.loads((out / "window.json").read_text())["skipped"] == ["synthetic/alp"]

    # the first call: stopped mid-training (SIGTERM, what the deadline sends its stage): resume points, no model
    e = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env, "WINDOW_ESTIMATE": "1", "DEADLINE": "600"}
    p = subprocess.Popen(cmd.split(), cwd=tmp_path, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    resume = work / "runs/synthetic/alp/s0/resume.pt"
    t = time.time()
    while not resume.exists() and p.poll() is None and time.time() - t < 120:  # a first epoch is done
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    first = p.communicate(timeout=120)[0]
    assert p.returncode == 0 and "START" in first and "STOP" in first and "resumes it" in first, first
    for s in (0, 1):
        rd = work / f"runs/synthetic/alp/s{s}"
        assert (rd / "resume.pt").is_file() and not (rd / "model.pt").exists()
    assert "signal 15 at step" in (work / "logs/synthetic-alp-train.log").read_text()
    assert json.loads((out / "window.json").read_text())["groups"][0]["status"] == "stopped"
    with tarfile.open(out / "runs.tgz") as tar:
        assert "params.yaml" in tar.getnames() and not [n for n in tar.getnames() if n.endswith(".pt")]

    # the second call resumes the group and finishes it
    second = run(cmd, tmp_path, env={**env, "WINDOW_ESTIMATE": "1"}).stdout
    assert "START" in second and "(resumes its training)" in second and "DONE" in second, second
    assert "resuming from" in (work / "logs/synthetic-alp-train.log").read_text()
    cfg = C.load(work / "params.yaml")
    assert P.finished_runs(cfg, work) == [("synthetic", "alp", 0), ("synthetic", "alp", 1)]
    assert not (work / "runs/synthetic/raw").exists()
    assert [len(json.loads((work / f"runs/synthetic/alp/s{s}/run.json").read_text())["group"]) for s in (0, 1)] == [2, 2]
    assert sorted(p.name for p in out.iterdir()) == ["logs.tgz", "runs.tgz", "window.json"]

    # a third call: nothing to make, nothing touched
    before = _files(work)
    third = run(cmd, tmp_path, env=env).stdout
    assert "0 runs to make" in third and "START" not in third and _files(work) == before, third

    # runs.tgz unpacks into a folder publish --add takes: its checks pass (params.yaml, code hashes) and it copies the
    # two finished runs' files; the report it then rebuilds (a minute here) is left out
    folder = tmp_path / "slice"
    with tarfile.open(out / "runs.tgz") as tar:
        tar.extractall(folder)
    dest = tmp_path / "results" / "set"
    dest.parent.mkdir()
    shutil.copytree(published, dest)
    copied = {}
    monkeypatch.setattr(P, "_report_and_swap", lambda cfg, tmp, dest, code_hash, rebuild: copied.update(
        files=sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()), code_hash=code_hash))
    P.add_runs(C.load(folder / "params.yaml"), folder, dest)
    runs = {f.split("/")[3] for f in copied["files"] if f.startswith("runs/")}
    assert {f.split("/")[2] for f in copied["files"] if f.startswith("runs/")} == {"alp"} and runs == {"s0", "s1"}
    assert set(copied["code_hash"]) == {"train", "evaluate", "analyze"} and not any(f.endswith(".pt") for f in copied["files"])
