"""Which GPU a job takes on a machine with several (README: "Several GPUs in one machine").

Every job opens the first device it sees unless told otherwise, so `--resources gpu=4` on a four-GPU workstation
would stack four jobs on one GPU. A job that sees several devices therefore claims one: an exclusive lock
(fcntl.flock, released by the kernel when the process ends, however it ends) on a file named after the device's
UUID in a folder every job of the machine shares; the first free device is its. A job that sees one device
(`CUDA_VISIBLE_DEVICES` as SLURM or the user sets it, which is never overridden) takes it without a lock."""
from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)
LOCK_DIR = Path(os.environ.get("AALP_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "aalp-gpu-locks"))
_held: list = []  # the open lock files of this process: a claim lasts as long as the process


def claim(ids: list[str], lock_dir: Path | None = None, wait_s: float = 3600.0, poll_s: float = 2.0) -> int:
    """The index of the first of the devices `ids` (stable identifiers, e.g. UUIDs) that no other process holds,
    now held by this one. With every device held it waits (a log line, then polls), at most wait_s seconds, then
    takes the first device anyway (shared, with a warning) rather than failing the job."""
    if len(ids) <= 1:
        return 0
    lock_dir = Path(LOCK_DIR if lock_dir is None else lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, said = time.monotonic(), False
    while True:
        for i, dev in enumerate(ids):
            f = open(lock_dir / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in dev)}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            _held.append(f)
            return i
        if time.monotonic() - start >= wait_s:
            log.warning("all %d GPUs are held by other jobs after %.0f s; sharing the first", len(ids), wait_s)
            return 0
        if not said:
            log.info("all %d GPUs are held by other jobs (locks in %s); waiting for one", len(ids), lock_dir)
            said = True
        time.sleep(poll_s)


def cuda_ids() -> list[str]:
    """Stable identifiers of the CUDA devices this process sees, in its own index order."""
    import torch

    out = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        out.append(str(uuid) if uuid is not None else f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'all')}-{i}")
    return out
