"""Models by name: backbone and head are separate modules, with the sizes of the papers."""

import pytest
import torch

from longtail.models import Classifier, create_model


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def test_resnet32_is_the_cifar_resnet_of_the_papers():
    model = create_model("resnet32", num_classes=10)
    assert isinstance(model, Classifier) and model.feature_dim == 64
    # 3 stages x 5 blocks x 2 convs + stem, option-A shortcuts: 0.46M parameters (He et al. 2016, Table 6)
    assert num_params(model) == 464_154
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 31 and len(convs) + 1 == 32, "31 convolutions + the linear head = 32 layers"
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, 64) and model(x).shape == (2, 10)


def test_small_resnet_for_grayscale_28x28():
    model = create_model("resnet8_small", num_classes=10, in_channels=1)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert num_params(model) < 100_000


@pytest.mark.parametrize("name, dim", [("resnet10", 512), ("resnet18", 512)])
def test_torchvision_backbones_by_name(name, dim):
    model = create_model(name, num_classes=7, in_channels=1)
    assert model.feature_dim == dim
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 7)


def test_reset_head_keeps_the_backbone():
    model = create_model("resnet8_small", num_classes=4, in_channels=1)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    old_head = model.head
    model.reset_head()
    assert model.head is not old_head and model.head.out_features == 4
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.items())


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(KeyError, match="Did you mean 'resnet32'"):
        create_model("resnet_32", num_classes=10)
