"""The CPU speed settings change how features are computed, never what they are.

Oracles: the network called directly in torch (NCHW input, its own batch norms, the default allocator) or a
session with every setting off on an independent copy of the same weights; the batch-norm fold against the
unfolded pair on random parameters (hypothesis); the allocator settings by their effect on resident memory in a
fresh process."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import simvis_widgets as sv
from simvis_widgets.fusion import inference_copy, relative_difference
from simvis_widgets.models import build_backbone
from simvis_widgets.session import RUNTIME_OPTIONS

TOLERANCE = 1e-4  # relative to the largest feature value


def _image(seed: int, shape: tuple[int, int] = (150, 200)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _plain_features(model: nn.Module, session: sv.ModelSession, img: np.ndarray, features) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The network on the session's own input, NCHW-contiguous, in plain torch."""
    x = session.to_input([session.prepare(img)]).contiguous()
    with torch.inference_mode():
        return features(model.eval(), x)[0]


def test_embedded_default_matches_plain_torch(photos: dict) -> None:
    model, _ = build_backbone("efficientnet_lite0")
    reference_model = copy.deepcopy(model)
    session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
    assert session.channels_last and session.folded_batchnorms > 40 and session.folded_paddings == 5
    for img in (photos["chelsea"], _image(1)):
        expected = _plain_features(reference_model, session, img, lambda m, x: m.forward_features(x))
        assert relative_difference(session.features(img), expected) < TOLERANCE


def test_torchvision_resnet_matches_plain_torch() -> None:
    torch.manual_seed(0)
    model, _ = build_backbone("resnet18", pretrained=False)
    _randomise_batchnorm_statistics(model)
    reference_model = copy.deepcopy(model)
    session = sv.ModelSession(model, "layer4", size=128, device="cpu")
    assert session.folded_batchnorms == 20
    trunk = nn.Sequential(*list(reference_model.children())[:-2])  # conv1 ... layer4
    img = _image(2)
    expected = _plain_features(reference_model, session, img, lambda _m, x: trunk(x))
    assert relative_difference(session.features(img), expected) < TOLERANCE


def _randomise_batchnorm_statistics(model: nn.Module) -> None:
    """Running statistics far from (0, 1), so that a fold that ignored them would show."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mobilenet_v3_large", {}),
        ("efficientnet_b0", {}),
        ("regnet_y_400mf", {}),
        ("convnext_tiny", {}),  # no batch norm: only the layout applies
        ("timm:tf_mobilenetv3_small_100", {}),  # TensorFlow "same" padding on its strided convolutions
        ("timm:vit_tiny_patch16_224", {"model_kwargs": {"global_pool": "avg", "dynamic_img_size": True}}),
    ],
)
def test_every_family_keeps_its_features(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model, spec = build_backbone(name, pretrained=False, **kwargs)
    _randomise_batchnorm_statistics(model)
    independent = copy.deepcopy(model)
    fast = sv.ModelSession(model, spec.layer, size=128, device="cpu")
    slow = sv.ModelSession(
        independent, spec.layer, size=128, device="cpu", channels_last=False, fold_batchnorm=False, fold_padding=False
    )
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (fast.folded_batchnorms > 0) == has_bn
    assert fast.folded_paddings == (5 if name.startswith("timm:tf_") else 0) and slow.folded_paddings == 0
    for img in (_image(3), _image(4, (128, 200))):
        assert relative_difference(fast.features(img), slow.features(img)) < TOLERANCE
        assert relative_difference(fast.embed(img), slow.embed(img)) < TOLERANCE


def test_the_callers_network_is_not_changed() -> None:
    torch.manual_seed(0)
    model, _ = build_backbone("resnet18", pretrained=False)
    _randomise_batchnorm_statistics(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = [type(m) for m in model.modules()]
    session = sv.ModelSession(model, "layer4", size=128, device="cpu")
    assert session.folded_batchnorms == 20 and session.model is model
    assert [type(m) for m in model.modules()] == kinds
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    plain = sv.ModelSession(copy.deepcopy(model), "layer4", size=128, device="cpu", fold_batchnorm=False)
    assert session.fingerprint() == plain.fingerprint()  # galleries built before still open


class _ReadTwice(nn.Module):
    """``bn(conv(x)) + conv(x)``: the convolution's output is read twice, so folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_fold_that_changes_the_output_is_refused() -> None:
    torch.manual_seed(0)
    model = _ReadTwice()
    _randomise_batchnorm_statistics(model)
    whole = _ReadTwice()
    whole.load_state_dict(model.state_dict())
    whole.eval()
    x = torch.randn(1, 3, 32, 32)
    assert inference_copy(whole, lambda m, t: m(t), x) is None  # the sum is checked and the fold refused
    # a session reading the batch norm's own output may fold: up to that layer nothing else reads the conv
    session = sv.ModelSession(model, "bn", size=64, device="cpu")
    assert session.folded_batchnorms == 1
    img = _image(7, (64, 64))
    with torch.inference_mode():
        expected = whole.bn(whole.conv(session.to_input([session.prepare(img)]).contiguous()))[0]
    assert relative_difference(session.features(img), expected) < TOLERANCE


def test_batchnorm_without_running_statistics_is_not_folded() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU())
    session = sv.ModelSession(model, "2", size=64, device="cpu")
    assert session.folded_batchnorms == 0


@settings(max_examples=30, deadline=None)
@given(
    out_channels=st.integers(1, 6),
    groups_divides=st.booleans(),
    bias=st.booleans(),
    affine=st.booleans(),
    kernel=st.sampled_from([1, 3]),
    stride=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_fold_equals_the_pair(
    out_channels: int, groups_divides: bool, bias: bool, affine: bool, kernel: int, stride: int, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    in_channels = out_channels * 2 if groups_divides else 3
    groups = out_channels if groups_divides else 1
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=bias)
    bn = nn.BatchNorm2d(out_channels, affine=affine, eps=float(torch.rand(1, generator=gen)) * 1e-2 + 1e-5)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.copy_(torch.randn(out_channels, generator=gen) * 3)
        bn.running_var.copy_(torch.rand(out_channels, generator=gen) * 5 + 1e-3)
        if affine:
            bn.weight.copy_(torch.randn(out_channels, generator=gen) * 2)
            bn.bias.copy_(torch.randn(out_channels, generator=gen))
    pair = nn.Sequential(conv, bn).eval()
    x = torch.randn(2, in_channels, 9, 11, generator=gen)
    found = inference_copy(pair, lambda m, t: m(t), x)
    assert found is not None
    folded, count = found.network, found.folded_batchnorms
    assert count == 1 and isinstance(folded[1], nn.Identity)
    with torch.inference_mode():
        assert relative_difference(folded(x), pair(x)) < 1e-5


def test_runtime_options_travel_with_variants(lite0: sv.ModelSession) -> None:
    plain = lite0.variant(channels_last=False, fold_batchnorm=False, fold_padding=False, name="plain")
    assert (plain.channels_last, plain.fold_batchnorm, plain.folded_batchnorms) == (False, False, 0)
    assert (plain.fold_padding, plain.folded_paddings) == (False, 0)
    again = plain.variant(pooling="max")
    assert {n: getattr(again, n) for n in RUNTIME_OPTIONS} == {n: getattr(plain, n) for n in RUNTIME_OPTIONS}
    x = lite0.to_input([lite0.prepare(_image(5))])
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert plain.to_input([plain.prepare(_image(5))]).is_contiguous()
    assert lite0.features(_image(6)).is_contiguous()
    assert "channels_last" in repr(lite0) and "batch norms folded" in repr(lite0) and "5 same paddings" in repr(lite0)


# --------------------------------------------------------------------------------------------------
# The allocator: process-wide, so each case runs in a fresh interpreter
# --------------------------------------------------------------------------------------------------

_ALLOCATOR_PROBE = textwrap.dedent(
    """
    import json, torch
    import simvis_widgets as sv
    from simvis_widgets import runtime

    def rss():
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmRSS"))

    out = {"at_import": runtime.allocator()}
    try:
        out["tuned"] = runtime.tune_allocator()
    except Exception as err:
        out["error"] = f"{type(err).__name__}: {err}"
        print(json.dumps(out)); raise SystemExit
    block = torch.ones(64 << 20, dtype=torch.float32)  # 256 MiB, every page touched
    before_free = rss()
    del block
    out["kept_after_free"] = rss() - (before_free - (256 << 20))
    runtime.release_memory()
    out["kept_after_release"] = rss() - (before_free - (256 << 20))
    print(json.dumps(out))
    """
)


def _probe_allocator(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SIMVIS_MALLOC", "LD_PRELOAD")}
    if setting is not None:
        env["SIMVIS_MALLOC"] = setting
    done = subprocess.run(
        [sys.executable, "-c", _ALLOCATOR_PROBE], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are glibc's (Linux)")
def test_tuned_allocator_keeps_freed_memory_until_released() -> None:
    got = _probe_allocator(None)
    assert got["at_import"] == "glibc (default; not yet tuned)"  # importing the package sets nothing
    assert got["tuned"].startswith("glibc (tuned")
    assert got["kept_after_free"] > 200 << 20  # the 256 MiB stay in the heap for the next batch
    assert got["kept_after_release"] < 64 << 20  # and go back to the system when asked


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are glibc's (Linux)")
def test_opting_out_leaves_glibc_as_it_is() -> None:
    got = _probe_allocator("system")
    assert got["tuned"] == "glibc (default; SIMVIS_MALLOC=system)"
    assert got["kept_after_free"] < 64 << 20  # glibc's default returns a big block at once


def test_a_wrong_allocator_setting_is_named() -> None:
    got = _probe_allocator("fast")
    assert "SIMVIS_MALLOC='fast'" in got["error"] and "'tuned'" in got["error"] and "'system'" in got["error"]


@pytest.mark.gpu
def test_cuda_fast_path_keeps_the_features(photos: dict) -> None:
    """On a GPU: channels-last, the folded copy and pinned input against the plain network on the same device
    (cuDNN picks other algorithms, TF32 among them, per layout: the tolerance is 1e-3)."""
    fast = sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cuda")
    plain = fast.variant(channels_last=False, fold_batchnorm=False, fold_padding=False)
    assert fast.channels_last and fast.folded_batchnorms > 40 and fast.folded_paddings == 5
    feats = fast.features(photos["chelsea"])
    assert feats.device.type == "cuda" and feats.is_contiguous()
    assert relative_difference(feats.cpu(), plain.features(photos["chelsea"]).cpu()) < 1e-3
