"""TensorFlow's "same" padding folded into the convolution, so that no padded copy of the input is made.

TensorFlow pads a convolution's input by ``total = max((ceil(n / s) - 1) s + (k - 1) d + 1 - n, 0)`` along each
axis of size ``n`` (kernel ``k``, stride ``s``, dilation ``d``): ``before = total // 2`` and
``after = total - before``. timm's ``Conv2dSame`` (the ``tf_`` networks, EfficientNet-Lite among them) does it by
copying the input into a padded tensor before every strided convolution (``F.pad``): on EfficientNet-Lite0 at batch
16 that copy is 15 % of the CPU forward pass.

Torch's convolutions pad symmetrically inside the kernel, without a copy. Where ``after == before`` that is the
same convolution. Where ``after == before + 1`` (an odd total: every stride-2 layer on an even input) it is a
convolution with one more tap at the start of that axis, whose weight is zero, and symmetric padding
``before + 1``: output ``o`` then reads inputs ``s o - before - 1 ... s o - before + k - 1``, and the extra first
input is multiplied by the zero tap, which leaves exactly the ``k`` taps of the padded convolution, on the same
inputs, and the same output size ``floor((n + 2 before + 1 - k) / s) + 1``. The sums are the padded convolution's
sums plus exact zeros (on EfficientNet-Lite0 the features came out bit-identical on 2 CPU cores). The zero tap
costs ``(k + 1)^2 / k^2`` multiply-adds on those layers; skipping the copy saves more (measured on 2 cores:
EfficientNet-Lite0 131 -> 160 images/s at 224 px, 35 -> 42 at 448 px).

With a dilation above 1 an extra tap would sit ``d`` inputs away, so that case (an odd total under dilation)
keeps the explicit padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same" padding ``(before, after)`` of an axis of ``size`` inputs (the formula above)."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def is_dynamic_same_conv(module: nn.Module) -> bool:
    """Whether ``module`` is timm's ``Conv2dSame`` itself (a subclass may compute something else)."""
    return type(module).__name__ == "Conv2dSame" and type(module).__module__.startswith("timm.")


class SamePaddingFoldedConv2d(nn.Module):
    """A ``Conv2dSame`` (same weights, stride, dilation and groups) that pads inside the convolution: see the
    module's docstring. ``shifted`` is the weight with a zero first row and a zero first column, sliced per call to
    the axes whose padding is one-sided."""

    weight: Tensor
    bias: Tensor | None
    shifted: Tensor

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.kernel_size = (int(conv.kernel_size[0]), int(conv.kernel_size[1]))
        self.stride = (int(conv.stride[0]), int(conv.stride[1]))
        self.dilation = (int(conv.dilation[0]), int(conv.dilation[1]))
        self.groups = conv.groups
        weight = conv.weight.detach()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
        layout = (
            torch.channels_last
            if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
            else torch.contiguous_format
        )
        out_ch, in_ch, kh, kw = weight.shape
        shifted = weight.new_zeros(out_ch, in_ch, kh + 1, kw + 1).contiguous(memory_format=layout)
        shifted[:, :, 1:, 1:] = weight
        self.register_buffer("shifted", shifted, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        extra_h, extra_w = bottom - top, right - left
        if (extra_h and self.dilation[0] != 1) or (extra_w and self.dilation[1] != 1):
            x = F.pad(x, (left, right, top, bottom))
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        weight = self.shifted[:, :, 1 - extra_h :, 1 - extra_w :] if extra_h or extra_w else self.weight
        return F.conv2d(x, weight, self.bias, self.stride, (bottom, right), self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}, groups={self.groups}"


def fold_same_padding(model: nn.Module) -> int:
    """Replace, in place, every timm ``Conv2dSame`` in ``model`` by a :class:`SamePaddingFoldedConv2d` (call it on
    a copy: see :func:`simvis_widgets.fusion.inference_copy`); the number replaced."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_dynamic_same_conv(child):
                setattr(parent, name, SamePaddingFoldedConv2d(child))  # type: ignore[arg-type]
                count += 1
    return count
