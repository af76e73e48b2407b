"""The paper's networks, each split into `features` (penultimate activations h, B x D) and a linear
`classifier` (the logits layer), with input normalisation inside so that inputs stay in [0, 1].

- lenet: Madry et al.'s MNIST network (the "LeNet" of ALP), 3,274,634 parameters, D = 1024.
- resnet9: Page's DAWNBench ResNet-9, about 6.57M parameters, D = 512.
- resnet32: He et al.'s CIFAR ResNet-32 with option-A shortcuts, 464,154 parameters, D = 64.
- *_small: narrow/shallow variants for quick CPU profiles; never reported as the paper's models.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MODEL_SHAPES


class Classifier(nn.Module):
    """x in [0,1] -> normalise -> body -> h (B x D) -> [h * mask] -> logits."""

    def __init__(self, body: nn.Module, feature_dim: int, mean: Sequence[float], std: Sequence[float],
                 cam_layer: nn.Module, num_classes: int = 10):
        super().__init__()
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).clamp_min(1e-3).view(1, c, 1, 1))
        self.body = body
        self.feature_dim = feature_dim
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.cam_layer = cam_layer  # last convolutional block, for Grad-CAM

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        return self.classifier(h if mask is None else h * mask)


# ----------------------------------------------------------------------------- CPU speed (docs/method.md#speed-options)
# Switches for the two kernels below, on by default; off gives PyTorch's own (the before/after of `bench roofline`
# and of the tests that compare them).
FOLD_INPUT_GRAD = True
KEEP_CHANNELS_LAST = True


def _fold_input_grad(g: torch.Tensor, w: torch.Tensor, x_shape, stride, padding) -> torch.Tensor:
    """dL/dx of y = conv2d(x, w) as a matmul plus col2im: cols = W^T g (B, C_in*k*k, L), then F.fold sums
    every window's contribution into its pixels. Computed in float32 (one rounding to x's dtype at the end)."""
    b, cout = g.shape[:2]
    kh, kw = w.shape[2:]
    w2 = w.reshape(cout, -1).float()  # (C_out, C_in*k*k)
    if g.is_contiguous():
        cols = torch.matmul(w2.t(), g.float().reshape(b, cout, -1))  # (B, C_in*k*k, L)
    else:  # channels_last: one (B*L, C_out) @ (C_out, C_in*k*k) matmul on the NHWC rows
        rows = g.float().permute(0, 2, 3, 1).reshape(b, -1, cout)
        cols = torch.matmul(rows, w2).transpose(1, 2)
    return F.fold(cols, tuple(x_shape[2:]), (kh, kw), padding=padding, stride=stride)


class _FoldGradConv2d(torch.autograd.Function):
    """conv2d whose input gradient is `_fold_input_grad`; the weight and bias gradients are PyTorch's own
    (aten.convolution_backward, the kernel autograd calls for F.conv2d)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, b is not None)
        return F.conv2d(x, w, b, stride, padding)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_x:
            gx = _fold_input_grad(g, w, x.shape, stride, padding).to(x.dtype)
        if need_w or need_b:
            _, gw, gb = torch.ops.aten.convolution_backward(
                g, x, w, [w.shape[0]] if has_bias else None, list(stride), list(padding), [1, 1], False, [0, 0], 1,
                [False, need_w, need_b and has_bias])
        return gx, gw, gb, None, None


class FoldGradConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state_dict) whose input gradient is a matmul plus F.fold. PyTorch's
    own input gradient of a convolution with one input channel (LeNet's first layer, the input gradient
    every attack iteration needs) runs at a few GFLOP/s on a CPU; this is 2-3x faster and equal within
    float32 rounding (tests/core/test_models.py). Under autocast it casts like autocast's conv2d does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not FOLD_INPUT_GRAD or not x.requires_grad or not torch.is_grad_enabled() or self.groups != 1 \
                or self.dilation != (1, 1) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)  # PyTorch's own, also wherever no input gradient is needed (training)
        w, b = self.weight, self.bias
        dev = x.device.type
        if torch.is_autocast_enabled(dev):  # what autocast does to conv2d's arguments, recorded by autograd
            dt = torch.get_autocast_dtype(dev)
            x, w = x.to(dt), w.to(dt)
            b = None if b is None else b.to(dt)
            with torch.autocast(dev, enabled=False):
                return _FoldGradConv2d.apply(x, w, b, self.stride, self.padding)
        return _FoldGradConv2d.apply(x, w, b, self.stride, self.padding)


class _FlattenChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """nn.Flatten (C, H, W order) whose gradient keeps a channels_last input's format. nn.Flatten hands an
    NCHW gradient back, so every layer below it (max-pool backward, ReLU, the convolution) works on mixed
    formats and converts; same values, bit for bit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (KEEP_CHANNELS_LAST and x.dim() == 4 and self.start_dim == 1 and self.end_dim == -1 and x.requires_grad
                and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            return _FlattenChannelsLast.apply(x)
        return super().forward(x)


# ----------------------------------------------------------------------------- LeNet (Madry)
def _lenet(c1: int, c2: int, hidden: int):
    convs = nn.Sequential(
        FoldGradConv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(),
    )
    body = nn.Sequential(convs, nn.MaxPool2d(2), Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU())
    return body, hidden, convs


# ----------------------------------------------------------------------------- ResNet-9 (Page)
def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.res = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.res(x)


def _resnet9(w: int):
    layer3 = nn.Sequential(conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w))
    body = nn.Sequential(
        conv_bn(3, w),
        conv_bn(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),
        conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
        layer3,
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
    )
    return body, 8 * w, layer3


# ----------------------------------------------------------------------------- ResNet-32 (He, option A)
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin  # option A: subsample and zero-pad channels, no parameters
        self.stride = stride

    def pad_channels(self, short: torch.Tensor) -> torch.Tensor:
        """Option A's zero channels, half before and half after (dim -3: the channels)."""
        return F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:
            short = self.pad_channels(x[:, :, ::self.stride, ::self.stride])
        return F.relu(out + short)


def _cifar_resnet(blocks: int, widths=(16, 32, 64)):
    layers, cin = [], widths[0]
    stages = []
    for i, w in enumerate(widths):
        stage = nn.Sequential(*[BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(blocks)])
        stages.append(stage)
        cin = w
    body = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(),
                         *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
    return body, widths[-1], stages[-1]


_BUILDERS = {
    "lenet": lambda: _lenet(32, 64, 1024),
    "lenet_small": lambda: _lenet(8, 16, 64),
    "resnet9": lambda: _resnet9(64),
    "resnet9_small": lambda: _resnet9(8),
    "resnet32": lambda: _cifar_resnet(5),
    "resnet32_small": lambda: _cifar_resnet(1, (8, 16, 32)),
}


class ModelError(ValueError):
    pass


def build(name: str, shape: Sequence[int], mean: Sequence[float], std: Sequence[float], num_classes: int = 10) -> Classifier:
    """Build model `name` for inputs of `shape` (C, H, W); a mismatch is a clear error."""
    if name not in _BUILDERS:
        raise ModelError(f"unknown model {name!r}; allowed values: {', '.join(_BUILDERS)}")
    if tuple(shape) != MODEL_SHAPES[name]:
        raise ModelError(f"model {name!r} expects inputs of shape {MODEL_SHAPES[name]}, the dataset has {tuple(shape)}")
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise ModelError(f"normalisation needs {shape[0]} channel means and stds")
    body, dim, cam = _BUILDERS[name]()
    return Classifier(body, dim, mean, std, cam, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
