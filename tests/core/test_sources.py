"""The real dataset readers on small files built in each original format (no network)."""
import gzip
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from aalp.core import sources

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def md5(p):
    return hashlib.md5(Path(p).read_bytes()).hexdigest()


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture
def idx_mirror(tmp_path, monkeypatch):
    """A tiny MNIST-format mirror: 20 train / 10 test images with known pixels."""
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(20) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(10)[::-1] % 10}
    resources = []
    for name, arr in arrays.items():
        (mirror / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
        resources.append((f"{name}.gz", md5(mirror / f"{name}.gz")))
    import torchvision.datasets as D

    monkeypatch.setattr(D.MNIST, "resources", resources)
    monkeypatch.setitem(sources.EXPECTED_COUNTS, "mnist", (20, 10))
    return mirror, arrays


def test_idx_mirror(idx_mirror, tmp_path):
    mirror, arrays = idx_mirror
    tx, ty, vx, vy = sources.fetch("mnist", tmp_path / "raw", mirror=mirror, download=False)
    assert tx.shape == (20, 1, 28, 28) and tx.dtype == np.uint8 and vx.shape == (10, 1, 28, 28)
    assert tx[3, 0, 5, 7] == arrays["train-images-idx3-ubyte"][3, 5, 7]
    assert ty.tolist() == (np.arange(20) % 10).tolist() and vy.dtype == np.int64


def test_recompressed_gz_is_accepted_by_payload_hash(idx_mirror, tmp_path, monkeypatch):
    mirror, arrays = idx_mirror
    name = "train-images-idx3-ubyte"
    payload = idx_bytes(arrays[name])
    (mirror / f"{name}.gz").write_bytes(gzip.compress(payload, compresslevel=1, mtime=12345))  # other .gz bytes
    with pytest.raises(sources.DataError, match="does not match mnist's known checksum"):
        sources.fetch("mnist", tmp_path / "raw", mirror=mirror, download=False)
    monkeypatch.setitem(sources.PAYLOAD_SHA256, "mnist", {name: hashlib.sha256(payload).hexdigest()})
    assert sources.fetch("mnist", tmp_path / "raw2", mirror=mirror, download=False)[0].shape == (20, 1, 28, 28)


def test_truncated_file_is_named(idx_mirror, tmp_path):
    mirror, _ = idx_mirror
    f = mirror / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(sources.DataError, match=r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        sources.fetch("mnist", tmp_path / "raw", mirror=mirror, download=False)
    assert not (tmp_path / "raw" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists()  # nothing half-written


def test_file_of_another_dataset(idx_mirror, tmp_path):
    mirror, _ = idx_mirror
    # a valid IDX gz, but not the one mnist expects
    (mirror / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(20, np.uint8))))
    with pytest.raises(sources.DataError, match="train-labels-idx1-ubyte.gz: does not match mnist's known checksum"):
        sources.fetch("mnist", tmp_path / "raw", mirror=mirror, download=False)


def test_missing_file_without_network(idx_mirror, tmp_path):
    mirror, _ = idx_mirror
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(sources.DataError, match=r"t10k-labels-idx1-ubyte.gz: not found in the mirror .*downloading is off"):
        sources.fetch("mnist", tmp_path / "raw", mirror=mirror, download=False)
    with pytest.raises(sources.DataError, match=r"not found locally \(no mirror configured\)"):
        sources.fetch("cifar10", tmp_path / "raw", mirror=None, download=False)


def test_unknown_source_and_missing_mirror(tmp_path):
    with pytest.raises(sources.DataError, match="allowed values: mnist, fashion_mnist, svhn, cifar10"):
        sources.fetch("imagenet", tmp_path)
    with pytest.raises(sources.DataError, match="mirror folder does not exist"):
        sources.fetch("svhn", tmp_path, mirror=tmp_path / "nope")


def test_download_uses_torchvision_download(tmp_path, monkeypatch):
    calls = []

    class FakeSVHN:
        def __init__(self, root, split, download):
            calls.append((split, download))
            n = {"train": 4, "test": 2}[split]
            self.data = np.zeros((n, 3, 32, 32), np.uint8)
            self.labels = np.arange(n)

    monkeypatch.setattr(sources, "_tv", lambda s: FakeSVHN)
    monkeypatch.setitem(sources.EXPECTED_COUNTS, "svhn", (4, 2))
    tx, ty, vx, vy = sources.fetch("svhn", tmp_path / "raw", download=True)
    assert calls == [("train", True), ("test", True)]
    assert tx.shape == (4, 3, 32, 32)


def test_svhn_mat_mirror(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets as D

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(1)
    split_list = {}
    for split, n in (("train", 6), ("test", 4)):
        X = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = (np.arange(n) % 10 + 1)[:, None]  # SVHN stores digit 0 as label 10
        scipy.io.savemat(mirror / f"{split}_32x32.mat", {"X": X, "y": y})
        split_list[split] = ["url", f"{split}_32x32.mat", md5(mirror / f"{split}_32x32.mat")]
        if split == "train":
            train_X = X
    monkeypatch.setattr(D.SVHN, "split_list", split_list)
    monkeypatch.setitem(sources.EXPECTED_COUNTS, "svhn", (6, 4))
    tx, ty, vx, vy = sources.fetch("svhn", tmp_path / "raw", mirror=mirror, download=False)
    assert tx.shape == (6, 3, 32, 32) and vx.shape == (4, 3, 32, 32)
    assert tx[2, 1, 4, 9] == train_X[4, 9, 1, 2]  # H x W x C x N -> N x C x H x W
    assert ty.tolist() == [1, 2, 3, 4, 5, 6] and vy.tolist() == [1, 2, 3, 4]
    mat = mirror / "test_32x32.mat"
    mat.write_bytes(mat.read_bytes()[:100])
    with pytest.raises(sources.DataError, match="test_32x32.mat: md5 .* does not match svhn's known checksum"):
        sources.fetch("svhn", tmp_path / "raw2", mirror=mirror, download=False)


@pytest.mark.parametrize("as_archive", [False, True])
def test_cifar_pickle_mirror(tmp_path, monkeypatch, as_archive):
    import torchvision.datasets as D

    mirror = tmp_path / "mirror"
    folder = mirror / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    train_list, first = [], None
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, (3, 3072)).astype(np.uint8)
        first = data if first is None else first
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [1, 2, 3]}, f, protocol=2)  # as the originals load with latin1
        train_list.append([name, md5(folder / name)])
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["c%d" % i for i in range(10)]}, f, protocol=2)
    monkeypatch.setattr(D.CIFAR10, "train_list", train_list[:5])
    monkeypatch.setattr(D.CIFAR10, "test_list", train_list[5:])
    monkeypatch.setattr(D.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5(folder / "batches.meta")})
    monkeypatch.setitem(sources.EXPECTED_COUNTS, "cifar10", (15, 3))
    if as_archive:
        with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
        import shutil

        shutil.rmtree(folder)
        monkeypatch.setattr(D.CIFAR10, "tgz_md5", md5(mirror / "cifar-10-python.tar.gz"))
    tx, ty, vx, vy = sources.fetch("cifar10", tmp_path / "raw", mirror=mirror, download=False)
    assert tx.shape == (15, 3, 32, 32) and vx.shape == (3, 3, 32, 32)
    assert tx[0, 2, 0, 5] == first[0, 2 * 1024 + 5]  # channel-major rows of 3072 -> C x H x W
    assert ty.tolist()[:3] == [1, 2, 3]


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_mirror(tmp_path):
    tx, ty, vx, vy = sources.fetch("fashion_mnist", tmp_path / "raw", mirror=FMNIST, download=False)
    assert tx.shape == (60000, 1, 28, 28) and vx.shape == (10000, 1, 28, 28)
    assert np.bincount(ty).tolist() == [6000] * 10 and np.bincount(vy).tolist() == [1000] * 10


OFFLINE_PARAMS = """profile: offline
seeds: [0]
data: {dir: data, raw_dir: data/raw, mirror: null, download: true}
datasets: {mnist: {source: mnist}, svhn: {source: svhn}, cifar10: {source: cifar10}}
experiments:
  mnist: {model: lenet, epochs: 1, batch_size: 50, lr: 1.0e-4, augment: none, methods: [raw],
          attack: {eps: 0.3, step: 0.01, steps: 40, random_start: true}}
methods: {raw: {objective: raw}}
training: {device: cpu, amp: false, channels_last: false, checkpoint_every: 0, probe_size: 10}
evaluation: {attacks: [fgsm], batch_size: 100, n_samples: 10}
analysis: {samples: 10, cam_samples: 2, batch_size: 10}
"""
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",  # a closed port:
              "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",  # fails at once
              "no_proxy": "", "NO_PROXY": "", "AALP_DATA_MIRROR": ""}


@pytest.mark.parametrize("source", ["mnist", "svhn", "cifar10"])
def test_failed_download_is_one_line_naming_the_files(tmp_path, source, monkeypatch, capfd):
    """Offline `prepare`: no torchvision traceback or retry chatter, one line with every expected file,
    its md5 and both ways to provide it; -v keeps the traceback. The command line's own entry point, in
    this process (file descriptors captured: what a shell would see)."""
    from aalp import cli

    (tmp_path / "params.yaml").write_text(OFFLINE_PARAMS)
    monkeypatch.chdir(tmp_path)
    for k, v in NO_NETWORK.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["prepare", "--dataset", source]) == 1
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Failed to download" not in out + err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and out == "", (out, err)
    line = errors[0]
    assert "download failed" in line and "data.mirror" in line and "AALP_DATA_MIRROR" in line
    for name, md5sum in sources.expected_files(source):
        assert f"{name} (md5 {md5sum})" in line
    assert len(sources.expected_files(source)) == {"mnist": 4, "svhn": 2, "cifar10": 1}[source]

    with pytest.raises((RuntimeError, OSError, ValueError)):  # -v: the exception itself, for its traceback
        cli.main(["-v", "prepare", "--dataset", source])


def test_archive_members_outside_the_folder_are_refused(tmp_path, monkeypatch):
    """Without tarfile's extraction filter (Python < 3.11.4, Debian 12's 3.11.2) the hand-made check refuses
    a member that would land outside the folder, and extracts a normal archive."""
    import io
    import tarfile

    from aalp.core import sources

    def archive(name):
        p = tmp_path / f"{name.replace('/', '_')}.tar.gz"
        with tarfile.open(p, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
        return p

    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    with tarfile.open(archive("../evil.txt")) as tar, pytest.raises(sources.DataError, match="refusing to extract"):
        sources._safe_extract(tar, str(out))
    assert not (tmp_path / "evil.txt").exists()
    with tarfile.open(archive("batches/data_1")) as tar:
        sources._safe_extract(tar, str(out))
    assert (out / "batches" / "data_1").read_bytes() == b"ok"


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_n_train_keeps_the_first_training_images_of_a_real_source(tmp_path, monkeypatch):
    """datasets.<name>.n_train on a downloaded source: the prepared copy holds the first n_train training
    images (all the test images), and the manifest says so; other synthetic-only keys stay refused."""
    import yaml

    from aalp import config as C
    from aalp.core import data

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AALP_DATA_MIRROR", raising=False)
    p = yaml.safe_load(OFFLINE_PARAMS.replace("mnist: {source: mnist}, svhn: {source: svhn}, cifar10: {source: cifar10}",
                                              "mnist: {source: fashion_mnist, n_train: 1200}"))
    p["data"].update(mirror=str(FMNIST), download=False)
    cfg = C.validate(p)
    man = data.prepare(cfg, "mnist")
    full_x, full_y, _, _ = sources.fetch("fashion_mnist", tmp_path / "raw2", mirror=FMNIST, download=False)
    got = data.load_prepared("data", "mnist")
    assert man["counts"] == {"train": 1200, "test": 10000} and man["train_subset"] == "first 1200 of 60000"
    assert np.array_equal(got.train_x, full_x[:1200]) and np.array_equal(got.train_y, full_y[:1200])
    p["datasets"]["mnist"]["seed"] = 3
    with pytest.raises(C.ConfigError, match="datasets.mnist.seed only applies to synthetic datasets"):
        C.validate(p)
