"""An APPROXIMATE decomposition for ViTs that compare their CLS token (no exact one exists: the CLS token mixes
the patches non-linearly through attention).

Local features are the tokens entering the last transformer block, ``t_i``. The embedding is
``e = head(norm(block(t))[CLS])``. Each patch token's contribution vector is the first-order (Taylor) term

    q[i] = J_i t_i,    J_i = d e / d t_i,

computed with every LayerNorm's mean and standard deviation held fixed (per-token constants, as the exact
path treats a pooled LayerNorm). Without that, LayerNorm's scale invariance makes ``sum_i J_i t_i`` vanish
(measured: |sum q| / |e| ~ 1e-7 on a ViT), and the map would show nothing. The CLS token's own term and the
higher-order remainder belong to no patch: the explanation reports them as its global term, so
``map sum + global term = score`` still holds, and it is labelled ``exact=False`` (APPROXIMATE) everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .errors import LinearisationError


@contextlib.contextmanager
def frozen_statistics(norms: list[nn.LayerNorm]) -> Iterator[None]:
    """LayerNorms whose per-token mean and std are constants for differentiation (values unchanged)."""
    originals = [norm.forward for norm in norms]

    def frozen(norm: nn.LayerNorm):  # type: ignore[no-untyped-def]
        def forward(x: Tensor) -> Tensor:
            mean = x.mean(dim=-1, keepdim=True).detach()
            std = torch.sqrt(x.var(dim=-1, unbiased=False, keepdim=True) + norm.eps).detach()
            y = (x - mean) / std
            if norm.weight is not None:
                y = y * norm.weight
            if norm.bias is not None:
                y = y + norm.bias
            return y

        return forward

    try:
        for norm in norms:
            norm.forward = frozen(norm)  # type: ignore[method-assign]
        yield
    finally:
        for norm, original in zip(norms, originals):
            norm.forward = original  # type: ignore[method-assign]


class CLSLinearisation:
    """First-order contributions of the patch tokens entering a timm ViT's last block to its CLS embedding."""

    def __init__(self, model: nn.Module) -> None:
        blocks = getattr(model, "blocks", None)
        if blocks is None or not hasattr(model, "forward_head") or not hasattr(model, "norm"):
            raise LinearisationError(
                f"{type(model).__name__} is not a timm VisionTransformer (blocks, norm, forward_head)"
            )
        if len(blocks) < 2:
            raise LinearisationError(
                "the ViT needs at least two blocks (the tokens entering the last one are the features)"
            )
        self.prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        if self.prefix < 1:
            raise LinearisationError(
                "the ViT has no CLS token: pool its patch tokens exactly instead (global_pool='avg')"
            )
        self.model = model
        self.last = blocks[-1]
        self.layer = f"blocks.{len(blocks) - 2}"
        self.norms = [
            m
            for m in (*self.last.modules(), model.norm, getattr(model, "fc_norm", None))
            if isinstance(m, nn.LayerNorm)
        ]

    def embedding(self, tokens: Tensor) -> Tensor:
        """``(B, N, C)`` or ``(N, C)`` tokens entering the last block -> the model's pre-logits embedding."""
        batch = tokens if tokens.dim() == 3 else tokens[None]
        out: Tensor = self.model.forward_head(self.model.norm(self.last(batch)), pre_logits=True)  # type: ignore[operator]
        return out if tokens.dim() == 3 else out[0]

    def contributions(self, tokens: Tensor, chunk_size: int = 32) -> Tensor:
        """``(N_patches, D)``: ``q[i] = J_i t_i`` for every patch token (forward-mode, batched over tokens)."""
        from torch.func import jvp, vmap

        tokens = tokens.detach().clone().float()  # a normal tensor, even if it came from inference mode
        n, _ = tokens.shape
        patches = torch.arange(self.prefix, n, device=tokens.device)
        tangents = torch.zeros(n - self.prefix, *tokens.shape, device=tokens.device)
        tangents[torch.arange(n - self.prefix, device=tokens.device), patches] = tokens[patches]
        attention = getattr(self.last, "attn", None)
        fused = getattr(attention, "fused_attn", None)
        try:
            if attention is not None and fused is not None:
                attention.fused_attn = False  # plain matmul + softmax: forward-mode AD supports it everywhere
            with frozen_statistics(self.norms), torch.enable_grad():
                return vmap(lambda t: jvp(self.embedding, (tokens,), (t,))[1], chunk_size=chunk_size)(tangents).detach()
        finally:
            if attention is not None and fused is not None:
                attention.fused_attn = fused
