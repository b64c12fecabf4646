"""What the gradient baselines of ``bench_explain`` and ``bench_faithfulness`` share: the session's embedding as a
differentiable module (Grad-CAM and Captum need gradients, which ``session.forward`` does not keep), the
Grad-CAM targets, the submodule whose output is the feature map, and how maps are compared with ours."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simvis_widgets import ModelSession
from simvis_widgets.decompose import pool
from simvis_widgets.models import make_extractor

PACKAGES = ("grad-cam", "captum", "timm", "torchvision")
"""The distributions whose versions the gradient benchmarks report."""


class EmbeddingNet(nn.Module):
    """Image tensor ``(B, 3, H, W)`` (``session.to_input``) -> the session's pooled embedding ``(B, D)`` (head
    applied if any), without L2 normalisation and without ``inference_mode``, so gradients flow."""

    def __init__(self, session: ModelSession) -> None:
        super().__init__()
        self.model = session.model  # a submodule: Grad-CAM reads the device from its parameters
        self.extract: Callable[[Tensor], Tensor] = make_extractor(session.model, session.layer)
        self.pooling = session.pooling
        self.p = session.p
        self.head = session.head

    def forward(self, x: Tensor) -> Tensor:
        feats = self.extract(x)
        e = pool(feats.flatten(2).transpose(1, 2), self.pooling, self.p)  # avg: mean over H, W
        if self.head is not None:
            e = e @ self.head.weight.T
            if self.head.bias is not None:
                e = e + self.head.bias
        return e


class DotTarget:
    """Grad-CAM target: the dot product of the output embedding with a fixed (detached) embedding."""

    def __init__(self, other: Tensor) -> None:
        self.other = other.detach()

    def __call__(self, model_output: Tensor) -> Tensor:
        return (model_output * self.other).sum(-1)


class CosTarget:
    """Grad-CAM target: cosine similarity of the output embedding with a fixed (detached) embedding."""

    def __init__(self, other: Tensor) -> None:
        self.other = other.detach()

    def __call__(self, model_output: Tensor) -> Tensor:
        return F.cosine_similarity(model_output, self.other, dim=-1)


def feature_module(session: ModelSession, net: EmbeddingNet) -> tuple[str, nn.Module, bool]:
    """The submodule whose output is the session's feature map: (name, module, output equals the features)."""
    module = getattr(net.extract, "module", None)
    if isinstance(module, nn.Module):
        return str(session.layer), module, True
    named = dict(session.model.named_modules())
    probe = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(session.device)
    reference = session.forward(probe)
    fallback: tuple[str, nn.Module, bool] | None = None
    for name in ("bn2", "conv_head"):
        if name not in named:
            continue
        captured: list[Tensor] = []
        handle = named[name].register_forward_hook(lambda _m, _i, out, into=captured: into.append(out.detach().clone()))
        try:
            with torch.no_grad():
                net.extract(probe)
        finally:
            handle.remove()
        if captured and captured[-1].shape == reference.shape:
            if torch.allclose(captured[-1].float(), reference, atol=1e-5):
                return name, named[name], True
            fallback = fallback or (name, named[name], False)
    if fallback is None:
        raise RuntimeError(f"no submodule of {session.name} outputs the feature map {tuple(reference.shape)}")
    return fallback


def corr(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """Pearson correlation of two maps (flattened); NaN when either is constant."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def to_grid(m: Tensor | np.ndarray, grid: Sequence[int]) -> Tensor:
    """Average an ``(H, W)`` pixel map over the feature cells (exact when the cells tile the input)."""
    t = torch.as_tensor(np.asarray(m, dtype=np.float32)).reshape(1, 1, *np.asarray(m).shape[-2:])
    return F.adaptive_avg_pool2d(t, tuple(int(g) for g in grid))[0, 0]
