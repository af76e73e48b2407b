"""How work is measured on a device: the matmul peak (float32 and bf16) at the current threads, FLOPs of
one call counted by torch.utils.flop_counter, and interleaved timing of several functions (their ratios hold
on a busy machine). Used by `bench roofline` (tools/roofline.py)."""
from __future__ import annotations

import statistics
import time

import torch

from .benchmark import _sync


def sig(v: float, digits: int = 4) -> float:
    return float(f"{v:.{digits}g}")


def bf16_native(device: torch.device) -> bool:
    """Whether the device has bf16 arithmetic of its own (on a CPU: oneDNN's bf16 kernels, AVX512-BF16/AMX);
    without it PyTorch's bf16 matmuls and convolutions fall back to slow reference loops."""
    try:
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - an older build without the query
        return False


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, budget_s: float = 3.0, reps: int = 3) -> dict:
    """GFLOP/s of an n x n matmul (the best of `reps`); n shrinks (powers of 2, at least 128) while one
    matmul would take more than budget_s / reps."""
    def once(m: int) -> float:
        a = torch.randn(m, m, device=device).to(dtype)
        b = torch.randn(m, m, device=device).to(dtype)
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        return time.perf_counter() - t

    once(128)
    probe = once(128)
    while n > 128 and probe * (n / 128) ** 3 > budget_s / reps:
        n //= 2
    once(n)
    best = min(once(n) for _ in range(reps))
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "gflop_per_s": sig(2 * n ** 3 / best / 1e9)}


# ----------------------------------------------------------------------------- our step and a minimal one


class _Global:
    """FlopCounterMode's module tracker, reduced to the total: its backward hooks break torch.autograd.grad
    with respect to an input (what every attack iteration calls)."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def count_flops(fn) -> int:
    """FLOPs of one call of fn: torch.utils.flop_counter.FlopCounterMode's count of the matmuls and
    convolutions it runs, forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _Global()
    with fc:
        fn()
    return int(fc.get_total_flops())


def interleaved(fns: dict, device, reps: int, warmup: int = 1) -> dict:
    """Median seconds per call of each function of `fns` ({key: fn}), called in turn, round after round:
    a change of load on a busy machine hits every one of them alike, so their ratios hold."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
