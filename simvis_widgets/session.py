"""A model session: backbone truncated at a feature layer + pooling + optional head + normalisation +
preprocessing, on a device, with a feature cache. Images go in; features, embeddings and explained pairs
(:class:`~simvis_widgets.pair.ExplainedPair`) come out.

The public contract other modules build on: :class:`SessionOptions` (what decides the embeddings),
:meth:`ModelSession.fingerprint` (options + a hash of the weights), :meth:`ModelSession.encode` (an image as the
network sees it, with its features, cached), :meth:`ModelSession.batch_features` (features of prepared images),
:meth:`ModelSession.embed_features` and :func:`snapshots`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import numbers
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._io import digest, image_hash, tensor_bytes
from .decompose import LinearHead, check_pooling, decompose, from_contributions, pooled_embeddings
from .errors import ImageInputError, ModelError
from .fusion import inference_copy
from .images import ImageLike, check_short_side, load_image, resize_for_network
from .linearise import CLSLinearisation, LinearisationError
from .models import (
    DEFAULT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    load_state_dict_file,
    make_extractor,
    timm_head,
)
from .pair import ExplainedPair
from .runtime import release_memory, tune_allocator
from .triplet import ExplainedTriplet

RUNTIME_OPTIONS = ("device", "amp", "cache_size", "channels_last", "fold_batchnorm", "fold_padding")
"""Session settings that decide where and how fast features are computed, not what they are (kept by
:meth:`ModelSession.variant` and :func:`snapshots`; not part of :class:`SessionOptions`)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device (None: :func:`default_device`); :class:`ModelError` for a name torch does not
    know or a CUDA device on a machine without one."""
    try:
        out = torch.device(device) if device is not None else default_device()
    except (RuntimeError, TypeError) as err:
        raise ModelError(f"device {device!r} is not a torch device ({err})") from None
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for but this machine has no usable CUDA GPU")
    return out


def _flag(name: str, value: Any) -> bool:
    """A session switch: True or False (a NumPy bool too), else a :class:`ModelError` naming it."""
    if not isinstance(value, (bool, np.bool_)):
        raise ModelError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _triple(values: Sequence[float], name: str, positive: bool) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ModelError(f"{name} must be three numbers (one per RGB channel), got {values!r}") from None
    if len(out) != 3 or not all(math.isfinite(v) for v in out) or (positive and min(out) <= 0):
        raise ModelError(f"{name} must be three finite numbers{' > 0' if positive else ''}, got {values!r}")
    return out


@dataclass(frozen=True)
class SessionOptions:
    """Everything that decides what a session computes from an image, in one immutable value.

    Two sessions whose options are equal and whose weights hash alike compute the same embeddings: ``==``
    ignores only ``name`` (a label). ``stride`` and ``channels`` are read off the network by the session
    (None until then). ``head`` is held as a :class:`~simvis_widgets.decompose.LinearHead` (compared by a hash of
    its values); ``p`` matters only for GeM. :meth:`ModelSession.variant`, :func:`snapshots` and the gallery
    fingerprint are all built from this one value.
    """

    name: str = dataclasses.field(default="model", compare=False)
    layer: str | None = None
    """The submodule whose output are the local features (None: timm's ``forward_features``)."""
    pooling: str = "avg"
    p: float = 3.0
    head: LinearHead | None = None
    normalize: bool = True
    size: int | None = DEFAULT_SIZE
    """Shorter side of the network input in px (None: native size); see :func:`~simvis_widgets.images.check_short_side`."""
    max_aspect: float = 3.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    approximate: bool = False
    """CLS-token ViTs: the first-order linearisation, labelled APPROXIMATE."""
    stride: int | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("pooling", check_pooling(self.pooling, self.p))
        if not isinstance(self.p, numbers.Real) or isinstance(self.p, bool):
            raise ModelError(f"p must be a number, got {self.p!r}")
        set_("p", float(self.p))
        set_("head", LinearHead.coerce(self.head))
        set_("normalize", bool(self.normalize))
        check_short_side(self.size, float(self.max_aspect) if isinstance(self.max_aspect, numbers.Real) else 3.0)
        if not isinstance(self.max_aspect, numbers.Real) or not math.isfinite(self.max_aspect) or self.max_aspect < 1:
            raise ModelError(f"max_aspect must be a finite number >= 1, got {self.max_aspect!r}")
        set_("max_aspect", float(self.max_aspect))
        set_("mean", _triple(self.mean, "mean", positive=False))
        set_("std", _triple(self.std, "std", positive=True))
        set_("approximate", bool(self.approximate))
        set_("name", str(self.name))
        if self.layer is not None:
            set_("layer", str(self.layer))

    def replace(self, **changes: Any) -> SessionOptions:
        """A copy with ``changes``; unknown names are a ``TypeError`` naming them."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(
                f"unknown option(s) for a session: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The options as JSON-ready values (the head as its digest, ``p`` only for GeM): the part of a session's
        fingerprint that does not depend on the weights."""
        return {
            "model": self.name,
            "layer": self.layer,
            "pooling": self.pooling,
            "p": self.p if self.pooling == "gem" else None,
            "head": None if self.head is None else self.head.digest,
            "normalize": self.normalize,
            "size": self.size,
            "max_aspect": self.max_aspect,
            "mean": list(self.mean),
            "std": list(self.std),
            "approximate": self.approximate,
            "stride": self.stride,
            "channels": self.channels,
        }


@dataclass(frozen=True, eq=False)
class Encoded:
    """One image as a session sees it: ``loaded`` (``H x W x 3`` uint8 as given), ``image`` (resized for the
    network), its local ``features`` (``(C, h, w)``; a CLS-linearised session keeps every token, ``(N, C)``) and
    ``hash`` (:func:`simvis_widgets._io.image_hash` of ``loaded``)."""

    loaded: np.ndarray
    image: np.ndarray
    features: Tensor
    hash: str
    grid: tuple[int, int]

    @property
    def source_size(self) -> tuple[int, int]:
        return (int(self.loaded.shape[0]), int(self.loaded.shape[1]))


class ModelSession:
    """A network that compares images by pooled embeddings, ready to explain pairs.

    ``ModelSession(model, layer, ...)`` wraps any ``nn.Module``: ``layer`` names the submodule whose output
    ``(B, C, H, W)`` are the local features (None: timm's ``forward_features``). The embedding is
    ``normalize(head(pool(features)))``; ``pooling`` in avg | sum | max | gem (``p`` for GeM); ``head`` an
    affine map (``nn.Linear``, ``(W, b)``) or None. Images are resized keeping their aspect ratio so the
    shorter side is ``size`` px (None: native size), the longer at most ``max_aspect`` times that, both
    rounded to a multiple of the network's stride, then normalised by ``mean`` / ``std``. The options can also
    come as one :class:`SessionOptions` (``options=``; keyword options then change it).

    Features are cached by image content (``cache_size`` entries), so re-explaining a pair runs no network.

    Speed without changing the features (to float rounding: a test holds them to 1e-4 relative):
    ``channels_last`` (None: on when the network has a ``Conv2d``) stores the network's 4-D weights and its input
    batch channels-last, the layout oneDNN's (CPU) and cuDNN's (GPU) fast convolutions use; the network's weights
    are converted in place, as ``.to(device)`` moves them. ``fold_batchnorm`` (on by default) extracts features
    from a copy of the network whose batch norms are folded into their convolutions
    (:mod:`simvis_widgets.fusion`; the network itself is not changed: :attr:`model` is still the caller's, for
    gradients and training), costing one copy of the weights. ``fold_padding`` (on by default) lets timm's
    TensorFlow-style "same" convolutions pad inside the kernel instead of copying a padded input
    (:mod:`simvis_widgets.same_padding`), in the same copy. A session on the CPU also calls
    :func:`~simvis_widgets.runtime.tune_allocator` (process-wide; opt out with ``SIMVIS_MALLOC=system``).
    ``amp`` (off by default) computes in float16 on a GPU and bfloat16 on a CPU: faster where the hardware has
    them, but the features change beyond float rounding.
    The session assumes its network's weights do not change after it is built (its cache and
    :meth:`fingerprint` describe the weights it first saw): after training a model in place, build a new session
    (``variant()`` does).
    """

    options: SessionOptions
    """Everything that decides the embeddings (read-only properties below mirror its fields)."""
    model: nn.Module
    device: torch.device
    amp: bool
    cache_size: int
    channels_last: bool
    fold_batchnorm: bool
    fold_padding: bool
    folded_batchnorms: int
    """How many batch norms the inference copy has folded into their convolutions (0: the network runs as given)."""
    folded_paddings: int
    """How many same-padding convolutions of the inference copy pad inside the kernel."""
    _extract: Callable[[Tensor], Tensor]
    _mean_t: Tensor
    _std_t: Tensor
    _head: LinearHead | None

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        *,
        options: SessionOptions | None = None,
        device: str | torch.device | None = None,
        amp: bool = False,
        cache_size: int = 128,
        channels_last: bool | None = None,
        fold_batchnorm: bool = True,
        fold_padding: bool = True,
        **option_values: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        base = options if options is not None else SessionOptions(name=type(model).__name__)
        if layer is not None:
            option_values["layer"] = layer
        if option_values.get("name") is None:  # not given, or None: the options' label, else the class name
            option_values["name"] = base.name if options is not None else type(model).__name__
        opts = base.replace(**option_values, stride=None, channels=None) if option_values or options else base
        self._linear: CLSLinearisation | None = None
        if opts.approximate:
            try:
                self._linear = CLSLinearisation(model)
            except LinearisationError as err:
                raise ModelError(f"approximate=True: {err}") from None
            if opts.layer not in (None, self._linear.layer):
                raise ModelError(
                    f"approximate=True reads the tokens entering the last block ({self._linear.layer!r}), not {opts.layer!r}"
                )
            if opts.head is not None:
                raise ModelError("approximate=True explains the model's own head (forward_head); pass no head")
            opts = opts.replace(layer=self._linear.layer)
        self.device = resolve_device(device)
        # checked before the network is touched: a string such as "False" would otherwise count as on
        self.amp = _flag("amp", amp)
        self.fold_batchnorm, self.fold_padding = (
            _flag("fold_batchnorm", fold_batchnorm),
            _flag("fold_padding", fold_padding),
        )
        if not isinstance(cache_size, numbers.Integral) or isinstance(cache_size, bool) or cache_size < 0:
            raise ModelError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        self.cache_size = int(cache_size)
        if self.device.type == "cpu":
            tune_allocator()
        self.channels_last = (
            any(isinstance(m, nn.Conv2d) for m in model.modules())
            if channels_last is None
            else _flag("channels_last", channels_last)
        )
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._extract = make_extractor(self.model, opts.layer)
        self.options = opts.replace(layer=getattr(self._extract, "layer", opts.layer))
        # per channel, on the 0-255 pixel scale, laid out for an (N, H, W, 3) batch: x = (p - 255 mean) / (255 std)
        self._mean_t = torch.tensor(self.options.mean, dtype=torch.float32, device=self.device).mul_(255.0)
        self._std_t = torch.tensor(self.options.std, dtype=torch.float32, device=self.device).mul_(255.0)
        self._cache: OrderedDict[str, tuple[np.ndarray, Tensor]] = OrderedDict()
        channels, stride = self._probe()
        self.options = self.options.replace(channels=channels, stride=stride)
        head = self.options.head
        if head is not None and head.weight.shape[1] != channels:
            raise ModelError(
                f"head weight has shape {tuple(head.weight.shape)} but layer {self.options.layer!r} has {channels} channels"
            )
        self._head = head.to(self.device) if head is not None else None
        self.folded_batchnorms = self.folded_paddings = 0
        if (self.fold_batchnorm or self.fold_padding) and self._linear is None:
            self._use_folded_copy()

    def _use_folded_copy(self) -> None:
        """Extract features from a copy of the network with its batch norms and same paddings folded (see
        :mod:`simvis_widgets.fusion`), checked against the network on a random 224 x 224 input."""
        layer = self.options.layer
        example = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(self.device)
        if self.channels_last:
            example = example.contiguous(memory_format=torch.channels_last)
        found = inference_copy(
            self.model,
            lambda network, x: make_extractor(network, layer)(x),
            example,
            batchnorm=self.fold_batchnorm,
            padding=self.fold_padding,
        )
        if found is not None:
            self.folded_batchnorms, self.folded_paddings = found.folded_batchnorms, found.folded_paddings
            self._extract = make_extractor(found.network, layer)

    # ---------------------------------------------------------------------------------------------
    # Options (read-only views of self.options)
    # ---------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def layer(self) -> str | None:
        return self.options.layer

    @property
    def pooling(self) -> str:
        return self.options.pooling

    @property
    def p(self) -> float:
        return self.options.p

    @property
    def head(self) -> LinearHead | None:
        """The head on the session's device."""
        return self._head

    @property
    def normalize(self) -> bool:
        return self.options.normalize

    @property
    def size(self) -> int | None:
        return self.options.size

    @property
    def max_aspect(self) -> float:
        return self.options.max_aspect

    @property
    def approximate(self) -> bool:
        return self.options.approximate

    @property
    def channels(self) -> int:
        return int(self.options.channels or 0)

    @property
    def stride(self) -> int:
        return int(self.options.stride or 1)

    @functools.cached_property
    def weights_digest(self) -> str:
        """SHA-256 over the network's state dict (names, dtypes, shapes and values), computed once per session."""
        return digest(*(name.encode() + b"\0" + tensor_bytes(t) for name, t in self.model.state_dict().items()))

    def fingerprint(self) -> dict[str, Any]:
        """What must match for two sessions to give the same embeddings: :meth:`SessionOptions.describe` plus the
        network's class and :attr:`weights_digest`. JSON-ready; galleries store it and refuse another."""
        return {**self.options.describe(), "architecture": type(self.model).__name__, "weights": self.weights_digest}

    # ---------------------------------------------------------------------------------------------
    # Construction
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name: str = "efficientnet_lite0",
        pooling: str = "avg",
        *,
        pretrained: bool | str = True,
        weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> ModelSession:
        """A session on a named backbone: ``"efficientnet_lite0"`` (the embedded default: real ImageNet weights,
        offline), a torchvision name (``"resnet50"``, ``"vgg16"``, ...) or ``"timm:NAME"``.

        ``pretrained=False`` builds a random init without any download; ``weights`` loads a local file
        (``weights_only=True``); ``model_kwargs`` go to ``timm.create_model``. A timm ViT that pools its patch
        tokens (``model_kwargs={"global_pool": "avg"}``) is exact: its tokens are the local features and its
        ``fc_norm`` LayerNorm the head. Other keyword arguments go to :class:`ModelSession`.
        """
        model, spec = build_backbone(name, pretrained=pretrained, weights=weights, model_kwargs=model_kwargs)
        if spec.source == "timm" and getattr(model, "num_prefix_tokens", None) and not kwargs.get("approximate"):
            _, head = timm_head(model)  # a ViT: mean of its patch tokens, then its fc_norm
            kwargs.setdefault("head", head)
        kwargs.setdefault("mean", spec.mean)
        kwargs.setdefault("std", spec.std)
        kwargs.setdefault("name", name if (pretrained or weights) else f"{name} (random init)")
        return cls(model, spec.layer, pooling=pooling, **kwargs)

    def variant(self, **changes: Any) -> ModelSession:
        """A session on the same network object (no copy, no reload) with some options changed, e.g.
        ``session.variant(pooling="max")`` or ``variant(size=224, head=W)``; the :data:`RUNTIME_OPTIONS` may change
        too. The feature cache is not shared;
        the weights are hashed anew."""
        runtime = {k: changes.pop(k) for k in RUNTIME_OPTIONS if k in changes}
        if "name" not in changes and ("pooling" in changes or "p" in changes):
            pooling, p = changes.get("pooling", self.pooling), changes.get("p", self.p)
            label = f"GeM p={float(p):g}" if str(pooling).lower() == "gem" else pooling
            changes["name"] = f"{self.name}, {label}"
        if "layer" in changes and changes["layer"] == "forward_features":
            changes["layer"] = None
        options = self.options.replace(**changes)
        if options.layer == "forward_features":
            options = options.replace(layer=None)
        runtime = {name: getattr(self, name) for name in RUNTIME_OPTIONS} | runtime
        return ModelSession(self.model, options=options, **runtime)

    def _probe(self) -> tuple[int, int]:
        """Run a 224 x 224 input once: check the layer gives a spatial map (or patch tokens) and read its
        channels and stride."""
        self._token_stride: int | None = None
        probe = torch.zeros(1, 3, 224, 224, device=self.device)
        out = self.forward(probe)
        if out.dim() == 3:  # (B, N, C) tokens: a ViT. Patch tokens follow num_prefix_tokens (CLS, registers).
            n = out.shape[1] - self._prefix_tokens()
            side = int(round(n**0.5))
            if n <= 0 or side * side != n:
                raise ModelError(
                    f"layer {self.options.layer!r} of {self.options.name} outputs {out.shape[1]} tokens for a 224 x 224 input; after "
                    f"{self._prefix_tokens()} prefix token(s) they do not form a square patch grid"
                )
            self._token_stride = 224 // side
            return int(out.shape[2]), self._token_stride
        if out.dim() != 4:
            raise ModelError(
                f"layer {self.options.layer!r} of {self.options.name} outputs shape {tuple(out.shape)}: not a spatial feature map "
                "(B, C, H, W) or patch tokens (B, N, C). Pick a layer before global pooling."
            )
        return int(out.shape[1]), max(1, int(round(224 / out.shape[-1])))

    def _prefix_tokens(self) -> int:
        return int(getattr(self.model, "num_prefix_tokens", None) or 0)

    def _tokens_to_map(self, tokens: Tensor, input_size: tuple[int, int]) -> Tensor:
        """``(B, N, C)`` tokens -> ``(B, C, h, w)``: prefix tokens dropped, patch tokens on their grid."""
        stride = self._token_stride or 1
        h, w = input_size[0] // stride, input_size[1] // stride
        patches = tokens[:, self._prefix_tokens() :]
        if patches.shape[1] != h * w:
            raise ModelError(
                f"{self.options.name} gave {patches.shape[1]} patch tokens for a {input_size[0]}x{input_size[1]} input, expected "
                f"{h}x{w}; a timm ViT needs dynamic_img_size=True for inputs other than its training size"
            )
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

    # ---------------------------------------------------------------------------------------------
    # Images -> tensors
    # ---------------------------------------------------------------------------------------------

    def prepare(self, img: ImageLike) -> np.ndarray:
        """``img`` loaded, validated and resized as the network sees it (``H x W x 3`` uint8)."""
        return self.resize(load_image(img))

    def resize(self, loaded: np.ndarray) -> np.ndarray:
        """A loaded image (``H x W x 3`` uint8, as :func:`~simvis_widgets.images.load_image` gives) resized as the
        network sees it (see :func:`~simvis_widgets.images.resize_for_network`); anything else is an
        :class:`~simvis_widgets.errors.ImageInputError` (use :meth:`prepare` for other inputs)."""
        if not (
            isinstance(loaded, np.ndarray) and loaded.ndim == 3 and loaded.shape[2] == 3 and loaded.dtype == np.uint8
        ):
            what = f"shape {getattr(loaded, 'shape', None)}, dtype {getattr(loaded, 'dtype', type(loaded).__name__)}"
            raise ImageInputError(
                f"resize() takes a loaded H x W x 3 uint8 image, got {what}; use prepare() for others"
            )
        return resize_for_network(loaded, self.size, self.stride, self.max_aspect)

    def resizer(self) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`resize` as a picklable function of the image alone (for data-loader workers)."""
        return functools.partial(
            resize_for_network, short_side=self.size, stride=self.stride, max_aspect=self.max_aspect
        )

    def to_input(self, images: Sequence[np.ndarray]) -> Tensor:
        """Prepared images (``H x W x 3`` uint8, one size) as the network's input batch ``(B, 3, H, W)``: scaled to
        [0, 1] and normalised by the options' ``mean`` / ``std``, on the session's device (for gradient methods)."""
        pixels = torch.from_numpy(np.stack(images))
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        else:
            pixels = pixels.to(self.device)
        n, h, w, _ = pixels.shape
        # normalised in the (N, H, W, 3) layout it arrives in, whose NCHW view is channels-last as is; viewed as
        # rows of W x 3 values against the constants tiled W times, so the arithmetic runs along whole rows
        # (against an innermost axis of 3 it took twice as long); the values are the same
        rows = pixels.float().view(n * h, w * 3)
        batch = rows.sub_(self._mean_t.repeat(w)).div_(self._std_t.repeat(w)).view(n, h, w, 3).permute(0, 3, 1, 2)
        return batch if self.channels_last else batch.contiguous()

    def forward(self, x: Tensor) -> Tensor:
        """The network from an input batch (:meth:`to_input`) to its local features (float32; patch tokens of a
        ViT on their grid), without gradients and without checks: :meth:`batch_features` checks."""
        autocast = (
            torch.autocast(
                device_type=self.device.type, dtype=torch.float16 if self.device.type == "cuda" else torch.bfloat16
            )
            if self.amp
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = self._extract(x)
        if not isinstance(out, Tensor):
            raise ModelError(f"the feature layer of {self.name} returned {type(out).__name__}, not a tensor")
        if out.dim() == 3 and getattr(self, "_token_stride", None) and not self.approximate:
            out = self._tokens_to_map(out, (x.shape[-2], x.shape[-1]))
        return out.float().contiguous()

    def batch_features(self, prepared: Sequence[np.ndarray]) -> Tensor:
        """Local features ``(B, C, h, w)`` of images already resized by :meth:`prepare` / :meth:`resize` (all of one
        size): one forward pass, checked (shape, no NaN / inf). Not cached. A CLS-linearised session returns its
        tokens ``(B, N, C)``."""
        if not prepared:
            raise ModelError("batch_features needs at least one image")
        shapes = {im.shape for im in prepared}
        if len(shapes) != 1:
            raise ModelError(f"batch_features needs images of one size, got {sorted(shapes)}")
        feats = self.forward(self.to_input(prepared))
        if feats.dim() != (3 if self.approximate else 4):
            raise ModelError(f"layer {self.layer!r} of {self.name} gave shape {tuple(feats.shape)}, not (B, C, H, W)")
        # a finite sum means every value is finite (an inf or NaN stays non-finite through a sum); the full
        # check runs only where the sum is not finite, which finite values can also reach by overflow
        if not bool(torch.isfinite(feats.sum())) and not bool(torch.isfinite(feats).all()):
            raise ModelError(f"{self.name} produced NaN or infinite features (check the weights and the input)")
        return feats

    def input_key(self, loaded: np.ndarray) -> str:
        """Cache key of a loaded image: its content hash plus the resize settings (equal keys, equal inputs)."""
        return self._key_of(image_hash(loaded))

    def _key_of(self, content_hash: str) -> str:
        return digest(content_hash.encode(), f"{self.size}|{self.max_aspect}|{self.stride}".encode())

    # ---------------------------------------------------------------------------------------------
    # Features and embeddings
    # ---------------------------------------------------------------------------------------------

    def encode_many(self, images: Sequence[ImageLike]) -> list[Encoded]:
        """Each image as the network sees it with its local features, from the cache (no resize, no network)
        where possible.

        Misses run one image per forward pass on the CPU (measured faster there than a batch of two
        differently-laid-out images) and as same-size batches on accelerators."""
        loaded = [load_image(img) for img in images]
        hashes = [image_hash(raw) for raw in loaded]
        keys = [self._key_of(h) for h in hashes]
        found: dict[str, tuple[np.ndarray, Tensor]] = {}
        missing: dict[str, np.ndarray] = {}
        for key, raw in zip(keys, loaded):
            if key in self._cache:
                self._cache.move_to_end(key)
                found[key] = self._cache[key]
            elif key not in missing:
                missing[key] = self.resize(raw)
        groups: dict[object, list[str]] = {}
        for key, prepared in missing.items():
            groups.setdefault(prepared.shape if self.device.type != "cpu" else key, []).append(key)
        for group in groups.values():
            feats = self.batch_features([missing[k] for k in group])
            for key, f in zip(group, feats):
                f = f.clone() if len(group) > 1 else f  # a view would keep the whole batch alive in the cache
                found[key] = (missing[key], f)
                self._remember(key, found[key])
        out = []
        for raw, h, key in zip(loaded, hashes, keys):
            prepared, feats = found[key]
            grid = (prepared.shape[0] // self.stride, prepared.shape[1] // self.stride)
            out.append(Encoded(raw, prepared, feats, h, grid))
        return out

    def encode(self, img: ImageLike) -> Encoded:
        """:meth:`encode_many` for one image."""
        return self.encode_many([img])[0]

    def _remember(self, key: str, entry: tuple[np.ndarray, Tensor]) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    def features(self, img: ImageLike) -> Tensor:
        """Local features ``(C, H, W)`` of one image (cached by content)."""
        enc = self.encode(img)
        if self.approximate:  # the cache keeps every token (the CLS token is needed); show the patch grid
            return self._tokens_to_map(enc.features[None], enc.image.shape[:2])[0]
        return enc.features

    def embed_features(self, feats: Tensor) -> Tensor:
        """``(B, C, H, W)`` or ``(C, H, W)`` local features (as :meth:`batch_features` gives them) -> embedding(s):
        pool, head, L2 normalise (if ``normalize``)."""
        if self._linear is not None:
            with torch.inference_mode():
                e = self._linear.embedding(feats)
            return torch.nn.functional.normalize(e, dim=-1) if self.normalize else e
        _, e = pooled_embeddings(feats, self.pooling, self.p, self.head)
        return torch.nn.functional.normalize(e, dim=-1) if self.normalize else e

    def embed(self, img: ImageLike) -> Tensor:
        """The vector the network compares: ``normalize(head(pool(features)))`` (L2-normalised when the session
        compares by cosine, so the score is a dot product of two embeddings)."""
        return self.embed_features(self.encode(img).features)

    def embed_many(self, images: Iterable[ImageLike], batch_size: int = 16, progress: bool = True) -> Tensor:
        """Embeddings ``(K, D)`` of many images, in batches of same-size inputs, with a tqdm progress bar.
        Does not fill the feature cache; hands the batches' freed memory back to the system when done
        (:func:`~simvis_widgets.runtime.release_memory`)."""
        from tqdm.auto import tqdm

        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ModelError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        images = list(images)
        out: list[Tensor | None] = [None] * len(images)
        pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}

        def flush(group: list[tuple[int, np.ndarray]]) -> None:
            feats = self.batch_features([im for _, im in group])
            for (i, _), e in zip(group, self.embed_features(feats)):
                out[i] = e
            bar.update(len(group))
            group.clear()

        with tqdm(total=len(images), desc=f"embedding ({self.name})", unit="img", disable=not progress) as bar:
            for i, img in enumerate(images):
                prepared = self.prepare(img)
                group = pending.setdefault(prepared.shape, [])
                group.append((i, prepared))
                if len(group) >= batch_size:
                    flush(group)
            for group in pending.values():
                if group:
                    flush(group)
        release_memory()  # the batches' activations: the tuned allocator keeps freed memory until asked
        if not images:
            dim = self.head.weight.shape[0] if self.head is not None else self.channels
            return torch.empty(0, dim, device=self.device)
        return torch.stack([e for e in out if e is not None])

    # ---------------------------------------------------------------------------------------------
    # Explanations
    # ---------------------------------------------------------------------------------------------

    def explain(self, img_a: ImageLike, img_b: ImageLike) -> ExplainedPair:
        """The exact decomposition of this network's similarity of ``img_a`` and ``img_b``, with the images."""
        enc_a, enc_b = self.encode_many([img_a, img_b])
        return self.explain_encoded(enc_a, enc_b)

    def explain_triplet(self, anchor: ImageLike, positive: ImageLike, negative: ImageLike) -> ExplainedTriplet:
        """The pairs (anchor, positive) and (anchor, negative) explained from one forward pass of each image: where
        on the anchor the network prefers the positive (see :class:`~simvis_widgets.triplet.ExplainedTriplet`)."""
        enc_a, enc_p, enc_n = self.encode_many([anchor, positive, negative])
        return ExplainedTriplet(self.explain_encoded(enc_a, enc_p), self.explain_encoded(enc_a, enc_n))

    def explain_encoded(
        self,
        enc_a: Encoded,
        enc_b: Encoded | None = None,
        *,
        features_b: Tensor | None = None,
        image_b: np.ndarray | None = None,
    ) -> ExplainedPair:
        """:meth:`explain` from encoded images (:meth:`encode`); B may instead be stored ``features_b``
        ``(C, h, w)`` (a gallery's), with its image if known."""
        if enc_b is not None:
            features_b, image_b, size_b = enc_b.features, enc_b.image, enc_b.source_size
        elif features_b is not None:
            size_b = None
        else:
            raise ModelError("explain_encoded needs enc_b or features_b")
        if self._linear is not None:
            if enc_b is None:
                raise ModelError("an APPROXIMATE session explains encoded images only (it needs every token)")
            ex = self._linearised(enc_a, enc_b)
        else:
            ex = decompose(
                enc_a.features, features_b, self.pooling, self.p, self.normalize, self.head, check_values=enc_b is None
            )
        return ExplainedPair.of(
            ex, enc_a.image, image_b, source_size_a=enc_a.source_size, source_size_b=size_b, model_name=self.name
        )

    def _linearised(self, enc_a: Encoded, enc_b: Encoded):  # type: ignore[no-untyped-def]
        """The APPROXIMATE explanation of a CLS-token ViT (see :mod:`simvis_widgets.linearise`)."""
        assert self._linear is not None
        q_a, q_b = self._linear.contributions(enc_a.features), self._linear.contributions(enc_b.features)
        with torch.inference_mode():
            e_a, e_b = self._linear.embedding(enc_a.features), self._linear.embedding(enc_b.features)
        return from_contributions(
            q_a, q_b, e_a.clone(), e_b.clone(), enc_a.grid, enc_b.grid, self.normalize, exact=False
        )

    def __repr__(self) -> str:
        pooling = f"gem(p={self.p:g})" if self.pooling == "gem" else self.pooling
        return (
            f"ModelSession({self.name!r}, layer={self.layer!r}, pooling={pooling}, "
            f"{'cosine' if self.normalize else 'dot'}, head={'yes' if self.head is not None else 'no'}, "
            f"size={self.size}, channels={self.channels}, stride={self.stride}, device={self.device}"
            + (", channels_last" if self.channels_last else "")
            + (f", {self.folded_batchnorms} batch norms folded" if self.folded_batchnorms else "")
            + (f", {self.folded_paddings} same paddings folded" if self.folded_paddings else "")
            + (", APPROXIMATE (CLS linearisation)" if self.approximate else "")
            + ")"
        )


def snapshots(
    model_factory: Callable[[], nn.Module],
    checkpoint_paths: Sequence[str | os.PathLike[str]],
    layer: str | None = None,
    labels: Sequence[str] | None = None,
    like: ModelSession | None = None,
    **session_options: Any,
) -> list[ModelSession]:
    """One session per checkpoint (e.g. one per training epoch), in the order given: ``model_factory()`` builds
    the architecture, each file's state dict is loaded into it with ``torch.load(weights_only=True)``.
    ``like``: a session whose options (layer, pooling, head, preprocessing) and device the snapshots copy;
    ``session_options`` (pooling, size, mean, std, head, device ...) go to :class:`ModelSession` and win over it."""
    paths = [Path(p) for p in checkpoint_paths]
    if not paths:
        raise ModelError("no checkpoints given")
    if labels is not None and len(labels) != len(paths):
        raise ModelError(f"{len(labels)} labels for {len(paths)} checkpoints")
    runtime = {k: session_options.pop(k) for k in RUNTIME_OPTIONS if k in session_options}
    if like is not None:
        runtime = {name: getattr(like, name) for name in RUNTIME_OPTIONS if name != "cache_size"} | runtime
    base = like.options if like is not None else None
    sessions = []
    for i, path in enumerate(paths):
        model = model_factory()
        if not isinstance(model, nn.Module):
            raise ModelError(f"model_factory() returned a {type(model).__name__}, not a torch.nn.Module")
        state = load_state_dict_file(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(
                f"checkpoint '{path}' does not fit the model from model_factory: {str(err)[:300]}"
            ) from None
        name = labels[i] if labels is not None else path.stem
        chosen_layer = layer if layer is not None else (base.layer if base is not None else None)
        if chosen_layer == "forward_features":
            chosen_layer = None
        sessions.append(ModelSession(model, chosen_layer, options=base, name=name, **session_options, **runtime))
    return sessions
