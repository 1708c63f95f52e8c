"""Backbones + linear heads. ``create_model(name, num_classes, in_channels)`` builds one by name."""

from .classifier import Classifier
from .heads import HEADS, CosineHead, LWSHead, TauNormHead, create_head, tau_normalise
from .registry import MODELS, create_model, model_factory, register_model
from .resnet_cifar import CifarResNet

__all__ = ["Classifier", "MODELS", "create_model", "model_factory", "register_model", "CifarResNet", "HEADS",
           "CosineHead", "LWSHead", "TauNormHead", "create_head", "tau_normalise"]
