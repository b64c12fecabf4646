"""A model session: backbone truncated at a feature layer + pooling + optional head + normalisation +
preprocessing, on a device, with a feature cache. Images go in; features, embeddings and
:class:`~simvis_widgets.decompose.Explanation` objects come out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections import OrderedDict
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .decompose import (
    Explanation,
    LinearHead,
    check_pooling,
    decompose,
    from_contributions,
    pooled_embeddings,
)
from .images import ImageLike, load_image, resize_for_network
from .linearise import CLSLinearisation, LinearisationError
from .models import (
    DEFAULT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelError,
    build_backbone,
    make_extractor,
    timm_head,
)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ModelSession:
    """A network that compares images by pooled embeddings, ready to explain pairs.

    ``ModelSession(model, layer, ...)`` wraps any ``nn.Module``: ``layer`` names the submodule whose output
    ``(B, C, H, W)`` are the local features (None: timm's ``forward_features``). The embedding is
    ``normalize(head(pool(features)))``; ``pooling`` in avg | sum | max | gem (``p`` for GeM); ``head`` an
    affine map (``nn.Linear``, ``(W, b)``) or None. Images are resized keeping their aspect ratio so the
    shorter side is ``size`` px (None: native size), the longer at most ``max_aspect`` times that, both
    rounded to a multiple of the network's stride, then normalised by ``mean`` / ``std``.

    Features are cached by image content (``cache_size`` entries), so re-explaining a pair runs no network.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        *,
        pooling: str = "avg",
        p: float = 3.0,
        head: Any = None,
        normalize: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        size: int | None = DEFAULT_SIZE,
        max_aspect: float = 3.0,
        device: str | torch.device | None = None,
        amp: bool = False,
        name: str | None = None,
        cache_size: int = 128,
        approximate: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.approximate = bool(approximate)
        self._linear: CLSLinearisation | None = None
        if self.approximate:
            try:
                self._linear = CLSLinearisation(model)
            except LinearisationError as err:
                raise ModelError(f"approximate=True: {err}") from None
            if layer not in (None, self._linear.layer):
                raise ModelError(f"approximate=True reads the tokens entering the last block ({self._linear.layer!r}), not {layer!r}")
            if head is not None:
                raise ModelError("approximate=True explains the model's own head (forward_head); pass no head")
            layer = self._linear.layer
        self.pooling = check_pooling(pooling, p)
        self.p = float(p)
        self.head = LinearHead.coerce(head)
        self.normalize = bool(normalize)
        self.size = size
        self.max_aspect = float(max_aspect)
        self.device = torch.device(device) if device is not None else default_device()
        self.amp = bool(amp)
        self.name = name or type(model).__name__
        self.model = model.eval().to(self.device)
        self._extract = make_extractor(self.model, layer)
        self.layer = getattr(self._extract, "layer", layer)
        self._mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._cache: OrderedDict[str, tuple[np.ndarray, Tensor]] = OrderedDict()
        self.cache_size = int(cache_size)
        self.channels, self.stride = self._probe()
        if self.head is not None and self.head.weight.shape[1] != self.channels:
            raise ModelError(
                f"head weight has shape {tuple(self.head.weight.shape)} but layer {self.layer!r} has {self.channels} channels"
            )
        if self.head is not None:
            self.head = dataclasses.replace(self.head, weight=self.head.weight.to(self.device),
                                            bias=None if self.head.bias is None else self.head.bias.to(self.device))

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
    ) -> "ModelSession":
        """A session on a named backbone: ``"efficientnet_lite0"`` (the embedded default: real ImageNet weights,
        offline), a torchvision name (``"resnet50"``, ``"vgg16"``, ...) or ``"timm:NAME"``.

        ``pretrained=False`` builds a random init without any download; ``weights`` loads a local file
        (``weights_only=True``); ``model_kwargs`` go to ``timm.create_model``. A timm ViT that pools its patch
        tokens (``model_kwargs={"global_pool": "avg"}``) is exact: its tokens are the local features and its
        ``fc_norm`` LayerNorm the head. Other keyword arguments go to :class:`ModelSession`.
        """
        model, spec = build_backbone(name, pretrained=pretrained, weights=weights, model_kwargs=model_kwargs)
        if spec.source == "timm" and getattr(model, "num_prefix_tokens", 0) and not kwargs.get("approximate"):
            _, head = timm_head(model)  # a ViT: mean of its patch tokens, then its fc_norm
            kwargs.setdefault("head", head)
        kwargs.setdefault("mean", spec.mean)
        kwargs.setdefault("std", spec.std)
        kwargs.setdefault("name", name if (pretrained or weights) else f"{name} (random init)")
        return cls(model, spec.layer, pooling=pooling, **kwargs)

    def variant(self, **changes: Any) -> "ModelSession":
        """A session on the same network object (no copy, no reload) with some options changed, e.g.
        ``session.variant(pooling="max")`` or ``variant(size=224, head=W)``. The feature cache is not shared."""
        options: dict[str, Any] = dict(
            pooling=self.pooling, p=self.p, head=self.head, normalize=self.normalize,
            mean=self._mean.flatten().tolist(), std=self._std.flatten().tolist(), size=self.size,
            max_aspect=self.max_aspect, device=self.device, amp=self.amp, name=self.name, cache_size=self.cache_size,
            approximate=self.approximate,
        )
        unknown = set(changes) - set(options) - {"layer"}
        if unknown:
            raise TypeError(f"variant() got unknown option(s): {', '.join(sorted(unknown))}")
        layer = changes.pop("layer", self.layer)
        options.update(changes)
        if "name" not in changes and ("pooling" in changes or "p" in changes):
            pooling = options["pooling"]
            options["name"] = f"{self.name}, {'GeM p=%g' % options['p'] if pooling == 'gem' else pooling}"
        return ModelSession(self.model, layer, **options)

    def _probe(self) -> tuple[int, int]:
        """Run a 224 x 224 input once: check the layer gives a spatial map (or patch tokens) and read its
        channels and stride."""
        self._token_stride: int | None = None
        probe = torch.zeros(1, 3, 224, 224, device=self.device)
        out = self._forward(probe)
        if out.dim() == 3:  # (B, N, C) tokens: a ViT. Patch tokens follow num_prefix_tokens (CLS, registers).
            n = out.shape[1] - self._prefix_tokens()
            side = int(round(n ** 0.5))
            if n <= 0 or side * side != n:
                raise ModelError(
                    f"layer {self.layer!r} of {self.name} outputs {out.shape[1]} tokens for a 224 x 224 input; after "
                    f"{self._prefix_tokens()} prefix token(s) they do not form a square patch grid"
                )
            self._token_stride = 224 // side
            return int(out.shape[2]), self._token_stride
        if out.dim() != 4:
            raise ModelError(
                f"layer {self.layer!r} of {self.name} outputs shape {tuple(out.shape)}: not a spatial feature map "
                "(B, C, H, W) or patch tokens (B, N, C). Pick a layer before global pooling."
            )
        return int(out.shape[1]), max(1, int(round(224 / out.shape[-1])))

    def _prefix_tokens(self) -> int:
        return int(getattr(self.model, "num_prefix_tokens", 0) or 0)

    def _tokens_to_map(self, tokens: Tensor, input_size: tuple[int, int]) -> Tensor:
        """``(B, N, C)`` tokens -> ``(B, C, h, w)``: prefix tokens dropped, patch tokens on their grid."""
        stride = self._token_stride or 1
        h, w = input_size[0] // stride, input_size[1] // stride
        patches = tokens[:, self._prefix_tokens():]
        if patches.shape[1] != h * w:
            raise ModelError(
                f"{self.name} gave {patches.shape[1]} patch tokens for a {input_size[0]}x{input_size[1]} input, expected "
                f"{h}x{w}; a timm ViT needs dynamic_img_size=True for inputs other than its training size"
            )
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

    # ---------------------------------------------------------------------------------------------
    # Images -> tensors
    # ---------------------------------------------------------------------------------------------

    def prepare(self, img: ImageLike) -> np.ndarray:
        """``img`` loaded, validated and resized as the network sees it (``H x W x 3`` uint8)."""
        return self._resize(load_image(img))

    def _resize(self, raw: np.ndarray) -> np.ndarray:
        return resize_for_network(raw, self.size, self.stride, self.max_aspect)

    def _to_input(self, images: Sequence[np.ndarray]) -> Tensor:
        batch = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (batch - self._mean) / self._std

    def _forward(self, x: Tensor) -> Tensor:
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=torch.float16 if self.device.type == "cuda" else torch.bfloat16)
            if self.amp else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = self._extract(x)
        if not isinstance(out, Tensor):
            raise ModelError(f"the feature layer of {self.name} returned {type(out).__name__}, not a tensor")
        if out.dim() == 3 and getattr(self, "_token_stride", None) and not self.approximate:
            out = self._tokens_to_map(out, (x.shape[-2], x.shape[-1]))
        return out.float()

    def _key(self, raw: np.ndarray) -> str:
        """Content hash of a loaded image plus the resize settings: equal keys give equal network inputs."""
        settings = f"{raw.shape}|{self.size}|{self.max_aspect}|{self.stride}".encode()
        return hashlib.sha1(raw.tobytes() + settings).hexdigest()

    # ---------------------------------------------------------------------------------------------
    # Features and embeddings
    # ---------------------------------------------------------------------------------------------

    def _lookup(self, images: Sequence[ImageLike]) -> list[tuple[np.ndarray, Tensor]]:
        """(network input image, features) per image: from the cache (no resize, no network) where possible.

        Misses run one image per forward pass on the CPU (measured faster there than a batch of two
        differently-laid-out images) and as same-size batches on accelerators."""
        raws = [load_image(img) for img in images]
        keys = [self._key(raw) for raw in raws]
        found: dict[str, tuple[np.ndarray, Tensor]] = {}
        missing: dict[str, np.ndarray] = {}
        for key, raw in zip(keys, raws):
            if key in self._cache:
                self._cache.move_to_end(key)
                found[key] = self._cache[key]
            elif key not in missing:
                missing[key] = self._resize(raw)
        groups: dict[object, list[str]] = {}
        for key, prepared in missing.items():
            groups.setdefault(prepared.shape if self.device.type != "cpu" else key, []).append(key)
        for group in groups.values():
            feats = self._forward(self._to_input([missing[k] for k in group]))
            self._check_features(feats)
            for key, f in zip(group, feats):
                f = f.clone() if len(group) > 1 else f  # a view would keep the whole batch alive in the cache
                found[key] = (missing[key], f)
                self._remember(key, found[key])
        return [found[k] for k in keys]

    def _check_features(self, feats: Tensor) -> None:
        if feats.dim() != (3 if self.approximate else 4):
            raise ModelError(f"layer {self.layer!r} of {self.name} gave shape {tuple(feats.shape)}, not (B, C, H, W)")
        if not bool(torch.isfinite(feats).all()):
            raise ModelError(f"{self.name} produced NaN or infinite features (check the weights and the input)")

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
        prepared, feats = self._lookup([img])[0]
        if self.approximate:  # the cache keeps every token (the CLS token is needed); show the patch grid
            return self._tokens_to_map(feats[None], prepared.shape[:2])[0]
        return feats

    def _embed_features(self, feats: Tensor) -> Tensor:
        """``(B, C, H, W)`` or ``(C, H, W)`` -> embedding(s): pool, head, L2 normalise (if ``normalize``)."""
        if self._linear is not None:
            with torch.inference_mode():
                e = self._linear.embedding(feats)
            return torch.nn.functional.normalize(e, dim=-1) if self.normalize else e
        _, e = pooled_embeddings(feats, self.pooling, self.p, self.head)
        return torch.nn.functional.normalize(e, dim=-1) if self.normalize else e

    def embed(self, img: ImageLike) -> Tensor:
        """The vector the network compares: ``normalize(head(pool(features)))`` (L2-normalised when the session
        compares by cosine, so the score is a dot product of two embeddings)."""
        return self._embed_features(self._lookup([img])[0][1])

    def embed_many(self, images: Iterable[ImageLike], batch_size: int = 16, progress: bool = True) -> Tensor:
        """Embeddings ``(K, D)`` of many images, in batches of same-size inputs, with a tqdm progress bar.
        Does not fill the feature cache."""
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = list(images)
        out: list[Tensor | None] = [None] * len(images)
        pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}

        def flush(group: list[tuple[int, np.ndarray]]) -> None:
            feats = self._forward(self._to_input([im for _, im in group]))
            self._check_features(feats)
            for (i, _), e in zip(group, self._embed_features(feats)):
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
        if not images:
            dim = self.head.weight.shape[0] if self.head is not None else self.channels
            return torch.empty(0, dim, device=self.device)
        return torch.stack([e for e in out if e is not None])

    # ---------------------------------------------------------------------------------------------
    # Explanations
    # ---------------------------------------------------------------------------------------------

    def explain(self, img_a: ImageLike, img_b: ImageLike) -> Explanation:
        """The exact decomposition of this network's similarity of ``img_a`` and ``img_b``."""
        raw_a, raw_b = load_image(img_a), load_image(img_b)
        (prepared_a, feats_a), (prepared_b, feats_b) = self._lookup([raw_a, raw_b])
        if self._linear is not None:
            ex = self._linearised(prepared_a, feats_a, prepared_b, feats_b)
        else:
            ex = decompose(feats_a, feats_b, self.pooling, self.p, self.normalize, self.head, check_values=False)
        ex.source_size_a, ex.source_size_b = raw_a.shape[:2], raw_b.shape[:2]
        ex.model_name = self.name
        ex.image_a, ex.image_b = prepared_a, prepared_b
        return ex

    def _linearised(self, prepared_a: np.ndarray, tokens_a: Tensor, prepared_b: np.ndarray, tokens_b: Tensor) -> Explanation:
        """The APPROXIMATE explanation of a CLS-token ViT (see :mod:`simvis_widgets.linearise`)."""
        assert self._linear is not None
        grids = [(im.shape[0] // self.stride, im.shape[1] // self.stride) for im in (prepared_a, prepared_b)]
        q_a, q_b = self._linear.contributions(tokens_a), self._linear.contributions(tokens_b)
        with torch.inference_mode():
            e_a, e_b = self._linear.embedding(tokens_a), self._linear.embedding(tokens_b)
        return from_contributions(q_a, q_b, e_a.clone(), e_b.clone(), grids[0], grids[1], self.normalize, exact=False)

    def __repr__(self) -> str:
        pooling = f"gem(p={self.p:g})" if self.pooling == "gem" else self.pooling
        return (
            f"ModelSession({self.name!r}, layer={self.layer!r}, pooling={pooling}, "
            f"{'cosine' if self.normalize else 'dot'}, head={'yes' if self.head is not None else 'no'}, "
            f"size={self.size}, channels={self.channels}, stride={self.stride}, device={self.device}"
            + (", APPROXIMATE (CLS linearisation)" if self.approximate else "") + ")"
        )
