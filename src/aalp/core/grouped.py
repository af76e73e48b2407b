"""S copies of one architecture (S seeds of a run, each with its own weights) as ONE module, so that every
kernel does S times the work: `stack(models)` -> `GroupedClassifier`.

Layout. Inside the body the S models run on (B, S*C, H, W), channel block s = seed s: a convolution becomes a
grouped convolution (groups * S), a batch norm one over S*C channels (its per-channel statistics, running ones
included, are per-seed statistics; no vmap), ReLU / pooling / Flatten act per channel and stay as they are, a
linear layer of the body becomes a `GroupedLinear` (S blocks of features) and the option-A shortcut of a
`BasicBlock` pads each seed's channel block. Outside, the group speaks SEED-MAJOR like a batch of S*B: x is
(S*B, C, H, W) with seed s's B images at rows [s*B, (s+1)*B), h = features(x) is (S*B, D), logits (S*B, K).

Slicing rule. Every parameter and buffer t (num_batches_tracked aside: one scalar, all seeds step together)
satisfies t.view(S, *single.shape)[s] == seed s's tensor (`seed_slice`), so an elementwise optimiser (Adam) over
the group is S independent ones, and its state slices the same way. The state_dict keys are the single
model's (`param_keys()` names each parameter), so `single_state_dict(s)` loads strictly into a `Classifier`.

Equal to the S single models up to float32 rounding (grouped kernels sum in another order; tests/core/
test_grouped.py). Callers: a loss over the group is the SUM over seeds of each seed's loss (a mean over all S*B
rows would scale each seed's gradient by 1/S), and anything computed over "the batch" (a median, a mixed-batch
split) is taken per seed block. `attacks.bf16_weights` precasts nn.Linear only: the grouped linear layers are
cast by autocast on every call (speed only).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import skip_init

from .models import BasicBlock, Classifier, Flatten, FoldGradConv2d, Residual


def seed_slice(t: torch.Tensor, s: int, single_shape: Sequence[int]) -> torch.Tensor:
    """Seed s's part of a grouped tensor t (parameter, buffer, gradient or optimiser state such as Adam's
    exp_avg) whose single-model counterpart has `single_shape`: a view of t."""
    n = math.prod(single_shape)
    if n == 0 or t.numel() % n:
        raise ValueError(f"a tensor of shape {tuple(t.shape)} is no stack of tensors of shape {tuple(single_shape)}")
    seeds = t.numel() // n
    if not 0 <= s < seeds:
        raise IndexError(f"seed {s} out of range for a group of {seeds}")
    return t.view(seeds, *single_shape)[s]


class GroupedLinear(nn.Module):
    """S linear layers (din -> dout) on the channel-block layout: (B, S*din) -> (B, S*dout), block s = seed s.
    weight (S*dout, din) and bias (S*dout,) are the S weights and biases concatenated (one batched matmul)."""

    def __init__(self, seeds: int, din: int, dout: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.seeds, self.in_features, self.out_features = seeds, din, dout
        self.weight = nn.Parameter(torch.empty(seeds * dout, din, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(seeds * dout, device=device, dtype=dtype)) if bias else None

    def _bmm(self, x: torch.Tensor) -> torch.Tensor:  # x (S, B, din) -> (S, B, dout); baddbmm/bmm follow autocast
        w = self.weight.view(self.seeds, self.out_features, self.in_features).transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, w)
        return torch.baddbmm(self.bias.view(self.seeds, 1, self.out_features), x, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = self._bmm(x.reshape(b, self.seeds, self.in_features).transpose(0, 1))
        return y.transpose(0, 1).reshape(b, self.seeds * self.out_features)

    def extra_repr(self) -> str:
        return f"seeds={self.seeds}, in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


class SeedMajorLinear(GroupedLinear):
    """The logits layer of a group: S linear layers on the SEED-MAJOR layout, (S*B, din) -> (S*B, dout), rows
    [s*B, (s+1)*B) through seed s's weights; same parameters as GroupedLinear."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[0] % self.seeds:
            raise ValueError(f"a batch of {h.shape[0]} rows does not split into {self.seeds} seeds")
        return self._bmm(h.reshape(self.seeds, -1, self.in_features)).reshape(-1, self.out_features)


class GroupedBasicBlock(BasicBlock):
    """BasicBlock for S seeds: same children (grouped) and forward; the option-A shortcut pads each seed's block."""

    def __init__(self, block: BasicBlock, seeds: int, children: dict[str, nn.Module]):
        nn.Module.__init__(self)  # the children come grouped, not built
        self.seeds, self.pad, self.stride = seeds, block.pad, block.stride
        for name, child in children.items():
            self.add_module(name, child)

    def pad_channels(self, short: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = short.shape  # (B, S*C, H, W) -> (B, S, C, H, W): dim -3 is each seed's channels
        return super().pad_channels(short.reshape(b, self.seeds, c // self.seeds, hh, ww)).reshape(b, -1, hh, ww)


# ----------------------------------------------------------------------------- building a group
_STATELESS = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, Flatten)
_CONTAINERS = (nn.Sequential, Residual)  # forward composes children only: the layout goes through
_CONVS = (nn.Conv2d, FoldGradConv2d)  # FoldGradConv2d's CPU input-gradient kernel: plain grouped conv here
_KNOWN = (*_STATELESS, *_CONTAINERS, *_CONVS, nn.BatchNorm2d, nn.Linear, BasicBlock)


def _same(mods: list[nn.Module], path: str):
    m0 = mods[0]
    for i, m in enumerate(mods[1:], 1):
        if type(m) is not type(m0) or m.extra_repr() != m0.extra_repr() or list(m._modules) != list(m0._modules) \
                or getattr(m, "stride", None) != getattr(m0, "stride", None) \
                or getattr(m, "pad", None) != getattr(m0, "pad", None):
            raise ValueError(f"model {i} differs from model 0 at {path or 'the top'}: {m!r} vs {m0!r}")


@torch.no_grad()
def _cat(mods: list[nn.Module], name: str) -> torch.Tensor | None:
    ts = [getattr(m, name) for m in mods]
    return None if ts[0] is None else torch.cat([t.detach().reshape(-1) for t in ts])


def _fill(target: nn.Module, mods: list[nn.Module]):
    with torch.no_grad():
        for name, t in [*target.named_parameters(recurse=False), *target.named_buffers(recurse=False)]:
            if name == "num_batches_tracked":
                counts = {int(getattr(m, name)) for m in mods}
                if len(counts) > 1:
                    raise ValueError(f"the models have taken different numbers of batch-norm steps: {sorted(counts)}")
                t.copy_(getattr(mods[0], name))
            else:
                t.view(-1).copy_(_cat(mods, name))


def _group(mods: list[nn.Module], memo: dict[int, nn.Module], path: str = "") -> nn.Module:
    """The grouped counterpart of modules `mods` (one per seed, same architecture); memo: id(mods[0]) -> it."""
    m0, s = mods[0], len(mods)
    if id(m0) in memo:  # a module registered twice (cam_layer): one grouped counterpart
        return memo[id(m0)]
    if type(m0) not in _KNOWN:
        raise ValueError(f"grouped: no grouped counterpart for module {type(m0).__name__} at {path or 'the top'}")
    _same(mods, path)
    w = next(iter([*m0.parameters(), *m0.buffers()]), None)
    kw = {} if w is None else {"device": w.device, "dtype": w.dtype}
    if type(m0) in _STATELESS:
        out = type(m0)(**{k: getattr(m0, k) for k in _ARGS[type(m0)]})
    elif type(m0) in _CONTAINERS or type(m0) is BasicBlock:
        kids = {n: _group([m._modules[n] for m in mods], memo, f"{path}.{n}".lstrip(".")) for n in m0._modules}
        if type(m0) is nn.Sequential:
            out = nn.Sequential()
            for n, k in kids.items():
                out.add_module(n, k)
        elif type(m0) is BasicBlock:
            out = GroupedBasicBlock(m0, s, kids)
        else:  # Residual: a shell of the same class holding the grouped children
            out = nn.Module.__new__(type(m0))
            nn.Module.__init__(out)
            for n, k in kids.items():
                out.add_module(n, k)
    elif type(m0) in _CONVS:
        out = skip_init(nn.Conv2d, s * m0.in_channels, s * m0.out_channels, m0.kernel_size, m0.stride, m0.padding,
                        m0.dilation, s * m0.groups, m0.bias is not None, m0.padding_mode, **kw)
    elif type(m0) is nn.BatchNorm2d:
        out = skip_init(nn.BatchNorm2d, s * m0.num_features, m0.eps, m0.momentum, m0.affine,
                        m0.track_running_stats, **kw)
    else:  # nn.Linear inside the body: on the channel-block layout
        out = GroupedLinear(s, m0.in_features, m0.out_features, m0.bias is not None, **kw)
    _fill(out, mods)
    memo[id(m0)] = out
    return out


_ARGS = {nn.ReLU: ("inplace",), nn.MaxPool2d: ("kernel_size", "stride", "padding", "dilation", "return_indices",
                                               "ceil_mode"),
         nn.AdaptiveMaxPool2d: ("output_size", "return_indices"), nn.AdaptiveAvgPool2d: ("output_size",),
         nn.Flatten: ("start_dim", "end_dim"), Flatten: ("start_dim", "end_dim")}


# ----------------------------------------------------------------------------- the group
class GroupedClassifier(nn.Module):
    """S Classifiers of one architecture as one module; inputs and outputs seed-major (see the module doc)."""

    def __init__(self, ms: list[Classifier]):
        super().__init__()
        memo: dict[int, nn.Module] = {}
        self.seeds = s = len(ms)
        self.register_buffer("mean", torch.cat([m.mean.reshape(-1) for m in ms]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.cat([m.std.reshape(-1) for m in ms]).view(1, -1, 1, 1))
        self.body = _group([m.body for m in ms], memo, "body")
        self.feature_dim = ms[0].feature_dim
        lin = ms[0].classifier
        self.classifier = SeedMajorLinear(s, lin.in_features, lin.out_features, lin.bias is not None,
                                          device=lin.weight.device, dtype=lin.weight.dtype)
        _fill(self.classifier, [m.classifier for m in ms])
        # The grouped counterpart of the single model's cam_layer (the same module as inside the body, so the
        # state_dict keys match the single model's). Its output is channel-block (B, S*C, H, W), not seed-major:
        # Grad-CAM is meant to run on single models (single_state_dict).
        cam = ms[0].cam_layer
        self.cam_layer = None if cam is None else memo[id(cam)]
        self.single_shapes = {k: v.shape for k, v in ms[0].state_dict().items()}
        self._last_conv = [m for m in self.body.modules() if isinstance(m, nn.Conv2d)][-1:]

    def _channel_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Seed-major (S*B, C, H, W) in [0, 1] -> normalised, channel-block (B, S*C, H, W), channels_last when
        the input is (or, for an ambiguous one channel input, when the convolutions are)."""
        s = self.seeds
        if x.dim() != 4 or x.shape[0] % s:
            raise ValueError(f"expected seed-major (S*B, C, H, W) inputs with S = {s}, got shape {tuple(x.shape)}")
        sb, c, hh, ww = x.shape
        x5 = (x.view(s, sb // s, c, hh, ww) - self.mean.view(s, 1, c, 1, 1)) / self.std.view(s, 1, c, 1, 1)
        cl = torch.channels_last
        if x.is_contiguous(memory_format=cl) and x.is_contiguous():  # ambiguous (e.g. C = 1): as the convolutions
            nhwc = bool(self._last_conv) and not self._last_conv[0].weight.is_contiguous()
        else:
            nhwc = x.is_contiguous(memory_format=cl)
        if nhwc:
            return x5.permute(1, 3, 4, 0, 2).reshape(sb // s, hh, ww, s * c).permute(0, 3, 1, 2)
        return x5.transpose(0, 1).reshape(sb // s, s * c, hh, ww)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(S*B, C, H, W) seed-major -> h (S*B, D) seed-major."""
        h = self.body(self._channel_blocks(x))  # (B, S*D)
        return h.reshape(h.shape[0], self.seeds, -1).transpose(0, 1).reshape(-1, h.shape[1] // self.seeds)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        return self.classifier(h if mask is None else h * mask)

    # ------------------------------------------------------------------------- per-seed views
    def param_keys(self) -> list[str]:
        """The single model's state_dict key of each parameter, in `parameters()` order."""
        return [k for k, _ in self.named_parameters()]

    def single_state_dict(self, s: int) -> dict[str, torch.Tensor]:
        """Seed s's state_dict: the single model's keys and shapes (loads strictly into a Classifier). Copies,
        not views: torch.save of a view would write the whole group's storage."""
        return {k: (t.detach().clone() if k.endswith("num_batches_tracked")
                    else seed_slice(t.detach(), s, self.single_shapes[k]).clone())
                for k, t in self.state_dict().items()}

    @torch.no_grad()
    def load_single_state_dict(self, s: int, sd: dict[str, torch.Tensor]):
        """Load a single model's state_dict (strict: same keys and shapes) into seed s. num_batches_tracked,
        one for the group, takes the loaded value."""
        own = self.state_dict(keep_vars=True)
        if set(sd) != set(own):
            raise KeyError(f"state_dict keys differ: missing {sorted(set(own) - set(sd))}, "
                           f"unexpected {sorted(set(sd) - set(own))}")
        for k, t in own.items():
            if tuple(sd[k].shape) != tuple(self.single_shapes[k]):
                raise ValueError(f"{k}: shape {tuple(sd[k].shape)}, expected {tuple(self.single_shapes[k])}")
            dst = t if k.endswith("num_batches_tracked") else seed_slice(t, s, self.single_shapes[k])
            dst.copy_(sd[k])


def stack(models: Sequence[Classifier]) -> GroupedClassifier:
    """One module running the S = len(models) >= 1 Classifiers (same architecture, e.g. S seeds) side by side;
    it holds copies of their parameters and buffers (on their device and dtype; the models stay untouched)."""
    ms = list(models)
    if not ms:
        raise ValueError("stack needs at least one model")
    if any(type(m) is not Classifier for m in ms):
        raise ValueError("stack takes Classifier instances")
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in ms]
    if any(sh != shapes[0] for sh in shapes[1:]):
        raise ValueError("the models differ in architecture (state_dict keys or shapes)")
    return GroupedClassifier(ms)
