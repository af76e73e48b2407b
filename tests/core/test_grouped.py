"""core/grouped.py: S seeds of one architecture as one module equal the S single models, seed by seed.

Tolerances. The group computes the same float32 operations as the single models, but a grouped convolution
(and the batched matmul of the linear layers) is a different kernel from the plain one, so each dot product is
summed in a different order (and LeNet's single model takes FoldGradConv2d's input gradient). The result differs
by a few float32 roundings (u = 6e-8) per layer, amplified through up to ~20 layers and train-mode batch norm's
division by a batch standard deviation; measured: forward <= 1e-6, gradients <= 4e-6 of the compared tensor's
largest magnitude. The checks allow FWD = 1e-5 and GRAD = 5e-5 of that magnitude (about 10x margin), far below
what a wrong seed, layout or weight block gives (order 1, see test_swapped_batches_are_caught). On a GPU keep
TF32 off for such a comparison (torch.backends.cudnn.allow_tf32 is on by default for convolutions).
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aalp.core import grouped, models

S, B = 3, 4
SMALL = {"lenet_small": (1, 28, 28), "resnet9_small": (3, 32, 32), "resnet32_small": (3, 32, 32)}
FULL = {"lenet": (1, 28, 28), "resnet9": (3, 32, 32), "resnet32": (3, 32, 32)}
FWD, GRAD = 1e-5, 5e-5


def single(name: str, seed: int) -> models.Classifier:
    """Seed `seed`'s model. Each seed normalises differently and has its own batch-norm weights and running
    statistics (freshly built ones are all 1, 0, 0, 1), so that mixing up seeds anywhere shows."""
    shape = {**SMALL, **FULL}[name]
    torch.manual_seed(seed)
    m = models.build(name, shape, [0.4 + 0.1 * seed] * shape[0], [0.2 + 0.05 * seed] * shape[0])
    with torch.no_grad():
        for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)):
            for t, lo, hi in [(bn.weight, 0.5, 1.5), (bn.bias, -0.5, 0.5), (bn.running_mean, -0.5, 0.5),
                              (bn.running_var, 0.5, 2.0)]:
                t.uniform_(lo, hi)
    return m


def setup(name: str, train: bool = True, b: int = B):
    ms = [single(name, s).train(train) for s in range(S)]
    g = grouped.stack(ms).train(train)
    gen = torch.Generator().manual_seed(123)
    xs = [torch.rand(b, *{**SMALL, **FULL}[name], generator=gen) for _ in range(S)]
    ys = [torch.randint(0, 10, (b,), generator=gen) for _ in range(S)]
    return ms, g, xs, ys


def err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest magnitude."""
    return ((a.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-12)).item()


def assert_close(a, ref, tol, what):
    assert a.shape == ref.shape, (what, a.shape, ref.shape)
    e = err(a, ref)
    assert e <= tol, f"{what}: relative difference {e:.3g} > {tol:g}"


def blocks(t: torch.Tensor) -> list[torch.Tensor]:
    return list(t.view(S, -1, *t.shape[1:]))


def grouped_loss(g, x, ys):
    """Sum over seeds of each seed's mean cross-entropy: its gradient w.r.t. seed s's weights is seed s's own."""
    return sum(F.cross_entropy(lg, y) for lg, y in zip(blocks(g(x)), ys))


# ----------------------------------------------------------------------------- 1. forward
@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_forward_equals_each_seed(name, train):
    ms, g, xs, _ = setup(name, train)
    with torch.no_grad():
        out = g(torch.cat(xs))
        for s, (m, x) in enumerate(zip(ms, xs)):
            assert_close(blocks(out)[s], m(x), FWD, f"seed {s} logits")


@pytest.mark.parametrize("name", FULL)
def test_full_size_models_forward(name):
    ms, g, xs, _ = setup(name, train=False, b=2)
    with torch.no_grad():
        out = g(torch.cat(xs))
        assert out.shape == (S * 2, 10) and g.features(torch.cat(xs)).shape == (S * 2, ms[0].feature_dim)
        for s, (m, x) in enumerate(zip(ms, xs)):
            assert_close(blocks(out)[s], m(x), FWD, f"seed {s} logits")


# ----------------------------------------------------------------------------- 2. gradients
@pytest.mark.parametrize("name", SMALL)
def test_input_and_parameter_gradients_equal_each_seed(name):
    ms, g, xs, ys = setup(name)
    x = torch.cat(xs).requires_grad_(True)
    grouped_loss(g, x, ys).backward()
    keys = g.param_keys()
    assert len(keys) == len(list(g.parameters())) == len(list(ms[0].parameters()))
    for s, (m, xi, y) in enumerate(zip(ms, xs, ys)):
        xi = xi.clone().requires_grad_(True)
        F.cross_entropy(m(xi), y).backward()
        assert_close(blocks(x.grad)[s], xi.grad, GRAD, f"seed {s} input gradient")
        ref = dict(m.named_parameters())
        for p, k in zip(g.parameters(), keys):
            assert_close(grouped.seed_slice(p.grad, s, g.single_shapes[k]), ref[k].grad, GRAD, f"seed {s} {k}.grad")


# ----------------------------------------------------------------------------- 3. batch-norm running statistics
@pytest.mark.parametrize("name", ["resnet9_small", "resnet32_small"])
def test_train_forward_updates_each_seeds_running_statistics(name):
    ms, g, xs, _ = setup(name)
    with torch.no_grad():
        for _ in range(2):
            g(torch.cat(xs))
            for m, x in zip(ms, xs):
                m(x)
    stats = [k for k in g.single_shapes if k.endswith(("running_mean", "running_var"))]
    assert stats
    for s, m in enumerate(ms):
        sd, ref = g.single_state_dict(s), m.state_dict()
        for k in stats:
            assert not torch.equal(ref[k], single(name, s).state_dict()[k]), k  # they did move
            assert_close(sd[k], ref[k], FWD, f"seed {s} {k}")
        assert all(sd[k] == ref[k] == 2 for k in sd if k.endswith("num_batches_tracked"))


# ----------------------------------------------------------------------------- 4. Adam, state dicts
@pytest.mark.parametrize("name", SMALL)
def test_one_adam_step_equals_one_per_seed(name):
    lr = 1e-3
    ms, g, xs, ys = setup(name)
    opt = torch.optim.Adam(g.parameters(), lr=lr)
    x = torch.cat(xs)
    grouped_loss(g, x, ys).backward()
    for m, xi, y in zip(ms, xs, ys):
        F.cross_entropy(m(xi), y).backward()
    keys, exact = g.param_keys(), grouped.stack(ms)  # exact: the single models' own gradients, sliced in
    for s, m in enumerate(ms):
        ref = dict(m.named_parameters())
        for p, k in zip(exact.parameters(), keys):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grouped.seed_slice(p.grad, s, g.single_shapes[k]).copy_(ref[k].grad)
        torch.optim.Adam(m.parameters(), lr=lr).step()
    opt_exact = torch.optim.Adam(exact.parameters(), lr=lr)
    opt.step()
    opt_exact.step()
    for s, m in enumerate(ms):
        ref = m.state_dict()
        for k, t in exact.single_state_dict(s).items():  # same gradients: S independent Adams, bit for bit
            assert torch.equal(t, ref[k]), f"seed {s} {k}"
        sd = g.single_state_dict(s)
        assert list(sd) == list(ref) and all(sd[k].shape == ref[k].shape for k in ref)
        grads = {k: p.grad for k, p in m.named_parameters(remove_duplicate=False)}
        for k in ref:
            diff = (sd[k].float() - ref[k].float()).abs()
            if k not in grads:  # buffers: the running statistics
                assert_close(sd[k], ref[k], FWD, f"seed {s} {k}")
                continue
            # Adam's first step is lr * g / (|g| + eps), about lr * sign(g): the same step where the gradients
            # agree (up to the weight's float rounding), a sign flip (up to 2 lr) only where |g| is within the
            # gradients' rounding difference (GRAD of the largest)
            g_ref = grads[k].abs()
            sure = g_ref > GRAD * g_ref.max()
            assert (diff[sure] <= 1e-3 * lr + 1e-6 * ref[k].abs()[sure]).all(), f"seed {s} {k}"
            assert (diff <= 2 * lr * (1 + 1e-3)).all(), f"seed {s} {k}"
        for p, k in zip(g.parameters(), keys):  # the optimiser's state slices like the parameters
            st = opt.state[p]
            gs = grouped.seed_slice(p.grad, s, g.single_shapes[k])
            assert torch.equal(grouped.seed_slice(st["exp_avg"], s, g.single_shapes[k]), 0.1 * gs)
        fresh = single(name, s + 10).eval()
        fresh.load_state_dict(sd, strict=True)
        with torch.no_grad():
            assert_close(blocks(g.eval()(x))[s], fresh(xs[s]), FWD, f"seed {s} reloaded logits")
            # and close to the single model's own step (a few weights near a zero gradient may step the other way)
            assert_close(fresh(xs[s]), m.eval()(xs[s]), 1e-3, f"seed {s} vs its own Adam step")
        g.train()


def test_load_single_state_dict_is_the_inverse():
    ms, g, _, _ = setup("resnet32_small")
    other = single("resnet32_small", 7)
    g.load_single_state_dict(1, other.state_dict())
    for k, t in g.single_state_dict(1).items():
        assert torch.equal(t, other.state_dict()[k]), k
    for s in (0, 2):  # the other seeds untouched
        for k, t in g.single_state_dict(s).items():
            assert torch.equal(t, ms[s].state_dict()[k]), f"seed {s} {k} changed"
    with pytest.raises(KeyError, match="missing"):
        g.load_single_state_dict(0, {k: v for k, v in other.state_dict().items() if k != "mean"})
    sd = g.single_state_dict(0)
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in sd.values())  # own copies


# ----------------------------------------------------------------------------- 5. the comparison is per seed
@pytest.mark.parametrize("name", SMALL)
def test_swapped_batches_are_caught(name):
    ms, g, xs, _ = setup(name, train=False)
    with torch.no_grad():
        out = blocks(g(torch.cat([xs[1], xs[0], xs[2]])))
        assert err(out[0], ms[0](xs[0])) > 100 * FWD and err(out[1], ms[1](xs[1])) > 100 * FWD, \
            "swapping the seeds' batches goes unnoticed"
        assert_close(out[0], ms[0](xs[1]), FWD, "seed 0 on seed 1's batch")
        assert err(out[0], ms[1](xs[1])) > 100 * FWD, "the seeds' models do not differ"
        assert_close(out[2], ms[2](xs[2]), FWD, "seed 2")


# ----------------------------------------------------------------------------- 6. features, mask, classifier
@pytest.mark.parametrize("name", SMALL)
def test_features_mask_classifier_path(name):
    ms, g, xs, _ = setup(name, train=False)
    x = torch.cat(xs)
    with torch.no_grad():
        h = g.features(x)
        assert h.shape == (S * B, ms[0].feature_dim)
        mask = (torch.rand(S * B, ms[0].feature_dim, generator=torch.Generator().manual_seed(5)) > 0.5).float()
        assert torch.equal(g.classifier(h * mask), g(x, mask)), "classifier(features(x) * mask) != forward(x, mask)"
        assert torch.equal(g.classifier(h * mask[0]), g(x, mask[0])), "with one (D,) mask for every row"
        for s, (m, xi) in enumerate(zip(ms, xs)):
            assert_close(blocks(h)[s], m.features(xi), FWD, f"seed {s} features")
            assert_close(blocks(g(x, mask))[s], m(xi, blocks(mask)[s]), FWD, f"seed {s} masked logits")
            assert_close(blocks(g.classifier(h))[s], m.classifier(blocks(h)[s]), FWD, f"seed {s} classifier")


# ----------------------------------------------------------------------------- memory format, autocast, structure
@pytest.mark.parametrize("name", SMALL)
def test_channels_last_and_autocast(name):
    ms, g, xs, ys = setup(name)
    x = torch.cat(xs)
    ref = torch.cat([m(xi) for m, xi in zip(ms, xs)]).detach()
    cl = torch.channels_last
    g.to(memory_format=cl)
    xc = x.contiguous(memory_format=cl).requires_grad_(True)
    grouped_loss(g, xc, ys).backward()
    # the input gradient against the single model in channels_last too: a max pool routes its gradient to the
    # larger of two nearly equal inputs, and the other format's rounding may pick the other one (seen once in 12
    # batches: 1.6e-2 between the single model's own two formats); the forward is continuous, no such jump
    x0 = xs[0].contiguous(memory_format=cl).requires_grad_(True)
    F.cross_entropy(ms[0].to(memory_format=cl)(x0), ys[0]).backward()
    assert_close(blocks(xc.grad)[0], x0.grad, GRAD, "channels_last input gradient")
    with torch.no_grad():
        assert_close(g(xc), ref, FWD, "channels_last logits")
        assert_close(g(x), ref, FWD, "channels_last group, contiguous input")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, single_out = g(x), ms[1](xs[1])
        assert out.dtype == single_out.dtype == torch.bfloat16
        assert_close(blocks(out)[1], single_out, 0.05, "bf16 autocast logits")  # bf16: 8 mantissa bits


def test_one_seed_is_the_model_itself():
    m = single("resnet32_small", 0).eval()
    g = grouped.stack([m]).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert_close(g(x), m(x), FWD, "S = 1")
    assert set(g.state_dict()) == set(m.state_dict()) and g.seeds == 1
    assert g.cam_layer is not None and any(g.cam_layer is mod for mod in g.body.modules())


def test_what_cannot_be_stacked():
    with pytest.raises(ValueError, match="at least one"):
        grouped.stack([])
    with pytest.raises(ValueError, match="differ in architecture"):
        grouped.stack([single("resnet32_small", 0), single("resnet9_small", 1)])
    odd = single("lenet_small", 1)
    odd.body[4] = nn.GELU()
    with pytest.raises(ValueError, match="no grouped counterpart for module GELU at body.4"):
        grouped.stack([odd, single("lenet_small", 0)])
    with pytest.raises(ValueError, match="seed-major"):
        grouped.stack([single("lenet_small", 0), single("lenet_small", 1)])(torch.rand(3, 1, 28, 28))
    with pytest.raises(ValueError, match="no stack"):
        grouped.seed_slice(torch.zeros(10), 0, (3,))
