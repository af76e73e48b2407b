"""Several GPUs in one machine: concurrent jobs take different devices (core/devices.py). The machine is faked:
four device identifiers, the jobs real processes holding real locks."""
import subprocess
import sys

import torch

from aalp.core import devices, training

FOUR = ["GPU-0a", "GPU-1b", "GPU-2c", "GPU-3d"]
JOB = ("import sys, time\nfrom pathlib import Path\nfrom aalp.core import devices\n"
       "i = devices.claim(sys.argv[2].split(','), Path(sys.argv[1]), poll_s=0.1)\n"
       "print(i, time.monotonic(), flush=True)\ntime.sleep(float(sys.argv[3]))\n")


def _jobs(lock_dir, n, hold):
    return [subprocess.Popen([sys.executable, "-c", JOB, str(lock_dir), ",".join(FOUR), str(hold)],
                             stdout=subprocess.PIPE, text=True) for _ in range(n)]


def test_four_concurrent_jobs_take_four_different_devices_and_a_fifth_waits_for_one(tmp_path):
    first = _jobs(tmp_path, 4, hold=4.0)
    got, times = [], []
    for p in first:  # each job prints once it holds a device, then holds it 4 s
        i, t = p.stdout.readline().split()
        got.append(int(i))
        times.append(float(t))
    assert sorted(got) == [0, 1, 2, 3]
    fifth = _jobs(tmp_path, 1, hold=0.0)[0]
    for p in first:
        p.wait(timeout=60)
    idx, when = fifth.stdout.readline().split()
    fifth.wait(timeout=60)
    assert int(idx) in range(4) and float(when) >= min(times) + 3.9  # only once one of the four let go


def test_one_visible_device_takes_no_lock(tmp_path):
    assert devices.claim(["GPU-only"], tmp_path) == 0 and not any(tmp_path.iterdir())


def test_select_device_claims_a_free_gpu_on_a_multi_gpu_machine(tmp_path, monkeypatch):
    """training.device auto on a (faked) four-GPU machine: each call in this process holds one more device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    monkeypatch.setattr(devices, "cuda_ids", lambda: [f"{d}-{tmp_path.name}" for d in FOUR])
    monkeypatch.setattr(devices, "LOCK_DIR", tmp_path)
    assert training.select_device("auto") == torch.device("cuda", 0)
    assert training.select_device("cuda") == torch.device("cuda", 1)
    assert training.select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # one visible device (SLURM's CUDA_VISIBLE_DEVICES)
    assert training.select_device("auto") == torch.device("cuda")
