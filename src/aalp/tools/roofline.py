"""`python -m aalp bench roofline`: how close the training steps and the evaluation attacks come to the
device's measured peak, on the paper's LeNet shape (1x28x28, batch 50, eps 0.3, step 0.01).

- Peak: a 2048x2048 matmul in float32 and in bf16 at the current torch threads (a smaller square when
  that one would take more than a few seconds, e.g. bf16 on a CPU without native bf16; the row says
  which size).
- Rows: the training step of every method objective (raw, adv, alp, trades and aalp = alp + Guided
  Dropout + adaptive weight; the training attack PGD-k, k = --steps) and one iteration of every
  evaluation attack (FGSM, one PGD step, one CW step), on each path: `fp32` (plain), `fp32_fast`
  (channels_last + fused Adam) and `bf16_fast` (bf16 autocast + channels_last + fused Adam).
- Each row: images/s; FLOPs per image counted with torch.utils.flop_counter.FlopCounterMode over one
  step (matmuls and convolutions, forward and backward); achieved GFLOP/s = FLOPs per image x images/s;
  its % of the peak of the path's arithmetic (fp32 paths: the fp32 peak, bf16: the bf16 peak); and a
  minimal hand-written loop doing the same work with plain PyTorch on the same model, timed in the same
  run, interleaved step by step with ours (so load on the machine hits both alike): ours/minimal is the
  ratio of their images/s.
- `--before` adds every row once more with the CPU kernels of docs/speed.md#cpu-kernels switched off
  (PyTorch's own one-channel convolution input gradient, nn.Flatten, per-iteration bf16 weight casts).

Random tensors of the right shape are enough: speed does not depend on the data.
"""
from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F

from .. import config as C
from ..core import attacks as A, models
from ..core.training import Trainer
from .benchmark import bench_spec, random_batch
from .peak import bf16_native, count_flops, interleaved, matmul_peak, sig as _sig

log = logging.getLogger(__name__)
PAPER = {"model": "lenet", "shape": (1, 28, 28), "batch": 50, "eps": 0.3, "step": 0.01}
METHODS = {"raw": {"objective": "raw"}, "adv": {"objective": "adv"}, "alp": {"objective": "alp"},
           "trades": {"objective": "trades"},
           "aalp": {"objective": "alp", "guided_dropout": True, "adaptive_weight": True}}
ATTACKS = ("fgsm", "pgd_step", "cw_step")
PATHS = {"fp32": {}, "fp32_fast": {"channels_last": True, "fused_adam": True},
         "bf16_fast": {"amp": True, "channels_last": True, "fused_adam": True}}


def run_spec(shape: dict, method: str, steps: int) -> C.RunSpec:
    """A run of this shape and method (METHODS) with the schema's defaults for everything the method leaves open."""
    return bench_spec(shape, method, steps, METHODS)


def _model(shape: dict, device, memory_format=torch.contiguous_format) -> models.Classifier:
    torch.manual_seed(0)
    c = shape["shape"][0]
    return models.build(shape["model"], shape["shape"], [0.5] * c, [0.25] * c).to(device=device, memory_format=memory_format)


class Minimal:
    """The same training step written out with plain PyTorch: PGD-k with frozen weights, the method's batch,
    forward (Guided Dropout mask from the gradient of the mean CE w.r.t. h), loss, Adam."""

    def __init__(self, spec: C.RunSpec, model, device, amp=False, channels_last=False, fused_adam=False):
        self.s, self.model, self.device, self.amp = spec, model, device, amp
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.fmt)
        self.opt = torch.optim.Adam(model.parameters(), lr=spec.lr, fused=True if fused_adam else None)
        self.gen = torch.Generator(device=device).manual_seed(0)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def attack(self, x, y, loss):
        a, model = self.s.attack, self.model
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        if loss == "kl":
            with torch.no_grad(), self.autocast():
                p_clean = F.softmax(model(x).float(), 1)
            xa = (x + 0.001 * torch.randn(x.shape, generator=self.gen, device=x.device)).clamp(0, 1)
        else:
            xa = (x + (torch.rand(x.shape, generator=self.gen, device=x.device) * 2 - 1) * a.eps).clamp(0, 1)
        for _ in range(a.steps):
            xa.requires_grad_(True)
            with self.autocast():
                logits = model(xa).float()
            obj = (F.kl_div(F.log_softmax(logits, 1), p_clean, reduction="sum") if loss == "kl"
                   else F.cross_entropy(logits, y, reduction="sum"))
            (g,) = torch.autograd.grad(obj, xa)
            xa = torch.minimum(torch.maximum(xa.detach() + a.step * g.sign(), x - a.eps), x + a.eps).clamp(0, 1)
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        return xa.detach()

    def step(self, x, y):
        s, model = self.s, self.model
        if s.objective == "raw":
            xb, n = x, len(x)
        elif s.objective == "adv":
            xb, n = self.attack(x, y, "ce"), 0
        else:
            xb, n = torch.cat([x, self.attack(x, y, "kl" if s.objective == "trades" else "ce")]), len(x)
        xb = xb.contiguous(memory_format=self.fmt)
        with self.autocast():
            h = model.features(xb)
            if s.guided_dropout:
                cls = F.cross_entropy(model.classifier(h).float(), y.repeat(len(xb) // len(y)))
                (g,) = torch.autograd.grad(cls, h, retain_graph=True)
                c = (h.detach().float() * g.float()).abs().mean(0)
                h = h * (c > c.median()).to(h.dtype)
            logits = model.classifier(h).float()
        if s.objective in ("raw", "adv"):
            loss = F.cross_entropy(logits, y)
        else:
            lc, la = logits[:n], logits[n:]
            w = F.softmax(lc.detach(), 1).gather(1, y[:, None]).squeeze(1) if s.adaptive_weight else 1.0
            if s.objective == "alp":
                loss = 0.5 * (F.cross_entropy(lc, y) + F.cross_entropy(la, y)) + s.lam * (w * (lc - la).pow(2).mean(1)).mean()
            else:
                kl = (F.softmax(lc, 1) * (F.log_softmax(lc, 1) - F.log_softmax(la, 1))).sum(1)
                loss = F.cross_entropy(lc, y) + s.beta * (w * kl).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


def _attack_fns(kind: str, model, x, y, shape: dict, amp: bool, device):
    """(ours, minimal): one iteration of evaluation attack `kind` on an eval-mode model with frozen weights."""
    eps, step = shape["eps"], shape["step"]
    gen = torch.Generator(device=device).manual_seed(0)
    if kind == "fgsm":
        ours = lambda: A.fgsm(model, x, y, eps=eps, amp=amp)  # noqa: E731
    else:
        loss = "ce" if kind == "pgd_step" else "cw"
        ours = lambda: A.pgd(model, x, y, eps=eps, step=step, steps=1, loss=loss, generator=gen, amp=amp)  # noqa: E731

    def minimal():
        if kind == "fgsm":
            x0, a = x.clone(), eps
        else:
            x0, a = (x + (torch.rand(x.shape, generator=gen, device=device) * 2 - 1) * eps).clamp(0, 1), step
        x0.requires_grad_(True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x0).float()
        obj = A.cw_margin(logits, y).sum() if kind == "cw_step" else F.cross_entropy(logits, y, reduction="sum")
        (g,) = torch.autograd.grad(obj, x0)
        return torch.minimum(torch.maximum(x0.detach() + a * g.sign(), x - eps), x + eps).clamp(0, 1)

    return ours, minimal


def _with_kernels(fn, enabled: bool):
    def call():
        with kernels(enabled):
            return fn()
    return call


@contextlib.contextmanager
def kernels(enabled: bool):
    """The CPU kernels of docs/speed.md#cpu-kernels on (the default) or off (PyTorch's own)."""
    old = (models.FOLD_INPUT_GRAD, models.KEEP_CHANNELS_LAST, A.PRECAST_BF16)
    models.FOLD_INPUT_GRAD = models.KEEP_CHANNELS_LAST = A.PRECAST_BF16 = enabled
    try:
        yield
    finally:
        models.FOLD_INPUT_GRAD, models.KEEP_CHANNELS_LAST, A.PRECAST_BF16 = old


def _row(kind, name, path, batch, flops, t_ours, t_min, peak, before):
    ips = batch / t_ours
    fpi = flops / batch
    gf = fpi * ips / 1e9
    return {"kind": kind, "name": name, "path": path + (" (before)" if before else ""),
            "images_per_s": _sig(ips), "mflop_per_image": _sig(fpi / 1e6, 6), "gflop_per_s": _sig(gf),
            "peak_gflop_per_s": peak, "pct_of_peak": _sig(100 * gf / peak, 3),
            "minimal_images_per_s": _sig(batch / t_min), "ours_vs_minimal": _sig(t_min / t_ours, 3)}


def _timed_rows(kind, name, cases: dict, states, device, reps, batch, peaks, extra) -> list[dict]:
    """cases: {path: (ours, minimal)}; every (path, kernels state, ours or minimal) timed in one interleaved
    loop, FLOPs counted on one call of ours per path and state."""
    fns, flops = {}, {}
    for path, (ours, minimal) in cases.items():
        for on in states:
            fns[(path, on, "ours")] = _with_kernels(ours, on)
            fns[(path, on, "minimal")] = _with_kernels(minimal, on)
            flops[(path, on)] = count_flops(fns[(path, on, "ours")])
    t = interleaved(fns, device, reps)
    rows = []
    for on in states:
        for path in cases:
            peak = peaks["bfloat16" if PATHS[path].get("amp") else "float32"]["gflop_per_s"]
            rows.append(_row(kind, name, path, batch, flops[(path, on)], t[(path, on, "ours")], t[(path, on, "minimal")],
                             peak, before=not on) | extra)
            log.info("%s", rows[-1])
    return rows


def train_rows(device, shape: dict, methods, paths, steps: int, reps: int, peaks: dict, before=False) -> list[dict]:
    """One row per method, path (and kernels state, with before): our Trainer's step and the minimal loop's."""
    rows = []
    x, y = random_batch(shape, device)
    states = [True, False] if before else [True]
    for m in methods:
        spec = run_spec(shape, m, steps)
        cases = {}
        for path in paths:
            tr = Trainer(spec, _model(shape, device), device, **PATHS[path])
            mini = Minimal(spec, _model(shape, device), device, **PATHS[path])
            cases[path] = (lambda tr=tr: tr.step(x, y), lambda mini=mini: mini.step(x, y))
        rows += _timed_rows("train", m, cases, states, device, reps, len(x), peaks, {"attack_steps": steps})
    return rows


def attack_rows(device, shape: dict, attacks, paths, reps: int, peaks: dict, before=False) -> list[dict]:
    """One row per evaluation attack, path (and kernels state): one iteration, ours and the minimal one's."""
    rows = []
    x, y = random_batch(shape, device)
    states = [True, False] if before else [True]
    models_ = {}
    for path in paths:
        fmt = torch.channels_last if PATHS[path].get("channels_last") else torch.contiguous_format
        models_[path] = (_model(shape, device, fmt).eval().requires_grad_(False), x.contiguous(memory_format=fmt))
    for kind in attacks:
        cases = {path: _attack_fns(kind, m, xf, y, shape, bool(PATHS[path].get("amp")), device)
                 for path, (m, xf) in models_.items()}
        rows += _timed_rows("attack", kind, cases, states, device, reps, len(x), peaks, {"attack_steps": 1})
    return rows


def roofline(device, methods=None, attacks=None, paths=None, steps: int = 10, reps: int = 3, before: bool = False,
             shape: dict | None = None, peak_n: int = 2048) -> dict:
    """Everything `bench roofline` prints: {device, threads, bf16_native, peaks, rows, notes}."""
    shape = shape or PAPER
    native = bf16_native(device)
    notes = []
    if paths is None:
        paths = [p for p in PATHS if native or not PATHS[p].get("amp")]
        if not native:
            notes.append("bf16_fast not timed: this device has no native bf16 arithmetic (its bf16 matmul peak is "
                         "below); name it in --paths to time it anyway")
    peaks = {str(d).replace("torch.", ""): matmul_peak(d, device, peak_n) for d in (torch.float32, torch.bfloat16)}
    rows = train_rows(device, shape, methods or list(METHODS), paths, steps, reps, peaks, before=before)
    rows += attack_rows(device, shape, attacks or list(ATTACKS), paths, reps, peaks, before=before)
    for d in (torch.float32, torch.bfloat16):  # once more after the rows: has the machine's load changed?
        k = str(d).replace("torch.", "")
        peaks[k]["gflop_per_s_at_end"] = matmul_peak(d, device, peaks[k]["n"])["gflop_per_s"]
    return {"device": str(device), "threads": torch.get_num_threads(), "bf16_native": native, "shape": dict(shape),
            "attack_steps": steps, "peaks": peaks, "rows": rows, "summary": summary(rows), "notes": notes}


def summary(rows: list[dict]) -> list[dict]:
    """Per row that is not the plain path: its images/s over the plain fp32 path's with the same kernels
    (before or after); with --before, each row's images/s after over before (what the kernels gain)."""
    by = {(r["kind"], r["name"], r["path"]): r for r in rows}
    out = []
    for r in rows:
        before = r["path"].endswith(" (before)")
        base = by.get((r["kind"], r["name"], "fp32 (before)" if before else "fp32"))
        item = {"kind": r["kind"], "name": r["name"], "path": r["path"],
                "speedup_vs_plain_fp32": round(r["images_per_s"] / base["images_per_s"], 2) if base else None}
        b = None if before else by.get((r["kind"], r["name"], r["path"] + " (before)"))
        item["speedup_vs_before"] = round(r["images_per_s"] / b["images_per_s"], 2) if b else None
        out.append(item)
    if all(i["speedup_vs_before"] is None for i in out):
        for i in out:
            del i["speedup_vs_before"]
    return out


def format_result(res: dict) -> str:
    from .benchmark import print_rows
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        pk = ", ".join(f"{k} {v['gflop_per_s']} GFLOP/s ({v['n']}x{v['n']}; {v['gflop_per_s_at_end']} after the rows)"
                       for k, v in res["peaks"].items())
        s = res["shape"]
        print(f"roofline on {res['device']}, {res['threads']} threads, native bf16: {'yes' if res['bf16_native'] else 'no'}; "
              f"matmul peak: {pk}")
        print(f"{s['model']} {'x'.join(map(str, s['shape']))}, batch {s['batch']}, eps {s['eps']}, step {s['step']}; "
              f"training attack PGD-{res['attack_steps']}; attacks: one iteration")
        print_rows(res["rows"])
        if res["summary"]:
            print()
            print_rows(res["summary"])
        for n in res["notes"]:
            print(f"note: {n}")
    return buf.getvalue().rstrip("\n")


def command(cfg: dict, args) -> None:
    """`python -m aalp bench roofline`: the rows on the set's device, printed and written to --out as JSON."""
    from ..core.training import select_device

    for name, given, allowed in (("method", args.methods, METHODS), ("attack", args.attacks, ATTACKS),
                                 ("path", args.paths, PATHS)):
        unknown = sorted(set(given or []) - set(allowed))
        if unknown:
            raise C.ConfigError(f"unknown {name}(s) {', '.join(unknown)}; allowed values: {', '.join(allowed)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(cfg["training"]["device"])
    res = roofline(device, methods=args.methods, attacks=args.attacks, paths=args.paths,
                   steps=args.steps or 10, reps=args.reps, before=args.before)
    res["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(format_result(res))
    if args.out:
        from ..artifacts import write_json

        write_json(args.out, res)
