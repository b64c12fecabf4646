"""An APPROXIMATE decomposition for text models that compare their CLS token (no exact one exists: attention
mixes the tokens non-linearly into the CLS position).

The same first-order rule as :mod:`simvis_widgets.linearise` uses for CLS-token ViTs, applied to a BERT-like
encoder: the local features are the tokens entering the last transformer layer, ``t_i``; the embedding is
``e = head(layer(t)[CLS])``; token ``i``'s contribution vector is

    q[i] = J_i t_i,    J_i = d e / d t_i,

taken with every LayerNorm's mean and standard deviation in that layer held fixed (per-token constants; without
that, LayerNorm's scale invariance makes the contributions nearly cancel). Every token is a location, the
``[CLS]`` token included. What no token carries (the higher-order remainder) becomes the explanation's global
term, so ``map sum + global term = score`` still holds, and the result is labelled ``exact=False``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from .decompose import LinearHead
from .errors import ModelError
from .linearise import frozen_statistics


def frozen_layer_norms(module: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Every ``nn.LayerNorm`` inside ``module`` computes its usual values with its per-token mean and standard
    deviation detached (constants for differentiation, forward or reverse mode); restored on exit
    (:func:`~simvis_widgets.linearise.frozen_statistics`)."""
    return frozen_statistics([m for m in module.modules() if isinstance(m, nn.LayerNorm)])


class TextCLSLinearisation:
    """First-order contributions of the tokens entering a BERT-like encoder's last layer to its CLS embedding
    (followed by an affine ``head``, or none)."""

    def __init__(self, encoder_model: nn.Module, head: LinearHead | None) -> None:
        layers = getattr(getattr(encoder_model, "encoder", None), "layer", None)
        if not isinstance(layers, nn.ModuleList) or len(layers) < 1:
            raise ModelError(
                f"allow_cls=True needs a BERT-like encoder (.encoder.layer); {type(encoder_model).__name__} has none"
            )
        self.model = encoder_model
        self.last: nn.Module = layers[-1]
        self.head = head

    def embedding(self, tokens: Tensor) -> Tensor:
        """``(B, N, C)`` or ``(N, C)`` tokens entering the last layer (one passage each, no padding) -> the
        embedding the model compares, before any normalisation."""
        batch = tokens if tokens.dim() == 3 else tokens[None]
        out = self.last(batch)
        hidden = out[0] if isinstance(out, tuple) else out
        e = hidden[:, 0]
        if self.head is not None:
            e = e @ self.head.weight.to(e).T
            if self.head.bias is not None:
                e = e + self.head.bias.to(e)
        return e if tokens.dim() == 3 else e[0]

    def contributions(self, tokens: Tensor) -> Tensor:
        """``(N, D)``: ``q[i] = J_i t_i`` for every token, in one forward-mode pass over ``N`` copies of the
        passage (copy ``i`` carries the tangent ``t_i`` at position ``i`` only)."""
        import torch.autograd.forward_ad as fwAD

        tokens = tokens.detach().clone().float()
        n = tokens.shape[0]
        primal = tokens.expand(n, *tokens.shape).contiguous()
        tangent = torch.zeros_like(primal)
        index = torch.arange(n, device=tokens.device)
        tangent[index, index] = tokens
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # the math attention kernel is made of differentiable ops; the fused ones have no forward-mode derivative
        with frozen_layer_norms(self.last), sdpa_kernel(SDPBackend.MATH), fwAD.dual_level(), torch.no_grad():
            out = self.embedding(fwAD.make_dual(primal, tangent))
            q = fwAD.unpack_dual(out).tangent
        if q is None:
            raise ModelError("the last layer's output does not depend on its input tokens: nothing to linearise")
        return q.detach()
