"""Models by name (timm style): ``create_model('resnet32', num_classes=10, in_channels=3)``.

Every factory returns a :class:`Classifier` (backbone + linear head)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import Registry
from .classifier import Classifier
from .resnet_cifar import CifarResNet

MODELS: Registry[Classifier] = Registry("model")
register_model = MODELS.register


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> Classifier:
    return MODELS.create(name, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model("resnet32")
def resnet32(num_classes: int, in_channels: int = 3) -> Classifier:
    """The CIFAR ResNet-32 of LDAM / BALMS (5 blocks per stage, 64-d feature, ~0.46M parameters)."""
    backbone = CifarResNet(5, in_channels)
    return Classifier(backbone, backbone.feature_dim, num_classes)


@register_model("resnet8_small")
def resnet8_small(num_classes: int, in_channels: int = 1) -> Classifier:
    """A small ResNet for 28x28 grayscale (Fashion-MNIST-LT): the CIFAR design with one block per
    stage and 16/32/64 channels; trains an epoch of Fashion-MNIST-LT in seconds on a CPU."""
    backbone = CifarResNet(1, in_channels)
    return Classifier(backbone, backbone.feature_dim, num_classes)


def _torchvision_backbone(arch: str, in_channels: int, weights_path: str | None) -> tuple[nn.Module, int]:
    import torchvision
    from torchvision.models.resnet import BasicBlock, ResNet

    if arch == "resnet10":  # ImageNet-LT's ResNet-10 (OLTR / BALMS): one basic block per stage
        net = ResNet(BasicBlock, [1, 1, 1, 1])
    else:
        net = torchvision.models.get_model(arch, weights=None)
    if weights_path is not None:  # pretrained weights from a local file (no hub downloads at run time)
        from ..engine.checkpoint import load_checkpoint
        state = load_checkpoint(weights_path)  # weights_only; clear errors for missing / damaged / unsafe files
        state = state.get("model", state) if isinstance(state, dict) else state
        missing, unexpected = net.load_state_dict(state, strict=False)
        ignored = {"fc.weight", "fc.bias"}
        if set(missing) - ignored or set(unexpected) - ignored:
            raise ValueError(f"{weights_path} does not fit {arch}: missing {sorted(set(missing) - ignored)[:5]}, "
                             f"unexpected {sorted(set(unexpected) - ignored)[:5]}")
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim


def _register_torchvision(arch: str) -> None:
    @register_model(arch)
    def factory(num_classes: int, in_channels: int = 3, pretrained_path: str | None = None) -> Classifier:
        backbone, dim = _torchvision_backbone(arch, in_channels, pretrained_path)
        return Classifier(backbone, dim, num_classes)

    factory.__doc__ = f"torchvision {arch} backbone + linear head; ``pretrained_path``: local weights file."


for _arch in ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
              "resnext50_32x4d", "resnext101_32x8d"):
    _register_torchvision(_arch)
