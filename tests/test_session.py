"""Model sessions: the embedded weights are real, embeddings match the network, caching, inputs, errors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import simvis_widgets as sv

from oracles import torch_pool

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup


def _imagenet_names() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


def _classify(session: sv.ModelSession, img: np.ndarray) -> tuple[int, float]:
    square = np.asarray(Image.fromarray(img).resize((224, 224), Image.Resampling.BICUBIC))
    with torch.inference_mode():
        probs = session.model(session.to_input([square])).softmax(-1)[0]
    return int(probs.argmax()), float(probs.max())


def test_embedded_weights_are_the_real_imagenet_weights(lite0: sv.ModelSession, photos: dict) -> None:
    names = _imagenet_names()
    cat, p_cat = _classify(lite0, photos["chelsea"])
    cup, p_cup = _classify(lite0, photos["coffee"])
    assert cat in CAT_CLASSES, f"chelsea -> {names[cat]} ({p_cat:.2f})"
    assert cup in COFFEE_CLASSES, f"coffee -> {names[cup]} ({p_cup:.2f})"
    assert p_cat > 0.5 and p_cup > 0.5  # measured: Egyptian cat 0.77, espresso 0.90


def test_random_init_does_not_classify(photos: dict) -> None:
    """Control for the test above: the same architecture without the shipped weights is not a cat detector."""
    torch.manual_seed(0)
    random = sv.ModelSession.from_pretrained("efficientnet_lite0", pretrained=False, size=224, device="cpu")
    _, p = _classify(random, photos["chelsea"])
    assert p < 0.2


@pytest.mark.parametrize("shape", [(32, 48), (64, 32)])
def test_to_input_is_torchvisions_normalisation(lite0: sv.ModelSession, shape: tuple[int, int]) -> None:
    from torchvision.transforms.functional import normalize, to_tensor

    session = lite0.variant(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # Lite0's own are all 0.5
    rng = np.random.default_rng(shape[0])
    images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(3)]
    images[1][:] = 0  # the ends of the pixel scale
    images[2][:, : shape[1] // 2] = 255
    x = session.to_input(images)
    assert x.shape == (3, 3, *shape)
    mean, std = list(session.options.mean), list(session.options.std)
    expected = torch.stack([normalize(to_tensor(im), mean, std) for im in images])
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)
    # every channel normalised by its own constants (a swap of two channels' constants fails the above)
    for c in range(3):
        assert float(x[:, c].min()) == pytest.approx(-mean[c] / std[c], abs=1e-5)


def test_avg_embedding_is_timms_pre_logits(lite0: sv.ModelSession, photos: dict) -> None:
    prepared = lite0.prepare(photos["coffee"])
    with torch.inference_mode():
        x = lite0.to_input([prepared])
        reference = lite0.model.forward_head(lite0.model.forward_features(x), pre_logits=True)[0]
    torch.testing.assert_close(lite0.embed(photos["coffee"]), F.normalize(reference, dim=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["avg", "sum", "max", "gem"])
def test_embed_equals_torch_pooling_and_score_is_cosine(lite0: sv.ModelSession, photos: dict, pooling: str) -> None:
    session = lite0.variant(pooling=pooling, p=3.0)
    assert session.model is lite0.model and session.size == 224
    a, b = photos["motorcycle_left"], photos["astronaut"]  # different sizes and aspect ratios
    feats = session.features(a)
    torch.testing.assert_close(
        session.embed(a), F.normalize(torch_pool(feats, pooling, 3.0), dim=0), rtol=1e-5, atol=1e-6
    )
    ex = session.explain(a, b)
    assert ex.score == pytest.approx(float(session.embed(a) @ session.embed(b)), abs=1e-5)
    assert ex.grid_a != ex.grid_b
    for total in (ex.map_a.sum(), ex.map_b.sum(), ex.pairwise.sum()):
        assert float(total) + ex.global_term == pytest.approx(ex.score, rel=1e-5)


def test_explain_attaches_images_and_name(lite0: sv.ModelSession, photos: dict) -> None:
    ex = lite0.explain(photos["chelsea"], photos["coffee"])
    assert ex.model_name == "efficientnet_lite0" and ex.exact
    assert ex.image_a.shape[0] // 32 == ex.grid_a[0] and ex.image_a.shape[1] // 32 == ex.grid_a[1]
    # A pixel mask at the network-input size, and the whole image as a region.
    full = np.ones(ex.image_a.shape[:2])
    assert ex.region_score("a", full) == pytest.approx(float(ex.map_a.sum()), rel=1e-6)
    top = np.zeros(ex.image_a.shape[:2])
    top[: 3 * 32] = 1  # the top three rows of 32 x 32 px cells
    cells = np.zeros(ex.grid_a)
    cells[:3] = 1  # the same region at cell resolution
    assert ex.region_score("a", top) == pytest.approx(ex.region_score("a", cells), rel=1e-6)


def test_feature_cache_skips_the_network(photos: dict) -> None:
    torch.manual_seed(0)
    session = sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=96, device="cpu")
    calls = []
    extract = session._extract
    session._extract = lambda x: (calls.append(x.shape[0]), extract(x))[1]
    a, b = photos["motorcycle_left"], photos["motorcycle_right"]
    first = session.explain(a, b)
    assert calls == [1, 1]  # on the CPU one image per forward pass
    second = session.explain(a.copy(), b.copy())  # same content, new objects
    assert calls == [1, 1]
    assert second.score == first.score
    session.explain(a, photos["astronaut"])  # a is cached, astronaut is new
    assert calls == [1, 1, 1]
    assert session.input_key(a) != session.variant(size=64).input_key(a)  # other settings, other cache key
    session.clear_cache()
    session.features(a)
    assert calls == [1, 1, 1, 1]


def test_all_input_kinds_give_the_same_features(resnet18_random: sv.ModelSession, photos: dict, tmp_path: Path) -> None:
    img = photos["coffee"]
    path = tmp_path / "coffee.png"
    Image.fromarray(img).save(path)
    reference = resnet18_random.features(img)
    for variant in (
        path,
        str(path),
        Image.fromarray(img),
        img.astype(np.float32) / 255,
        torch.from_numpy(img).permute(2, 0, 1),
        torch.from_numpy(img).permute(2, 0, 1).float() / 255,
    ):
        torch.testing.assert_close(resnet18_random.features(variant), reference)


def test_embed_many_matches_embed(resnet18_random: sv.ModelSession, photos: dict) -> None:
    images = [photos["chelsea"], photos["coffee"], photos["astronaut"], photos["motorcycle_left"], photos["coffee"]]
    many = resnet18_random.embed_many(images, batch_size=2, progress=False)
    assert many.shape == (5, 512)
    for k, img in enumerate(images):
        torch.testing.assert_close(many[k], resnet18_random.embed(img), rtol=1e-4, atol=1e-5)
    assert resnet18_random.embed_many([], progress=False).shape == (0, 512)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        resnet18_random.embed_many(images, batch_size=0)


def test_torchvision_random_init_works_offline(resnet18_random: sv.ModelSession, photos: dict) -> None:
    assert resnet18_random.channels == 512 and resnet18_random.stride == 32
    assert resnet18_random.layer == "layer4"
    ex = resnet18_random.explain(photos["motorcycle_left"], photos["motorcycle_right"])
    assert float(ex.map_a.sum()) == pytest.approx(ex.score, rel=1e-5)


def test_missing_pretrained_weights_fail_fast_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("SIMVIS_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(sv.WeightsUnavailableError) as err:
        sv.ModelSession.from_pretrained("resnet50")
    message = str(err.value)
    assert "resnet50" in message and "pretrained=False" in message and "weights=" in message
    assert str(tmp_path) in message  # says where the file is expected
    assert time.monotonic() - start < 30  # a hang check, not a speed test


def test_cached_torchvision_weights_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, photos: dict) -> None:
    """Weights in torch's hub cache load offline (written here from a random model with the real file name)."""
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("SIMVIS_OFFLINE", "1")
    torch.manual_seed(1)
    model = resnet18()
    (tmp_path / "checkpoints").mkdir()
    torch.save(model.state_dict(), tmp_path / "checkpoints" / Path(ResNet18_Weights.DEFAULT.url).name)
    session = sv.ModelSession.from_pretrained("resnet18", size=96, device="cpu")
    torch.testing.assert_close(session.model.conv1.weight, model.conv1.weight)


def test_local_weights_file(tmp_path: Path, photos: dict) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(2)
    model = resnet18()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    session = sv.ModelSession.from_pretrained("resnet18", weights=str(path), size=96, device="cpu")
    torch.testing.assert_close(session.model.fc.weight, model.fc.weight)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(sv.ModelError, match="garbage.pth' could not be loaded"):
        sv.ModelSession.from_pretrained("resnet18", weights=garbage)
    with pytest.raises(sv.ModelError, match="do not fit"):
        sv.ModelSession.from_pretrained("resnet34", weights=path)
    with pytest.raises(sv.ModelError, match="does not exist"):
        sv.ModelSession.from_pretrained("resnet18", weights=tmp_path / "missing.pth")


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.body(x)).flatten(1))


def test_any_module_with_a_layer_name(photos: dict) -> None:
    torch.manual_seed(3)
    net = TinyNet()
    session = sv.ModelSession(net, "body.3", size=64, device="cpu", name="tiny")
    assert (session.channels, session.stride) == (16, 4)
    ex = session.explain(photos["chelsea"], photos["coffee"])
    assert ex.map_a.shape == (16, 24) and ex.model_name == "tiny"
    assert float(ex.pairwise.sum()) == pytest.approx(ex.score, rel=1e-5)


def test_layer_and_model_errors() -> None:
    net = TinyNet()
    with pytest.raises(sv.ModelError, match=r"layer 'body.9' does not exist in TinyNet\. Did you mean 'body\.[0-9]'"):
        sv.ModelSession(net, "body.9", device="cpu")
    with pytest.raises(sv.ModelError, match=r"outputs shape \(1, 10\): not a spatial feature map"):
        sv.ModelSession(net, "fc", device="cpu")
    with pytest.raises(sv.ModelError, match="has no forward_features"):
        sv.ModelSession(net, None, device="cpu")
    with pytest.raises(sv.ModelError, match="must be a torch.nn.Module"):
        sv.ModelSession("resnet50")  # type: ignore[arg-type]
    with pytest.raises(sv.ModelError, match=r"unknown model 'resnet5'\. Did you mean"):
        sv.ModelSession.from_pretrained("resnet5")
    with pytest.raises(sv.ModelError, match="head weight has shape"):
        sv.ModelSession(net, "body.3", head=torch.nn.Linear(8, 4), device="cpu")
    with pytest.raises(sv.DecompositionError, match="unknown pooling"):
        sv.ModelSession(net, "body.3", pooling="mean", device="cpu")
    with pytest.raises(sv.DecompositionError, match="GeM needs a real p with 1 <= p"):
        sv.ModelSession(net, "body.3", pooling="gem", p=0.5, device="cpu")


class _TimesNaN(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


def test_nan_features_are_reported(photos: dict) -> None:
    net = TinyNet()
    net.body.append(_TimesNaN())
    session = sv.ModelSession(net, "body.4", size=64, device="cpu")
    with pytest.raises(sv.ModelError, match="NaN or infinite features"):
        session.features(photos["coffee"])


class _Huge(torch.nn.Module):
    """Finite features near float32's largest value (their sum overflows to inf), with one inf where asked."""

    def __init__(self, with_inf: bool) -> None:
        super().__init__()
        self.with_inf = with_inf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(x, 3e38)
        if self.with_inf:
            out[..., 0, 0] = float("inf")
        return out


def test_finite_features_whose_sum_overflows_are_accepted_and_one_inf_is_not(photos: dict) -> None:
    # the finite check sums first: an overflowing sum of finite values must fall through to the full check
    for with_inf in (False, True):
        net = TinyNet()
        net.body.append(_Huge(with_inf))
        session = sv.ModelSession(net, "body.4", size=64, device="cpu", channels_last=False)
        prepared = session.prepare(photos["coffee"])
        if with_inf:
            with pytest.raises(sv.ModelError, match="NaN or infinite features"):
                session.batch_features([prepared])
        else:
            feats = session.batch_features([prepared])
            assert not torch.isfinite(feats.sum()) and bool(torch.isfinite(feats).all())


def test_image_smaller_than_stride_at_native_size() -> None:
    session = sv.ModelSession(TinyNet(), "body.3", size=None, device="cpu")
    with pytest.raises(sv.ImageInputError, match=r"smaller than the network's stride \(4 px\)"):
        session.features(np.zeros((3, 50, 3), np.uint8))


def test_linear_head_in_a_session(photos: dict) -> None:
    torch.manual_seed(4)
    head = torch.nn.Linear(16, 6)
    session = sv.ModelSession(TinyNet(), "body.3", head=head, size=64, device="cpu")
    a, b = photos["chelsea"], photos["astronaut"]
    with torch.no_grad():
        expected = F.normalize(head(torch_pool(session.features(a), "avg")), dim=0)
    torch.testing.assert_close(session.embed(a), expected, rtol=1e-5, atol=1e-6)
    ex = session.explain(a, b)
    assert ex.global_term != 0
    assert float(ex.map_a.sum()) + ex.global_term == pytest.approx(ex.score, rel=1e-5)


def test_amp_on_cpu_is_close(resnet18_random: sv.ModelSession, photos: dict) -> None:
    amp = sv.ModelSession(resnet18_random.model, "layer4", size=128, device="cpu", amp=True)
    e_amp, e_ref = amp.embed(photos["coffee"]), resnet18_random.embed(photos["coffee"])
    assert e_amp.dtype == torch.float32
    assert float(e_amp @ e_ref) > 0.99


@pytest.mark.parametrize(
    ("switch", "value"),
    [(switch, value) for switch in ("amp", "fold_batchnorm", "fold_padding") for value in ("False", 0, None)]
    + [("channels_last", "False"), ("channels_last", 0)],  # None is channels_last's default (on for a Conv2d)
)
def test_a_switch_that_is_not_a_bool_is_refused_by_name(switch: str, value: object) -> None:
    """``bool("False")`` is True: a string would turn ``amp`` (which changes the features) on without a word."""
    model = TinyNet()
    layout = [p.stride() for p in model.parameters()]
    with pytest.raises(sv.ModelError, match=re.escape(f"{switch} must be True or False, got {value!r}")):
        sv.ModelSession(model, "body.3", size=64, device="cpu", **{switch: value})
    assert [p.stride() for p in model.parameters()] == layout  # refused before the network was touched
    session = sv.ModelSession(model, "body.3", size=64, device="cpu", **{switch: np.bool_(False)})
    assert getattr(session, switch) is False


def test_variant_keeps_the_network_and_preprocessing(lite0: sv.ModelSession, photos: dict) -> None:
    gem = lite0.variant(pooling="gem", p=4.0)
    assert gem.name == "efficientnet_lite0, GeM p=4" and gem.model is lite0.model
    torch.testing.assert_close(gem.features(photos["coffee"]), lite0.features(photos["coffee"]))
    with pytest.raises(TypeError, match="unknown option"):
        lite0.variant(poolin="max")


def test_vit_with_mean_pooled_tokens_is_exact(photos: dict) -> None:
    """A timm ViT pooling its patch tokens then applying fc_norm (a LayerNorm with per-image mean and std)."""
    torch.manual_seed(5)
    session = sv.ModelSession.from_pretrained(
        "timm:vit_tiny_patch16_224", pretrained=False, size=160, device="cpu", model_kwargs={"global_pool": "avg"}
    )
    with torch.no_grad():  # a non-trivial LayerNorm: random gain and bias
        session.model.fc_norm.weight.normal_()
        session.model.fc_norm.bias.normal_()
    session = session.variant(head=session.model.fc_norm)
    assert session.stride == 16 and session.head.layer_norm_eps == pytest.approx(1e-6)
    a, b = photos["chelsea"], photos["astronaut"]  # non-square, different sizes: dynamic_img_size
    x = session.to_input([session.prepare(a)])
    with torch.inference_mode():
        reference = session.model.forward_head(session.model.forward_features(x), pre_logits=True)[0]
    torch.testing.assert_close(session.embed(a), F.normalize(reference, dim=0), rtol=1e-5, atol=1e-6)
    ex = session.explain(a, b)
    assert ex.grid_a == (x.shape[2] // 16, x.shape[3] // 16) and ex.global_term != 0
    for total in (ex.map_a.sum(), ex.map_b.sum(), ex.pairwise.sum()):
        assert float(total) + ex.global_term == pytest.approx(ex.score, rel=1e-5)
    assert ex.score == pytest.approx(float(session.embed(a) @ session.embed(b)), abs=1e-5)


def test_cls_token_vit_is_refused_clearly() -> None:
    with pytest.raises(sv.ModelError, match="CLS token has no exact decomposition"):
        sv.ModelSession.from_pretrained("timm:vit_tiny_patch16_224", pretrained=False, device="cpu")
    with pytest.raises(sv.ModelError, match="model_kwargs are for timm models"):
        sv.ModelSession.from_pretrained("resnet18", pretrained=False, model_kwargs={"global_pool": "avg"})


def test_repr(lite0: sv.ModelSession) -> None:
    assert "efficientnet_lite0" in repr(lite0) and "stride=32" in repr(lite0)


@pytest.mark.gpu
def test_cuda_session_matches_cpu(photos: dict) -> None:
    cpu = sv.ModelSession.from_pretrained("efficientnet_lite0", device="cpu")
    gpu = sv.ModelSession.from_pretrained("efficientnet_lite0", device="cuda")
    ex_cpu = cpu.explain(photos["motorcycle_left"], photos["motorcycle_right"])
    ex_gpu = gpu.explain(photos["motorcycle_left"], photos["motorcycle_right"])
    assert ex_gpu.map_a.device.type == "cuda"
    assert ex_gpu.score == pytest.approx(ex_cpu.score, abs=1e-3)
    torch.testing.assert_close(ex_gpu.map_a.cpu(), ex_cpu.map_a, rtol=0.05, atol=1e-4)


def test_cls_vit_approximate_mode(photos: dict) -> None:
    """A CLS-token ViT: first-order contributions (LayerNorm statistics held fixed), labelled APPROXIMATE;
    the score is still the network's and map sums + global term equal it."""
    from simvis_widgets.linearise import frozen_statistics

    torch.manual_seed(6)
    session = sv.ModelSession.from_pretrained(
        "timm:vit_tiny_patch16_224", pretrained=False, size=96, device="cpu", approximate=True
    )
    assert session.approximate and "APPROXIMATE" in repr(session)
    a, b = photos["chelsea"], photos["coffee"]
    ex = session.explain(a, b)
    assert not ex.exact and "APPROXIMATE" in repr(ex)
    x = session.to_input([session.prepare(a)])
    with torch.inference_mode():
        reference = session.model.forward_head(session.model.forward_features(x), pre_logits=True)[0]
    torch.testing.assert_close(session.embed(a), F.normalize(reference, dim=0), rtol=1e-5, atol=1e-6)
    assert ex.score == pytest.approx(float(session.embed(a) @ session.embed(b)), abs=1e-5)
    assert float(ex.map_a.sum()) + ex.global_term == pytest.approx(ex.score, abs=1e-6)
    assert session.features(a).shape == (192, *ex.grid_a)
    # Oracle: the full Jacobian of the embedding w.r.t. the tokens (same frozen statistics), contracted with them.
    lin = session._linear
    tokens = session.encode(a).features.clone()
    with frozen_statistics(lin.norms):
        lin.last.attn.fused_attn = False
        jac = torch.autograd.functional.jacobian(lin.embedding, tokens)  # (D, N, C)
        lin.last.attn.fused_attn = True
    expected = torch.einsum("dnc,nc->nd", jac, tokens)[lin.prefix :]
    torch.testing.assert_close(lin.contributions(tokens), expected, rtol=1e-4, atol=1e-6)
    pair = sv.PairExplorer.from_explanation(ex)
    assert pair.exact is False  # the widget's readout says APPROXIMATE
    with pytest.raises(sv.GalleryError, match="APPROXIMATE"):
        sv.Gallery.build([a], session, progress=False)
    with pytest.raises(sv.ModelError, match="approximate=True: TinyNet is not a timm VisionTransformer"):
        sv.ModelSession(TinyNet(), "body.3", approximate=True, device="cpu")
