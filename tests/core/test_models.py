import pytest
import torch

from aalp.core import models


@pytest.mark.parametrize("name, shape, params, dim", [
    ("lenet", (1, 28, 28), 3_274_634, 1024),
    ("resnet32", (3, 32, 32), 464_154, 64),
    ("resnet9", (3, 32, 32), 6_573_130, 512),
    ("lenet_small", (1, 28, 28), None, 64),
    ("resnet9_small", (3, 32, 32), None, 64),
    ("resnet32_small", (3, 32, 32), None, 32),
])
def test_parameter_counts_and_shapes(name, shape, params, dim):
    m = models.build(name, shape, [0.5] * shape[0], [0.25] * shape[0]).eval()
    if params is not None:
        assert models.count_parameters(m) == params
    x = torch.rand(2, *shape)
    h = m.features(x)
    assert h.shape == (2, dim) and m.feature_dim == dim
    assert m(x).shape == (2, 10)
    assert torch.allclose(m(x), m.classifier(h))
    mask = torch.zeros(dim)
    assert torch.allclose(m(x, mask), m.classifier.bias.expand(2, 10))
    feats = []
    m.cam_layer.register_forward_hook(lambda mod, i, o: feats.append(o))
    m(x)
    assert feats[0].ndim == 4 and feats[0].shape[0] == 2


def test_normalisation_inside_the_model():
    m = models.build("lenet_small", (1, 28, 28), [0.5], [0.25])
    assert m.mean.item() == 0.5 and m.std.item() == 0.25
    assert "mean" in m.state_dict()


def test_model_that_does_not_fit_the_shape():
    with pytest.raises(models.ModelError, match="expects inputs of shape"):
        models.build("lenet", (3, 32, 32), [0.5] * 3, [0.2] * 3)
    with pytest.raises(models.ModelError, match="unknown model"):
        models.build("vgg", (3, 32, 32), [0.5] * 3, [0.2] * 3)


# ----------------------------------------------------------------------------- CPU kernels (docs/method.md#speed-options)
def _grads(conv, x, g, fold: bool, amp: bool = False):
    old = models.FOLD_INPUT_GRAD
    models.FOLD_INPUT_GRAD = fold
    try:
        xx = x.detach().clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = conv(xx)
        return (out, *torch.autograd.grad(out, (xx, conv.weight, conv.bias), g.to(out.dtype)))
    finally:
        models.FOLD_INPUT_GRAD = old


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@pytest.mark.parametrize("cin, k, stride, padding", [(1, 5, 1, 2), (1, 3, 2, 1), (1, 5, 1, 0), (3, 3, 1, 1)])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_fold_input_gradient_equals_conv2d_autograd(cin, k, stride, padding, fmt):
    """The matmul + F.fold input gradient equals F.conv2d autograd's within float32 rounding (max error
    1e-5 of the largest entry; the summation order differs); the forward pass and the weight and bias
    gradients are PyTorch's own, bit for bit. (1, 5, 1, 2) is LeNet's first layer."""
    torch.manual_seed(0)
    conv = models.FoldGradConv2d(cin, 8, k, stride=stride, padding=padding).to(memory_format=fmt)
    x = torch.randn(6, cin, 28, 28).contiguous(memory_format=fmt)
    g = torch.randn(conv(x).shape).contiguous(memory_format=fmt)
    out, gx, gw, gb = _grads(conv, x, g, fold=True)
    ref_out, rx, rw, rb = _grads(conv, x, g, fold=False)
    assert torch.equal(out, ref_out) and torch.equal(gw, rw) and torch.equal(gb, rb)
    assert gx.shape == rx.shape and gx.dtype == rx.dtype
    assert _rel(gx, rx) < 1e-5


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_fold_input_gradient_under_bf16_autocast(fmt):
    """Under bf16 autocast the layer casts as autocast's conv2d does (bf16 output, float32 gradients for the
    float32 input and weights); the input gradient, summed in float32 and rounded once, is within bf16
    rounding of PyTorch's (1e-2 of the largest entry), the weight gradient bit for bit."""
    torch.manual_seed(0)
    conv = models.FoldGradConv2d(1, 8, 5, padding=2).to(memory_format=fmt)
    x = torch.rand(4, 1, 28, 28)
    g = torch.randn(4, 8, 28, 28).contiguous(memory_format=fmt)
    out, gx, gw, gb = _grads(conv, x, g, fold=True, amp=True)
    ref_out, rx, rw, rb = _grads(conv, x, g, fold=False, amp=True)
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref_out)
    assert gx.dtype == torch.float32 and gw.dtype == torch.float32
    assert torch.equal(gw, rw) and torch.equal(gb, rb)
    assert _rel(gx, rx) < 1e-2


def test_lenet_first_layer_uses_the_fold_gradient():
    m = models.build("lenet", (1, 28, 28), [0.5], [0.25])
    first = m.body[0][0]
    assert isinstance(first, models.FoldGradConv2d) and first.in_channels == 1
    assert isinstance(m.body[2], models.Flatten)
    assert "body.0.0.weight" in m.state_dict()  # the same parameters and checkpoint keys as nn.Conv2d


def test_channels_last_end_to_end_and_bit_identical():
    """With channels_last every max-pool gets a channels_last input and a channels_last gradient (nn.Flatten
    handed an NCHW gradient to the second pool, which then converted at every layer below it); the input
    and weight gradients are bit-identical to nn.Flatten's."""
    torch.manual_seed(0)
    m = models.build("lenet_small", (1, 28, 28), [0.5], [0.25]).to(memory_format=torch.channels_last)
    pools = [mod for mod in m.modules() if isinstance(mod, torch.nn.MaxPool2d)]
    seen = []

    def fwd(mod, inp, out):
        seen.append(("in", inp[0].is_contiguous(memory_format=torch.channels_last) and not inp[0].is_contiguous()))
        out.register_hook(lambda g: seen.append(("grad", g.is_contiguous(memory_format=torch.channels_last)
                                                 and not g.is_contiguous())))

    hooks = [p.register_forward_hook(fwd) for p in pools]
    x = torch.rand(4, 1, 28, 28)

    def grads(keep):
        old = models.KEEP_CHANNELS_LAST
        models.KEEP_CHANNELS_LAST = keep
        try:
            xx = x.clone().requires_grad_(True)
            loss = m(xx).logsumexp(1).sum()
            return torch.autograd.grad(loss, [xx, *m.parameters()])
        finally:
            models.KEEP_CHANNELS_LAST = old

    fast = grads(True)
    assert len(seen) == 4 and all(ok for _, ok in seen), seen
    plain = grads(False)
    assert ("grad", False) in seen[4:]  # what nn.Flatten did
    for h in hooks:
        h.remove()
    assert all(torch.equal(a, b) for a, b in zip(fast, plain))
