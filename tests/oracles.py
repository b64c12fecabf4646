"""Independent oracles for the decomposition: written from the definitions with torch's own pooling ops
and explicit loops, sharing no code with ``simvis_widgets.decompose``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6


def torch_pool(x: Tensor, pooling: str, p: float = 3.0) -> Tensor:
    """``(C, H, W)`` -> ``(C,)`` with torch's pooling layers (what a network would run)."""
    if pooling == "avg":
        return F.adaptive_avg_pool2d(x[None], 1).flatten()
    if pooling == "max":
        return F.adaptive_max_pool2d(x[None], 1).flatten()
    if pooling == "sum":
        return x.sum(dim=(1, 2))
    if pooling == "gem":  # the standard GeM layer (cirtorch / timm)
        return F.avg_pool2d(x.clamp(min=EPS).pow(p)[None], (x.shape[1], x.shape[2])).pow(1.0 / p).flatten()
    raise ValueError(pooling)


def loop_shares(x: Tensor, pooling: str, p: float = 3.0) -> Tensor:
    """``(N, C)`` shares built location by location and channel by channel (float64)."""
    c, h, w = x.shape
    n = h * w
    locs = x.reshape(c, n).T.double()
    f = torch_pool(x.double(), pooling, p)
    r = torch.zeros(n, c, dtype=torch.float64)
    for k in range(c):
        if pooling == "avg":
            r[:, k] = locs[:, k] / n
        elif pooling == "sum":
            r[:, k] = locs[:, k]
        elif pooling == "max":
            peak = max(float(v) for v in locs[:, k])
            tied = [i for i in range(n) if float(locs[i, k]) == peak]
            for i in tied:
                r[i, k] = f[k] / len(tied)
        elif pooling == "gem":
            powered = [max(float(v), EPS) ** p for v in locs[:, k]]
            total = sum(powered)
            for i in range(n):
                r[i, k] = f[k] * powered[i] / total
    return r


def brute_force(
    xa: Tensor, xb: Tensor, pooling: str, p: float, normalize: bool, weight: Tensor | None, bias: Tensor | None
) -> tuple[Tensor, float]:
    """Pairwise matrix by a double loop over locations, and the score the network computes."""
    ra, rb = loop_shares(xa, pooling, p), loop_shares(xb, pooling, p)
    fa, fb = torch_pool(xa.double(), pooling, p), torch_pool(xb.double(), pooling, p)
    if weight is not None:
        W = weight.double()
        ra, rb = ra @ W.T, rb @ W.T
        fa, fb = W @ fa, W @ fb
    if bias is not None:
        fa, fb = fa + bias.double(), fb + bias.double()
    scale = 1.0 / float(fa.norm() * fb.norm()) if normalize else 1.0
    score = float(F.cosine_similarity(fa, fb, dim=0)) if normalize else float(fa @ fb)
    P = torch.zeros(ra.shape[0], rb.shape[0], dtype=torch.float64)
    for i in range(ra.shape[0]):
        for j in range(rb.shape[0]):
            P[i, j] = sum(float(ra[i, k]) * float(rb[j, k]) for k in range(ra.shape[1])) * scale
    return P, score


def grad_times_activation(
    xa: Tensor, xb: Tensor, pooling: str, p: float, normalize: bool, weight: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Gradient x activation of the score w.r.t. both feature maps, norms detached (no bias): the shares
    maps of method.md for any 1-homogeneous pooling."""
    xa = xa.detach().double().requires_grad_(True)
    xb = xb.detach().double().requires_grad_(True)
    ea, eb = torch_pool(xa, pooling, p), torch_pool(xb, pooling, p)
    if weight is not None:
        ea, eb = weight.double() @ ea, weight.double() @ eb
    s = ea @ eb
    if normalize:
        s = s / (ea.norm().detach() * eb.norm().detach())
    ga, gb = torch.autograd.grad(s, (xa, xb))
    return (ga * xa).sum(0).detach(), (gb * xb).sum(0).detach()
