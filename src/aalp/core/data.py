"""Prepared datasets: one on-disk format for every dataset, the synthetic generator, and loading.

A prepared dataset is a folder `<data.dir>/<name>/` with
  train_images.npy, test_images.npy   uint8, N x C x H x W
  train_labels.npy, test_labels.npy   int64, N
  manifest.json                       counts, shapes, sha256 of each array file, per-channel mean/std
The manifest is written last, so a folder without one is an unfinished preparation.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import config as C
from ..artifacts import atomic_path, provenance, read_json, write_json

log = logging.getLogger(__name__)
ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
NUM_CLASSES = 10


class DataError(RuntimeError):
    """A missing, corrupt or mismatched dataset file."""


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def prepared_files(data_dir: str | Path, name: str) -> list[Path]:
    d = Path(data_dir) / name
    return [d / f"{a}.npy" for a in ARRAYS] + [d / "manifest.json"]


def write_prepared(out: Path, name: str, source: str, train_x, train_y, test_x, test_y, **meta) -> dict:
    """Write the four arrays atomically, then the manifest."""
    arrays = dict(train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y)
    for key in ("train", "test"):
        x, y = arrays[f"{key}_images"], arrays[f"{key}_labels"]
        if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y):
            raise DataError(f"{name}: {key} images must be uint8 N x C x H x W with one label each")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise DataError(f"{name}: {key} labels outside 0..{NUM_CLASSES - 1}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # an old manifest must not vouch for new arrays
    hashes = {}
    for key, arr in arrays.items():
        arr = np.ascontiguousarray(arr if key.endswith("images") else arr.astype(np.int64))
        with atomic_path(out / f"{key}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
        hashes[key] = sha256(out / f"{key}.npy")
    x = train_x.astype(np.float64) / 255.0
    manifest = {
        "name": name, "source": source, "num_classes": NUM_CLASSES,
        "shape": list(train_x.shape[1:]),
        "counts": {"train": int(len(train_x)), "test": int(len(test_x))},
        "class_counts": {"train": np.bincount(train_y, minlength=NUM_CLASSES).tolist(),
                         "test": np.bincount(test_y, minlength=NUM_CLASSES).tolist()},
        "mean": x.mean(axis=(0, 2, 3)).tolist(), "std": x.std(axis=(0, 2, 3)).tolist(),
        "sha256": hashes, **meta, "provenance": provenance(),
    }
    write_json(out / "manifest.json", manifest)
    return manifest


@dataclass
class Prepared:
    name: str
    manifest: dict
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["shape"])


def load_prepared(data_dir: str | Path, name: str, verify: bool = True) -> Prepared:
    d = Path(data_dir) / name
    mf = d / "manifest.json"
    if not mf.exists():
        raise DataError(f"{mf}: missing; prepare the dataset first (python -m aalp prepare --dataset {name})")
    manifest = read_json(mf)
    arrays = {}
    for key in ARRAYS:
        p = d / f"{key}.npy"
        if not p.exists():
            raise DataError(f"{p}: missing although {mf} lists it; prepare the dataset again")
        if verify and sha256(p) != manifest["sha256"][key]:
            raise DataError(f"{p}: sha256 does not match {mf} (corrupt or replaced); prepare the dataset again")
        arrays[key] = np.load(p, mmap_mode=None)
    for split in ("train", "test"):
        x, n = arrays[f"{split}_images"], manifest["counts"][split]
        if x.shape != (n, *manifest["shape"]):
            raise DataError(f"{d}/{split}_images.npy: shape {x.shape} but the manifest says {(n, *manifest['shape'])}")
    return Prepared(name, manifest, arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"])


# --------------------------------------------------------------------------- synthetic data
def _blob(h: int, w: int, cy: float, cx: float, sy: float, sx: float, theta: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


# Generator knobs a dataset entry may set (params.yaml `datasets.<name>.<knob>`), with their defaults.
SYNTHETIC_DEFAULTS = {"noise": 0.06, "distractor": 0.2, "shift": 2}


def make_synthetic(shape, n_train: int, n_test: int, seed: int, noise: float = SYNTHETIC_DEFAULTS["noise"],
                   distractor: float = SYNTHETIC_DEFAULTS["distractor"], shift: int = SYNTHETIC_DEFAULTS["shift"]):
    """A deterministic 10-class image dataset: each class is a fixed arrangement of elongated blobs
    (coloured in RGB), seen with random shifts, contrast, background, a faint blob pattern of another
    class as a distractor and pixel noise. Nearest class mean on raw pixels does not solve it.

    The class pattern has amplitude 0.7..1, the distractor distractor/3..distractor, pixel noise has
    standard deviation `noise` and both patterns shift by up to `shift` pixels. With the defaults the
    class pattern is at least 0.5 brighter than the distractor, far more than an L-inf perturbation of
    the CI radius (0.07) can change, so adversarial training learns it robustly while a normally
    trained network stays fragile. Larger `distractor`, `noise` or `shift` make it harder."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    protos = np.zeros((NUM_CLASSES, c, h, w))
    for k in range(NUM_CLASSES):
        for _ in range(3):
            blob = _blob(h, w, rng.uniform(7, h - 7), rng.uniform(7, w - 7), rng.uniform(1.2, 2.2),
                         rng.uniform(3.0, 6.0), rng.uniform(0, np.pi))
            colour = rng.uniform(0.6, 1.0, size=c) if c > 1 else np.ones(1)
            protos[k] += colour[:, None, None] * blob[None]
        protos[k] /= protos[k].max()

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % NUM_CLASSES)
        other = (y + rng.integers(1, NUM_CLASSES, size=n)) % NUM_CLASSES
        x = np.empty((n, c, h, w))
        shifts = rng.integers(-shift, shift + 1, size=(n, 4))
        for i in range(n):
            main = np.roll(protos[y[i]], tuple(shifts[i, :2]), axis=(1, 2))
            distract = np.roll(protos[other[i]], tuple(shifts[i, 2:]), axis=(1, 2))
            x[i] = rng.uniform(0.7, 1.0) * main + rng.uniform(distractor / 3, distractor) * distract
        x += rng.uniform(0, 0.25, size=(n, c, 1, 1)) + noise * rng.standard_normal(x.shape)
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8), y.astype(np.int64)

    train_x, train_y = sample(n_train)
    test_x, test_y = sample(n_test)
    return train_x, train_y, test_x, test_y


def mirror_dir(cfg: dict) -> Path | None:
    """The folder of original files for offline machines: AALP_DATA_MIRROR, else data.mirror (None: none)."""
    m = os.environ.get("AALP_DATA_MIRROR") or cfg["data"]["mirror"]
    return Path(m) if m else None


def prepare(cfg: dict, name: str) -> dict:
    """Produce the prepared copy of dataset `name` under data.dir; returns its manifest."""
    ds = cfg["datasets"][name]
    out = Path(cfg["data"]["dir"]) / name
    if ds["source"] == "synthetic":
        knobs = {k: ds.get(k, v) for k, v in SYNTHETIC_DEFAULTS.items()}
        arrays = make_synthetic(tuple(ds["shape"]), ds["n_train"], ds["n_test"], ds["seed"], **knobs)
        meta = {"synthetic": {k: ds[k] for k in ("shape", "n_train", "n_test", "seed")} | knobs}
    else:
        from . import sources

        mirror = mirror_dir(cfg)
        log.info("fetching %s (mirror: %s, download allowed: %s)", ds["source"], mirror, cfg["data"]["download"])
        try:
            arrays = sources.fetch(ds["source"], Path(cfg["data"]["raw_dir"]) / ds["source"], mirror=mirror,
                                   download=cfg["data"]["download"])
        except sources.DataError as e:
            raise DataError(str(e)) from None
        meta = {"mirror": str(mirror) if mirror else None}
        if ds.get("n_train") is not None and ds["n_train"] < len(arrays[0]):  # a reduced run: the first n_train
            meta["train_subset"] = f"first {ds['n_train']} of {len(arrays[0])}"
            arrays = (arrays[0][:ds["n_train"]], arrays[1][:ds["n_train"]], *arrays[2:])
    manifest = write_prepared(out, name, ds["source"], *arrays, **meta)
    log.info("prepared %s: %d train / %d test images of shape %s -> %s", name, manifest["counts"]["train"],
             manifest["counts"]["test"], manifest["shape"], out)
    return manifest


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]."""
    return x_uint8.float().div_(255.0)
