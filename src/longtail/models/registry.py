"""Models by name (timm style): ``create_model('resnet32', num_classes=10, in_channels=3)``.

Every factory returns a :class:`Classifier` (backbone + linear head). Besides the registered names, any
timm model is ``timm/<name>`` (``pip install timm``) and any torchvision classification model
``torchvision/<name>``; both take ``pretrained_path`` (a local weights file: nothing is downloaded) and
further keyword arguments of the model's constructor, and their classifier is found and replaced by the
linear head without assuming where it lives (``.fc``, ``.classifier``, ``.heads.head`` ...)."""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from ..registry import Registry
from .classifier import Classifier
from .resnet_cifar import CifarResNet

MODELS: Registry[Classifier] = Registry("model")
register_model = MODELS.register


def model_factory(name: str):
    """The factory of ``name``: a registered model, ``timm/<name>`` or ``torchvision/<name>``."""
    if name.startswith("timm/"):
        return functools.partial(_timm_model, name[len("timm/"):])
    if name.startswith("torchvision/"):
        return functools.partial(_torchvision_model, name[len("torchvision/"):])
    return MODELS.get(name)


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> Classifier:
    return model_factory(name)(num_classes=num_classes, in_channels=in_channels, **kwargs)


def _load_local_weights(net: nn.Module, path: str, ignored: set[str], what: str) -> None:
    """A local state dict into ``net``; only the ``ignored`` keys (the replaced classifier) may be missing or extra."""
    from ..engine.checkpoint import load_checkpoint

    state = load_checkpoint(path)  # weights_only; clear errors for missing / damaged / unsafe files
    state = state.get("model", state) if isinstance(state, dict) else state
    state = {k: v for k, v in state.items() if k not in ignored}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in ignored]  # the classifier is replaced: its weights are not needed
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {what}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")


def _timm_model(arch: str, num_classes: int, in_channels: int = 3, pretrained_path: str | None = None,
                **kwargs: Any) -> Classifier:
    """A timm model without its classifier (``num_classes=0``: features of ``num_features``) + a linear head."""
    try:
        import timm
    except ImportError:
        raise ValueError(f"model timm/{arch} needs timm: pip install timm (or longtail[timm])") from None
    try:
        backbone = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    except RuntimeError as err:  # timm's message for an unknown name
        raise ValueError(f"timm has no model {arch!r} ({err}); `timm.list_models('{arch[:4]}*')` lists the names") from None
    if pretrained_path is not None:
        ignored = set(timm.create_model(arch, pretrained=False, in_chans=in_channels, **kwargs).state_dict()) - set(
            backbone.state_dict())  # the classifier's keys of the full model
        _load_local_weights(backbone, pretrained_path, ignored, f"timm/{arch}")
    return Classifier(backbone, backbone.num_features, num_classes)


def _torchvision_model(arch: str, num_classes: int, in_channels: int = 3, pretrained_path: str | None = None,
                       **kwargs: Any) -> Classifier:
    """A torchvision classification model whose classifier (its last Linear layer) becomes the identity."""
    import torchvision

    try:
        net = torchvision.models.get_model(arch, weights=None, **kwargs)
    except ValueError as err:
        raise ValueError(f"torchvision has no model {arch!r}: {err}") from None
    name, last = next(((n, m) for n, m in reversed(list(net.named_modules())) if isinstance(m, nn.Linear)), (None, None))
    if last is None:
        raise ValueError(f"torchvision/{arch} has no Linear classifier to replace")
    if pretrained_path is not None:
        _load_local_weights(net, pretrained_path, {f"{name}.weight", f"{name}.bias"} - {"."}, f"torchvision/{arch}")
    parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    if in_channels != 3:
        first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        if first.in_channels != 3:
            raise ValueError(f"torchvision/{arch}: cannot adapt its first convolution to {in_channels} channels")
        _replace_first_conv(net, first, in_channels)
    return Classifier(net, last.in_features, num_classes)


def _replace_first_conv(net: nn.Module, conv: nn.Conv2d, in_channels: int) -> None:
    for name, module in net.named_modules():
        if module is conv:
            parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
            setattr(parent, name.rpartition(".")[2], nn.Conv2d(
                in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None))
            return


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
