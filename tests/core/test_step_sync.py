"""The training step never waits for the device (issue 40, part 3): no `.item()`, no Python branch on a tensor's
value, no copy to the host, from the augmentation through the attack, Guided Dropout, the objective, backward
and the fused Adam update, for one seed and for a group. That is what lets a CUDA graph capture the step, and
what keeps the GPU's queue full without one. On the CPU a guard makes every such call raise."""
import contextlib
import copy

import pytest
import torch

from aalp import config as C
from aalp.core import grouped, losses, models, step

SYNCING = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "cpu")


@contextlib.contextmanager
def no_host_sync():
    """Every Tensor method that reads a value on the host raises inside."""
    def refuse(name):
        def f(self, *a, **k):
            raise AssertionError(f"the step waits for the device: Tensor.{name}")
        return f

    saved = {n: getattr(torch.Tensor, n) for n in SYNCING}
    for n in SYNCING:
        setattr(torch.Tensor, n, refuse(n))
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def test_the_guard_catches_a_step_that_waits():
    """The guard can fail: the old Guided Dropout mask, a Python branch on the number of kept features."""
    c = torch.tensor([0.3, 0.1, 0.2, 0.4])

    def old_mask(c):
        mask = (c > c.median()).to(c.dtype)
        if mask.sum() == 0:
            return torch.ones_like(c)
        return mask

    with no_host_sync():
        with pytest.raises(AssertionError, match="Tensor.__bool__"):
            old_mask(c)
    assert losses.guided_dropout_mask(c).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert losses.guided_dropout_mask(torch.ones(4)).tolist() == [1.0] * 4          # nothing above the median: all
    assert losses.guided_dropout_mask(c, rescale=True).tolist() == [2.0, 0.0, 0.0, 2.0]  # D / kept = 4 / 2


@pytest.mark.parametrize("seeds", [1, 2])
@pytest.mark.parametrize("method", ["raw_gd", "adv", "aalp", "trades_aw", "alp_split"])
def test_a_training_step_makes_no_host_sync(ci_params, method, seeds):
    p = copy.deepcopy(ci_params)
    p["methods"].update(raw_gd={"objective": "raw", "guided_dropout": True},
                        trades_aw={"objective": "trades", "adaptive_weight": True, "guided_dropout": True},
                        alp_split={"objective": "alp", "mixed_batch": False})
    d = "synthetic_rgb" if method == "alp_split" else "synthetic"  # batch norm with the halves apart
    p["experiments"][d]["methods"] = [method]
    p["sweeps"], p["run_seeds"] = [], {}
    p["training"]["checkpoint_runs"] = []
    p["experiments"][d]["augment"] = "crop_flip"
    cfg = C.validate(p)
    specs = [C.run_spec(cfg, d, method, s) for s in range(seeds)]
    shape = tuple(cfg["datasets"][d]["shape"])
    singles = []
    for s in range(seeds):
        torch.manual_seed(s)
        singles.append(models.build(specs[0].model, shape, [0.5] * shape[0], [0.25] * shape[0]))
    tr = step.Trainer(specs, singles[0] if seeds == 1 else grouped.stack(singles), torch.device("cpu"),
                      fused_adam=True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand((4 * seeds, *shape), generator=g), torch.randint(0, 10, (4 * seeds,), generator=g)
    tr.step(x, y)  # Adam's state is made on the first step
    before = [q.detach().clone() for q in tr.model.parameters()]
    with no_host_sync():
        out = tr.step(x, y)
    assert out["loss"].shape == (seeds,) and bool(torch.isfinite(out["loss"]).all())
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))  # the step did update
