import numpy as np
import pytest

from aalp.core import data


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_synthetic_is_deterministic_balanced_and_shaped(shape):
    a = data.make_synthetic(shape, 200, 50, seed=3)
    b = data.make_synthetic(shape, 200, 50, seed=3)
    c = data.make_synthetic(shape, 200, 50, seed=4)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    train_x, train_y, test_x, test_y = a
    assert train_x.shape == (200, *shape) and test_x.shape == (50, *shape) and train_x.dtype == np.uint8
    assert np.bincount(train_y, minlength=10).tolist() == [20] * 10
    assert np.bincount(test_y, minlength=10).tolist() == [5] * 10
    assert 20 < train_x.mean() < 200  # not blank, not saturated


def test_synthetic_is_not_trivial():
    """A nearest-class-mean classifier on raw pixels must not solve it."""
    train_x, train_y, test_x, test_y = data.make_synthetic((1, 28, 28), 2000, 500, seed=0)
    means = np.stack([train_x[train_y == k].reshape(-1, 784).mean(0) for k in range(10)])
    d = ((test_x.reshape(-1, 1, 784).astype(float) - means[None]) ** 2).sum(-1)
    acc = (d.argmin(1) == test_y).mean()
    assert 0.1 < acc < 0.95


def test_prepared_round_trip_and_manifest(tmp_path):
    arrays = data.make_synthetic((1, 28, 28), 100, 40, seed=0)
    m = data.write_prepared(tmp_path / "toy", "toy", "synthetic", *arrays)
    assert m["counts"] == {"train": 100, "test": 40} and m["shape"] == [1, 28, 28]
    assert len(m["mean"]) == 1 and 0 < m["std"][0] < 1
    p = data.load_prepared(tmp_path, "toy")
    assert np.array_equal(p.train_x, arrays[0]) and np.array_equal(p.test_y, arrays[3])
    assert p.shape == (1, 28, 28)


def test_corrupt_or_missing_prepared_files_are_named(tmp_path):
    arrays = data.make_synthetic((1, 28, 28), 100, 40, seed=0)
    data.write_prepared(tmp_path / "toy", "toy", "synthetic", *arrays)
    f = tmp_path / "toy" / "test_images.npy"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(data.DataError, match="test_images.npy: sha256 does not match"):
        data.load_prepared(tmp_path, "toy")
    f.unlink()
    with pytest.raises(data.DataError, match="test_images.npy: missing"):
        data.load_prepared(tmp_path, "toy")
    with pytest.raises(data.DataError, match="manifest.json: missing; prepare the dataset first"):
        data.load_prepared(tmp_path, "other")


def test_write_prepared_rejects_bad_arrays(tmp_path):
    x = np.zeros((4, 1, 28, 28), np.uint8)
    with pytest.raises(data.DataError, match="labels outside"):
        data.write_prepared(tmp_path / "bad", "bad", "synthetic", x, np.array([0, 1, 2, 10]), x, np.zeros(4, int))
    with pytest.raises(data.DataError, match="uint8"):
        data.write_prepared(tmp_path / "bad", "bad", "synthetic", x.astype(float), np.zeros(4, int), x, np.zeros(4, int))
