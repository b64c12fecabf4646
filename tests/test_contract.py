"""The public contract between modules and the hardening cases of the core: immutable results, one error base,
session options and fingerprints, no private names across modules, numerically hostile inputs."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import simvis_widgets as sv

from oracles import brute_force

PACKAGE = Path(sv.__file__).parent


def _feats(c: int = 6, h: int = 3, w: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed))


# --- immutable results ------------------------------------------------------------------------------------------


def test_explanation_is_immutable_and_images_belong_to_the_pair() -> None:
    ex = sv.decompose(_feats(), _feats(seed=1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.score = 1.0  # type: ignore[misc]
    assert not hasattr(ex, "image_a") and not hasattr(ex, "figure")  # maths only
    image = np.zeros((96, 128, 3), np.uint8)
    pair = sv.ExplainedPair.of(ex, image_a=image, model_name="m")
    assert pair.score == ex.score and pair.image_size_a == (96, 128) and pair.source_size_a == (96, 128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.image_a = image  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        pair.image_a[0, 0, 0] = 1  # type: ignore[index]
    image[0, 0, 0] = 7  # the caller's array stays writable
    swapped = pair.swapped()
    assert swapped.image_b is pair.image_a or np.array_equal(swapped.image_b, image)
    assert swapped.image_a is None and swapped.grid_a == ex.grid_b and swapped.model_name == "m"
    torch.testing.assert_close(swapped.pairwise, ex.pairwise.T)


def test_session_explain_returns_a_pair_that_draws(
    resnet18_random: sv.ModelSession, photos: dict, tmp_path: Path
) -> None:
    pair = resnet18_random.explain(photos["chelsea"], photos["coffee"])
    assert isinstance(pair, sv.ExplainedPair) and isinstance(pair, sv.Explanation)
    assert pair.source_size_a == photos["chelsea"].shape[:2] and pair.model_name == resnet18_random.name
    assert pair.save(tmp_path / "pair.png").stat().st_size > 1000
    bare = sv.decompose(_feats(), _feats(seed=1))
    fig = sv.render.explanation_figure(bare)  # a bare Explanation draws on grey backgrounds
    assert len(fig.axes) >= 2


def test_decompose_imports_nothing_from_the_views() -> None:
    """The data flow images -> session -> decompose -> Explanation -> views holds in the imports."""
    lower = {"errors.py": set(), "_io.py": set(), "decompose.py": {"errors", "_io"}}
    for name, allowed in lower.items():
        tree = ast.parse((PACKAGE / name).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert imported <= allowed, f"{name} imports {imported - allowed}"


ANYWIDGET_NAMES = {"_esm", "_css"}
"""anywidget's documented class attributes (its API, underscored by design)."""


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """``obj._name`` only for names the same module defines (its own classes' attributes); ``from x import _name``
    never."""
    offences = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
        own |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        own |= ANYWIDGET_NAMES
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                offences += [
                    f"{path.name}: imports {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id not in ("self", "cls")
                and node.attr not in own
            ):
                offences.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offences, offences


# --- one error base ---------------------------------------------------------------------------------------------


def test_every_library_error_derives_from_simvis_error() -> None:
    for name in (
        "DecompositionError",
        "ImageInputError",
        "ModelError",
        "WeightsUnavailableError",
        "GalleryError",
        "WidgetError",
        "PairExplorerError",
        "LimitError",
        "LinearisationError",
        "CellIndexError",
    ):
        cls = getattr(sv, name)
        assert issubclass(cls, sv.SimvisError) and issubclass(cls, ValueError), name
    with pytest.raises(sv.SimvisError):
        sv.load_image(object())
    with pytest.raises(sv.SimvisError):
        sv.decompose(_feats(c=3), _feats(c=4))


def test_public_namespace_holds_no_internals() -> None:
    for internal in ("pooling_shares", "region_query", "check_pooling", "fingerprint"):
        assert not hasattr(sv, internal), internal
    for public in (
        "ModelSession",
        "SessionOptions",
        "ExplainedPair",
        "Explanation",
        "Gallery",
        "Hit",
        "decompose",
        "PairExplorer",
        "RetrievalExplorer",
        "CompareExplorer",
        "snapshots",
        "datasets",
        "SimvisError",
    ):
        assert public in sv.__all__ and hasattr(sv, public), public


# --- session options and fingerprints ---------------------------------------------------------------------------


def test_session_options_are_one_frozen_value(resnet18_random: sv.ModelSession) -> None:
    opts = resnet18_random.options
    assert isinstance(opts, sv.SessionOptions) and opts.stride == 32 and opts.channels == 512
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.pooling = "max"  # type: ignore[misc]
    assert opts.replace(name="another label") == opts  # the label does not change the embeddings
    assert opts.replace(pooling="max") != opts
    assert opts.replace(pooling="gem", p=np.float32(3)).p == 3.0  # numpy scalars are numbers too
    head = torch.rand(8, 512, generator=torch.Generator().manual_seed(0))
    assert opts.replace(head=head) == opts.replace(head=(head.clone(), None))  # heads compare by value
    assert opts.replace(head=head) != opts.replace(head=head * 2)
    with pytest.raises(TypeError, match="unknown option"):
        opts.replace(poolin="max")
    with pytest.raises(sv.ModelError, match="std must be three finite numbers > 0"):
        opts.replace(std=(0.2, 0.0, 0.2))
    with pytest.raises(sv.ModelError, match="max_aspect"):
        opts.replace(max_aspect=0.5)
    variant = resnet18_random.variant(pooling="gem", p=np.float32(4))
    assert variant.model is resnet18_random.model and variant.options.p == 4.0
    assert variant.options.replace(pooling="avg", p=3.0) == opts


def test_weights_fingerprint_tells_same_name_sessions_apart(photos: dict) -> None:
    torch.manual_seed(0)
    one = sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=64, device="cpu")
    torch.manual_seed(1)
    other = sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=64, device="cpu")
    assert one.name == other.name and one.options == other.options
    assert one.weights_digest != other.weights_digest
    differs = {k for k in one.fingerprint() if one.fingerprint()[k] != other.fingerprint()[k]}
    assert differs == {"weights"}
    again = sv.ModelSession(one.model, options=one.options, device="cpu")
    assert again.fingerprint() == one.fingerprint()


def test_gallery_refuses_a_session_with_other_weights(photos: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    builder = sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=64, device="cpu")
    torch.manual_seed(1)
    impostor = sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=64, device="cpu")
    images = [photos["chelsea"], photos["coffee"], photos["astronaut"]]
    gallery = sv.Gallery.build(images, builder, tmp_path / "g", progress=False)
    with pytest.raises(sv.GalleryError) as err:
        sv.Gallery.open(tmp_path / "g", impostor)
    expected = f"(weights: gallery '{builder.weights_digest}' vs session '{impostor.weights_digest}')"
    assert "was built with another session " + expected in str(err.value)  # the only field that differs
    with pytest.raises(sv.GalleryError, match="weights: gallery"):
        sv.Gallery.build(images, impostor, tmp_path / "g", progress=False)  # nor is it built into
    opened = sv.Gallery.open(tmp_path / "g", builder)
    assert len(opened) == 3 and opened.store.version == gallery.store.version
    torch.testing.assert_close(opened.embeddings, gallery.embeddings, rtol=0, atol=0)


def test_snapshots_live_with_the_session_and_copy_like(resnet18_random: sv.ModelSession, tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "epoch1.pt"
    torch.save(resnet18_random.model.state_dict(), path)
    (snap,) = sv.snapshots(lambda: torchvision.models.resnet18(), [path], like=resnet18_random.variant(pooling="max"))
    assert snap.options.replace(name=resnet18_random.name) == resnet18_random.options.replace(pooling="max")
    assert snap.weights_digest == resnet18_random.weights_digest and snap.name == "epoch1"
    with pytest.raises(sv.ModelError, match="not a torch.nn.Module"):
        sv.snapshots(lambda: "nope", [path])  # type: ignore[arg-type,return-value]


def test_public_encode_and_batch_features_agree(resnet18_random: sv.ModelSession, photos: dict) -> None:
    enc = resnet18_random.encode(photos["coffee"])
    assert enc.source_size == photos["coffee"].shape[:2] and enc.grid == tuple(enc.features.shape[1:])
    batch = resnet18_random.batch_features([enc.image])
    torch.testing.assert_close(batch[0], enc.features)
    torch.testing.assert_close(resnet18_random.embed_features(batch)[0], resnet18_random.embed(photos["coffee"]))
    with pytest.raises(sv.ModelError, match="one size"):
        resnet18_random.batch_features([enc.image, enc.image[:64]])
    with pytest.raises(sv.ModelError, match="at least one"):
        resnet18_random.batch_features([])
    with pytest.raises(sv.ImageInputError, match="use prepare"):
        resnet18_random.resize(enc.image.astype(np.float32) / 255)


def test_a_session_without_a_name_is_labelled_by_its_class() -> None:
    assert sv.ModelSession(nn.Sequential(nn.Conv2d(3, 4, 3)), "0", name=None, device="cpu").name == "Sequential"


def test_bad_devices_are_model_errors() -> None:
    with pytest.raises(sv.ModelError, match="not a torch device"):
        sv.ModelSession(nn.Sequential(nn.Conv2d(3, 4, 3)), "0", device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(sv.ModelError, match="no usable CUDA"):
            sv.ModelSession(nn.Sequential(nn.Conv2d(3, 4, 3)), "0", device="cuda")


# --- numerically hostile inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["avg", "sum", "max", "gem"])
@pytest.mark.parametrize("normalize", [True, False])
def test_huge_finite_features_give_the_right_score_not_nan(pooling: str, normalize: bool) -> None:
    a, b = _feats(seed=2) * 1e19, _feats(seed=3) * 1e19  # float32 products overflow (3.4e38)
    ex = sv.decompose(a, b, pooling, normalize=normalize)
    pairwise, score = brute_force(a.double(), b.double(), pooling, 3.0, normalize, None, None)
    assert math.isfinite(ex.score)
    assert ex.score == pytest.approx(score, rel=1e-5) and float(pairwise.sum()) == pytest.approx(score, rel=1e-5)
    assert float(ex.map_a.sum()) == pytest.approx(ex.score, rel=1e-5)
    small = sv.decompose(a / 1e19, b / 1e19, pooling, normalize=normalize)
    if normalize and pooling != "gem":  # cosine is scale-invariant (GeM's clamp floor is not)
        assert ex.score == pytest.approx(small.score, rel=1e-5)


def test_overflow_even_in_float64_is_an_error_not_nan() -> None:
    a = torch.full((2, 2, 2), 1e200, dtype=torch.float64)
    with pytest.raises(sv.DecompositionError, match="not finite even in float64"):
        sv.decompose(a, a, normalize=False)


@pytest.mark.parametrize("p", [1e4, np.float32(3), np.int64(2)])
def test_gem_p_range_and_numpy_scalars(p: float) -> None:
    ex = sv.decompose(_feats(), _feats(seed=1), "gem", p=p)
    assert math.isfinite(ex.score) and float(ex.map_a.sum()) == pytest.approx(ex.score, abs=1e-5)
    with pytest.raises(sv.DecompositionError, match="1 <= p <= 10000"):
        sv.decompose(_feats(), _feats(seed=1), "gem", p=1e30)


def test_point_map_refuses_non_integers() -> None:
    ex = sv.decompose(_feats(), _feats(seed=1))
    torch.testing.assert_close(ex.point_map("a", np.int64(1), 2), ex.pairwise[1 * 4 + 2].reshape(3, 4))
    for bad in (1.7, float("nan"), "1", True):
        with pytest.raises(sv.CellIndexError, match="must be an integer"):
            ex.point_map("a", bad, 0)  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="outside"):
        ex.point_map("b", 0, 4)


def test_malformed_sequential_heads_are_named() -> None:
    with pytest.raises(
        sv.DecompositionError, match="layer 1 of the nn.Sequential takes 128 inputs but the layers before it give 256"
    ):
        sv.decompose(_feats(c=6), _feats(c=6, seed=1), head=nn.Sequential(nn.Linear(6, 256), nn.Linear(128, 4)))
    with pytest.raises(sv.DecompositionError, match="layer 1 of the nn.Sequential is a ReLU"):
        sv.decompose(_feats(c=6), _feats(c=6, seed=1), head=nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)))


@pytest.mark.gpu
def test_cuda_contract(photos: dict, tmp_path: Path) -> None:
    """On a GPU: the weights digest does not depend on the device, the explained pair and a gallery built there
    agree with the CPU, and overflowing features still give a finite score (the float64 retry runs on CUDA)."""
    torch.manual_seed(0)
    cpu = sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=128, device="cpu")
    gpu = sv.ModelSession(cpu.model, options=cpu.options, device="cuda")
    assert gpu.fingerprint() == cpu.fingerprint()  # (the network object now lives on the GPU)
    a, b = photos["motorcycle_left"], photos["motorcycle_right"]
    pair_gpu = gpu.explain(a, b)
    assert pair_gpu.map_a.device.type == "cuda" and isinstance(pair_gpu, sv.ExplainedPair)
    images = [photos[k] for k in ("chelsea", "coffee", "astronaut", "motorcycle_right")]
    gallery = sv.Gallery.build(images, gpu, progress=False)
    hits = gallery.search(a, k=2)
    assert hits[0].score == pytest.approx(gpu.explain(a, images[hits[0].index]).score, abs=1e-4)
    big = _feats(seed=2).cuda() * 1e19
    ex = sv.decompose(big, big * 0.5 + 1e18)
    assert math.isfinite(ex.score) and ex.score == pytest.approx(
        sv.decompose(big.cpu(), big.cpu() * 0.5 + 1e18).score, rel=1e-5
    )


def test_session_sizes_above_the_pixel_budget_are_refused_before_any_work() -> None:
    with pytest.raises(sv.LimitError, match="MAX_INPUT_PIXELS"):
        sv.SessionOptions(size=6000)
    with pytest.raises(sv.LimitError):
        sv.ModelSession(nn.Sequential(nn.Conv2d(3, 4, 3)), "0", size=100_000, device="cpu")
