"""The same-padding fold computes what timm's ``Conv2dSame`` computes: same output shape, same values to float
rounding, for every kernel, stride, dilation, group count, layout and input size (hypothesis), odd and even sizes
alike. Oracles: timm's own module (an explicit ``F.pad`` then the convolution) and TensorFlow's padding formula
written out per output position."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.layers import Conv2dSame
from torch import nn

from simvis_widgets.fusion import inference_copy, relative_difference
from simvis_widgets.same_padding import SamePaddingFoldedConv2d, fold_same_padding, same_padding


@settings(max_examples=60, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    depthwise=st.booleans(),
    bias=st.booleans(),
    channels_last=st.booleans(),
    size=st.tuples(st.integers(1, 19), st.integers(1, 19)),
    seed=st.integers(0, 2**16),
)
def test_the_fold_matches_timm_conv2d_same(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    depthwise: bool,
    bias: bool,
    channels_last: bool,
    size: tuple[int, int],
    seed: int,
) -> None:
    torch.manual_seed(seed)
    channels = 4
    conv = Conv2dSame(
        channels, channels, kernel, stride, dilation=dilation, groups=channels if depthwise else 1, bias=bias
    )
    x = torch.randn(2, channels, *size)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    folded = SamePaddingFoldedConv2d(conv)
    with torch.inference_mode():
        expected, got = conv(x), folded(x)
    assert got.shape == expected.shape
    assert relative_difference(got, expected) < 1e-5


@pytest.mark.parametrize("size", [1, 2, 7, 8, 223, 224])
@pytest.mark.parametrize(("kernel", "stride", "dilation"), [(3, 2, 1), (5, 2, 1), (3, 1, 1), (4, 2, 1), (3, 2, 2)])
def test_padding_is_tensorflows(size: int, kernel: int, stride: int, dilation: int) -> None:
    """TensorFlow's rule as properties: ``ceil(n / s)`` outputs, from the least padding that gives them, split as
    evenly as it can be with the odd one at the end."""
    before, after = same_padding(size, kernel, stride, dilation)
    outputs = math.ceil(size / stride)
    span = (kernel - 1) * dilation + 1

    def count(total: int) -> int:
        return (size + total - span) // stride + 1 if size + total >= span else 0

    assert count(before + after) == outputs
    assert before + after == 0 or count(before + after - 1) < outputs
    assert after - before in (0, 1)


def test_only_timms_own_module_is_replaced() -> None:
    class Custom(Conv2dSame):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    model = nn.Sequential(Conv2dSame(3, 4, 3, 2), Custom(4, 4, 3, 2), nn.Conv2d(4, 4, 3, 2, padding=1))
    assert fold_same_padding(model) == 1
    assert isinstance(model[0], SamePaddingFoldedConv2d)
    assert type(model[1]) is Custom and type(model[2]) is nn.Conv2d


def test_the_copy_is_folded_and_the_network_is_not() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Conv2dSame(3, 8, 3, 2), nn.BatchNorm2d(8), nn.ReLU(), Conv2dSame(8, 8, 5, 2, groups=8)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, 32, 30)
    found = inference_copy(model, lambda m, t: m(t), x)
    assert found is not None and (found.folded_batchnorms, found.folded_paddings) == (1, 2)
    assert [type(m) for m in model] == [type(m) for m in original]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))
    for shape in ((32, 30), (31, 17), (1, 2)):  # even, odd and tiny inputs
        x = torch.randn(2, 3, *shape)
        with torch.inference_mode():
            assert relative_difference(found.network(x), model(x)) < 1e-5
    only_bn = inference_copy(model, lambda m, t: m(t), x, padding=False)
    assert only_bn is not None and only_bn.folded_paddings == 0
    assert sum(isinstance(m, Conv2dSame) for m in only_bn.network.modules()) == 2
    only_padding = inference_copy(model, lambda m, t: m(t), x, batchnorm=False)
    assert only_padding is not None and (only_padding.folded_batchnorms, only_padding.folded_paddings) == (0, 2)


def test_a_network_without_same_padding_or_batch_norm_gets_no_copy() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, padding=1), nn.ReLU()).eval()
    assert inference_copy(model, lambda m, t: m(t), torch.randn(1, 3, 16, 16)) is None
