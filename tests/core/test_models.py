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
