"""L-infinity attacks: FGSM, PGD on cross-entropy, CW-k (PGD on the margin loss), TRADES' KL attack,
and AutoAttack through torchattacks.

The model is always attacked in eval mode and without a Guided Dropout mask; only the input gets
gradients (torch.autograd.grad on the input, never on the weights). Definitions:
docs/method.md#evaluation-attacks and docs/method.md#training-attack.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def cw_margin(logits: torch.Tensor, y: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample Carlini-Wagner objective to maximise: -relu(f_y - max_{j != y} f_j + kappa)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -F.relu(true - other + kappa)


def _objective(kind: str, logits: torch.Tensor, y: torch.Tensor, kappa: float, clean_probs: torch.Tensor | None):
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="sum")
    if kind == "cw":
        return cw_margin(logits, y, kappa).sum()
    if kind == "kl":  # TRADES: KL(p_clean || p_adv), clean probabilities fixed
        return F.kl_div(F.log_softmax(logits, 1), clean_probs, reduction="sum")
    raise ValueError(f"unknown attack loss {kind!r}")


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@contextlib.contextmanager
def input_grad_only(model: torch.nn.Module, train_mode: bool = False):
    """Eval mode (or train mode, if asked) with the weights frozen, so autograd records and computes
    nothing for them."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    was = model.training
    try:
        with eval_mode(model):
            model.train(train_mode)
            yield
    finally:
        model.train(was)
        for p in params:
            p.requires_grad_(True)


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


# Cast the weights to bf16 once per attack instead of once per iteration (docs/method.md#speed-options); off
# gives the per-iteration casts, bit-identical (tests/core/test_attacks.py).
PRECAST_BF16 = True
_AUTOCAST_WEIGHTS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


@contextlib.contextmanager
def bf16_weights(model, amp: bool):
    """Inside: every convolution and linear layer of the model holds a bf16 copy of its float32 weight and
    bias (made once), with amp and PRECAST_BF16; otherwise nothing changes. Under bf16 autocast these
    layers cast their weights to bf16 on every call; autocast caches a cast only for weights that require
    grad, and the attack freezes them, so each attack iteration re-cast every weight. The copies are the
    same bf16 values going to the same kernels (autocast leaves a tensor already in bf16 as it is), so the
    attack is bit-identical (tests/core/test_attacks.py). The float32 parameters are put back on exit."""
    swapped = []
    if amp and PRECAST_BF16 and isinstance(model, torch.nn.Module) and not any(
            getattr(m, "_compiled_call_impl", None) is not None for m in model.modules()):
        for m in model.modules():  # each module once, also one registered under two names (cam_layer)
            if isinstance(m, _AUTOCAST_WEIGHTS):
                for name, p in list(m._parameters.items()):
                    if p is not None and p.dtype == torch.float32:
                        swapped.append((m, name, p))
                        m._parameters[name] = p.detach().to(torch.bfloat16)
    try:
        yield
    finally:
        for m, name, p in swapped:
            m._parameters[name] = p


def draw(sample, x: torch.Tensor, generator) -> torch.Tensor:
    """sample(shape) (torch.rand or torch.randn) of x's shape from `generator`; from a list of S generators, a group's
    seed-major batch (seed s's B samples in block s), each block drawn from its own seed's generator: what that
    seed draws when it runs alone (docs/method.md#seed-groups)."""
    if generator is None or isinstance(generator, torch.Generator):
        return sample(x.shape, generator=generator, device=x.device)
    blocks = x.shape[0] // len(generator)
    return torch.cat([sample((blocks, *x.shape[1:]), generator=g, device=x.device) for g in generator])


def pgd(model, x, y, *, eps: float, step: float, steps: int, random_start: bool = True, loss: str = "ce",
        kappa: float = 50.0, generator: torch.Generator | None = None, amp: bool = False,
        train_mode: bool = False) -> torch.Tensor:
    """Projected gradient ascent in the L-inf ball of radius eps around x, kept in [0, 1].

    x: (B, C, H, W) images in [0, 1]; y: (B,) labels; eps, step: in [0, 1] pixel units. Returns the
    last iterate after `steps` steps, (B, C, H, W), detached.
    loss: 'ce' (Madry), 'cw' (margin, kappa) or 'kl' (TRADES; start 0.001 * N(0, 1) as in Zhang et al.).
    generator: one generator, or one per seed of a group's seed-major batch (see `draw`); the objective is a sum
    or mean over the samples, whose gradient has each sample's sign whatever the batch holds.
    train_mode: craft in train mode (batch-norm batch statistics) instead of eval mode.
    """
    return pgd_prefixes(model, x, y, eps=eps, step=step, checkpoints=(steps,), random_start=random_start, loss=loss,
                        kappa=kappa, generator=generator, amp=amp, train_mode=train_mode)[steps]


def pgd_prefixes(model, x, y, *, eps: float, step: float, checkpoints: Iterable[int], random_start: bool = True,
                 loss: str = "ce", kappa: float = 50.0, generator: torch.Generator | None = None, amp: bool = False,
                 train_mode: bool = False) -> dict[int, torch.Tensor]:
    """One PGD trajectory of max(checkpoints) steps, returning the iterate after each requested number
    of steps: {k: (B, C, H, W) tensor, detached}. PGD keeps no best-so-far point, so the iterate after
    k steps is exactly what `pgd(..., steps=k)` returns from the same start (same generator state):
    PGD-10/20/40/100 cost 100 gradient steps instead of 170. Arguments as in `pgd`; k = 0 is the start.
    """
    want = sorted(set(checkpoints))
    if not want or want[0] < 0:
        raise ValueError(f"checkpoints must be non-negative step counts, got {want}")
    x = x.detach()
    out: dict[int, torch.Tensor] = {}
    with input_grad_only(model, train_mode), bf16_weights(model, amp):
        clean_probs = None
        if loss == "kl":
            with torch.no_grad(), autocast(x.device, amp):
                clean_probs = F.softmax(model(x).float(), 1)
            delta = 0.001 * draw(torch.randn, x, generator)
        elif random_start:
            delta = (draw(torch.rand, x, generator) * 2 - 1) * eps
        else:
            delta = torch.zeros_like(x)
        x_adv = (x + delta).clamp(0, 1)
        if want[0] == 0:
            out[0] = x_adv.detach()
        for i in range(1, want[-1] + 1):
            x_adv.requires_grad_(True)
            with autocast(x.device, amp):
                logits = model(x_adv)
            obj = _objective(loss, logits.float(), y, kappa, clean_probs)
            (grad,) = torch.autograd.grad(obj, x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0, 1)
            if i in want:
                out[i] = x_adv.detach()
    return out


def into_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """x_adv projected so that |x_adv - x| <= eps holds exactly for the stored float32 values, eps being the real
    number the params give (0.3, not its float32 rounding 0.30000001): the projection is done in float64, and a
    value that rounding back to float32 leaves outside moves one float32 step towards x. Points already inside are
    returned unchanged; [0, 1] is kept (x is in it). The attacks project in float32, which leaves points up to
    about one float32 step (~4e-8) outside (docs/method.md#evaluation-attacks)."""
    xd = x.double()
    inside = torch.minimum(torch.maximum(x_adv.double(), xd - eps), xd + eps).to(x_adv.dtype)
    return torch.where((inside.double() - xd).abs() > eps, torch.nextafter(inside, x), inside)


def fgsm(model, x, y, *, eps: float, amp: bool = False, **_) -> torch.Tensor:
    """One signed-gradient step of size eps from the clean point."""
    return pgd(model, x, y, eps=eps, step=eps, steps=1, random_start=False, amp=amp)


@dataclass(frozen=True)
class EvalAttack:
    """An evaluation attack by name: fgsm, pgd<k>, cw<k> or autoattack. step: a PGD-k's or CW-k's own step size
    (evaluation.step_rule), or None for the step `run` is given, the dataset attack's."""
    name: str
    kind: str
    steps: int
    step: float | None = None

    @classmethod
    def parse(cls, name: str, step: float | None = None) -> "EvalAttack":
        m = re.fullmatch(r"(fgsm|pgd|cw|autoattack)(\d*)", name)
        if not m or (m.group(1) in ("pgd", "cw")) != bool(m.group(2)):
            raise ValueError(f"unknown attack {name!r}; allowed: fgsm, pgd<k>, cw<k>, autoattack")
        return cls(name, m.group(1), int(m.group(2) or (1 if m.group(1) == "fgsm" else 0)),
                   step if m.group(1) in SHARED_KINDS else None)

    def run(self, model, x, y, *, eps: float, step: float, kappa: float = 50.0, generator=None, amp: bool = False,
            seed: int = 0, aa_steps: int = 100, aa_queries: int = 5000) -> torch.Tensor:
        if self.kind == "fgsm":
            return fgsm(model, x, y, eps=eps, amp=amp)
        if self.kind in ("pgd", "cw"):
            return pgd(model, x, y, eps=eps, step=step if self.step is None else self.step, steps=self.steps,
                       random_start=True, loss="ce" if self.kind == "pgd" else "cw", kappa=kappa, generator=generator,
                       amp=amp)
        return autoattack(model, x, y, eps=eps, seed=seed, steps=aa_steps, queries=aa_queries)


SHARED_KINDS = ("pgd", "cw")  # attack kinds whose members of different k share one trajectory where they share a step


def with_steps(names: Iterable[str], step_of, step: float) -> list[EvalAttack]:
    """The attacks `names`, each PGD-k and CW-k with its own step step_of(k) where that differs from `step` (the
    dataset attack's, which the others take): config.eval_step (docs/method.md#evaluation-step)."""
    out = [EvalAttack.parse(n) for n in names]
    return [EvalAttack(a.name, a.kind, a.steps, s) if a.kind in SHARED_KINDS and (s := step_of(a.steps)) != step
            else a for a in out]


def attack_groups(attacks: list[EvalAttack]) -> dict[str, list[EvalAttack]]:
    """The evaluation attacks as units of work, in order of first appearance: the PGD-k of one step form one
    group (one shared trajectory, `run_shared`), and so do the CW-k; the group at the dataset attack's step (no
    own step) is keyed 'pgd' or 'cw', one at its own step s 'pgd@<s>' or 'cw@<s>'. Every other attack is a
    group of its own, keyed by its name."""
    groups: dict[str, list[EvalAttack]] = {}
    for a in attacks:
        key = a.name if a.kind not in SHARED_KINDS else a.kind if a.step is None else f"{a.kind}@{a.step:g}"
        groups.setdefault(key, []).append(a)
    return groups


def run_shared(members: list[EvalAttack], model, x, y, *, eps: float, step: float, kappa: float = 50.0,
               generator=None, amp: bool = False) -> dict[str, torch.Tensor]:
    """PGD-k (or CW-k) for every member k from one random start and one trajectory of the largest k, at the
    members' common step (their own, or `step` where they have none): {name: (B, C, H, W) adversarial examples},
    each equal to the member's own `run` from the same generator state."""
    kinds, steps = {a.kind for a in members}, {a.step for a in members}
    if len(kinds) != 1 or not kinds <= set(SHARED_KINDS) or len(steps) != 1:
        raise ValueError(f"run_shared needs PGD-k or CW-k attacks of one kind and one step, got "
                         f"{[(a.name, a.step) for a in members]}")
    own = steps.pop()
    adv = pgd_prefixes(model, x, y, eps=eps, step=step if own is None else own, checkpoints=[a.steps for a in members],
                       random_start=True, loss="ce" if kinds == {"pgd"} else "cw", kappa=kappa, generator=generator,
                       amp=amp)
    return {a.name: adv[a.steps] for a in members}


AUTOATTACK_COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")


def autoattack(model, x, y, *, eps: float, seed: int = 0, steps: int = 100, queries: int = 5000,
               return_by: bool = False):
    """AutoAttack's standard version, L-inf: APGD-CE, APGD-T (9 target classes), FAB-T (9 targets) and
    Square, each sample attacked by the next component only while it is still classified correctly.

    Built from torchattacks' components rather than its AutoAttack class, which runs APGD, APGD-T and
    FAB with 10 iterations instead of the reference's 100; `steps` and `queries` default to the reference.
    The components run in sequence as in torchattacks' MultiAttack (the first on every sample, each
    later one on the samples still classified correctly); a sample no component flips keeps its clean
    input.

    Returns the adversarial inputs; with return_by=True also, per sample, the name of the component
    (AUTOATTACK_COMPONENTS) whose output first flipped it, 'clean' for a sample already misclassified
    on its clean input, and '' for a sample that stays correct (robust). The record is the attack's own
    float32 forward pass.
    """
    import torchattacks as ta

    x, y = x.detach(), y.detach()
    with eval_mode(model):
        common = dict(norm="Linf", eps=eps, seed=seed)
        components = [
            ta.APGD(model, steps=steps, n_restarts=1, loss="ce", **common),
            ta.APGDT(model, steps=steps, n_restarts=1, n_classes=10, **common),
            ta.FAB(model, steps=steps, n_restarts=1, multi_targeted=True, n_classes=10, **common),
            ta.Square(model, n_queries=queries, n_restarts=1, **common),
        ]
        with torch.no_grad():
            clean_wrong = model(x).argmax(1) != y
        by = ["clean" if w else "" for w in clean_wrong.tolist()]
        x_adv = x.clone()
        todo = torch.arange(len(x), device=x.device)  # the samples the next component attacks
        for name, atk in zip(AUTOATTACK_COMPONENTS, components):
            adv = atk(x[todo], y[todo]).detach()
            with torch.no_grad():
                flipped = model(adv).argmax(1) != y[todo]
            x_adv[todo[flipped]] = adv[flipped]
            for i in todo[flipped].tolist():
                by[i] = by[i] or name
            todo = todo[~flipped]
            if not len(todo):
                break
    return (x_adv, by) if return_by else x_adv
