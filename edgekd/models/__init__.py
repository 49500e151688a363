"""Model zoo: CIFAR MobileNetV2 / ResNet / VGG-16-BN, any torchvision model as ``tv:<name>``, any timm model
as ``timm:<name>``, and a user's own builder as ``path/to/net.py:builder`` or ``package.module:builder``
(:mod:`edgekd.models.user`).

Every model exposes ``forward_features``, ``forward_head`` and ``stage_modules()`` (named stages →
module-name prefixes, which recipes use to define blocks).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from edgekd.errors import ConfigError
from edgekd.models.mobilenetv2 import MobileNetV2Cifar
from edgekd.models.registry import ModelInfo, ModelRegistry
from edgekd.models.resnet_cifar import ResNetCifar
from edgekd.models.user import build_user_model, check_user_model, is_user_model
from edgekd.models.vgg_cifar import VGGCifar

__all__ = ["create_model", "list_models", "model_info", "default_registry", "ModelRegistry", "ModelInfo"]

CIFAR_INPUT = (3, 32, 32)


def _build_default_registry() -> ModelRegistry:
    registry = ModelRegistry()
    registry.register("mobilenetv2_cifar", input_size=CIFAR_INPUT, family="mobilenetv2",
                      description="MobileNetV2 for 32x32 inputs; kwarg width_mult")(MobileNetV2Cifar)
    for depth in (20, 32, 44, 56, 110):
        registry.register(f"resnet{depth}_cifar", input_size=CIFAR_INPUT, family="resnet_cifar",
                          description=f"ResNet-{depth} for CIFAR (1x1 projection shortcuts)")(
            partial(ResNetCifar, depth))
    registry.register("vgg16_bn_cifar", input_size=CIFAR_INPUT, family="vgg",
                      description="VGG-16 with BatchNorm, one linear head")(VGGCifar)
    return registry


default_registry = _build_default_registry()


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a model by registry name, or a torchvision model as ``tv:<name>`` (no weights are fetched
    unless ``weights=`` is passed explicitly, which needs network access)."""
    if name.startswith("tv:"):
        return _create_torchvision(name[3:], num_classes, **kwargs)
    if is_user_model(name):
        return build_user_model(name, num_classes, **kwargs)
    try:
        return default_registry.create(name, num_classes=num_classes, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model={name!r}: bad model argument: {err}") from None


def model_info(name: str) -> ModelInfo:
    if name.startswith("tv:"):
        return ModelInfo(name, partial(_create_torchvision, name[3:]), (3, 224, 224), "torchvision")
    if is_user_model(name):
        check_user_model(name)
        return ModelInfo(name, partial(build_user_model, name), None, "user")
    return default_registry.info(name)


def list_models() -> list[str]:
    return default_registry.names()


def _create_torchvision(name: str, num_classes: int, **kwargs) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models():
        raise ConfigError(f"model='tv:{name}': unknown torchvision model; see torchvision.models.list_models()")
    return torchvision.models.get_model(name, num_classes=num_classes, **kwargs)
