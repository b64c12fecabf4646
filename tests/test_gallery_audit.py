"""Dataset bias: class maps equal the brute-force mean of ``session.explain`` maps over within-class pairs; the
shortcut audit finds a stamp planted on a quarter of a Fashion-MNIST gallery (images and place) and finds nothing
in the same gallery unstamped; ``pair_peaks`` equals a loop over the pairwise matrix; bad arguments are named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import simvis_widgets as sv
from simvis_widgets.errors import GalleryError
from simvis_widgets.gallery.audit import FAR, pair_peaks
from simvis_widgets.render import audit_figure, class_maps_figure, upsample

STAMP_PX = 30
IMAGE_PX = 112


@pytest.fixture(scope="module")
def session() -> sv.ModelSession:
    return sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")


@pytest.fixture(scope="module")
def fashion() -> tuple[list[np.ndarray], list[int]]:
    data = sv.datasets.fashion_mnist("test").subset(per_class=8, seed=1)
    return [data.rgb(i, size=IMAGE_PX) for i in range(len(data))], [int(v) for v in data.labels]


def _stamp(image: np.ndarray, size: int = STAMP_PX) -> np.ndarray:
    """A red / white checkerboard of ``size`` px, 4 px from the bottom-right corner."""
    out = image.copy()
    h, w = out.shape[:2]
    yy, xx = np.mgrid[:size, :size]
    q = max(1, size // 4)
    patch = np.where((((yy // q) + (xx // q)) % 2 == 0)[..., None], [255, 255, 255], [220, 0, 0]).astype(np.uint8)
    out[h - size - 4 : h - 4, w - size - 4 : w - 4] = patch
    return out


def test_class_maps_equal_the_brute_force_mean_of_pair_maps(session: sv.ModelSession, fashion) -> None:
    images, labels = fashion
    picked = [i for c in (0, 1, 5) for i in [j for j, lab in enumerate(labels) if lab == c][:3]] + [
        next(j for j, lab in enumerate(labels) if lab == 7)  # a single member: left out
    ]
    imgs, labs = [images[i] for i in picked], [labels[i] for i in picked]
    gallery = sv.Gallery.build(imgs, session, labels=labs, features="recompute", progress=False)
    size = (60, 70)
    cm = gallery.class_maps(size=size)
    assert cm.labels == (0, 1, 5) and cm.left_out == (7,) and cm.size == size
    for label, values, cells, score in zip(cm.labels, cm.maps, cm.cell_maps, cm.mean_scores):
        members = [i for i, lab in enumerate(labs) if lab == label]
        pairs = [session.explain(imgs[a], imgs[b]) for a in members for b in members if a != b]
        brute = np.mean([upsample(ex.map_a, size) for ex in pairs], axis=0)
        np.testing.assert_allclose(values.numpy(), brute, rtol=1e-4, atol=1e-6 * np.abs(brute).max())
        assert cells is not None
        np.testing.assert_allclose(
            cells.numpy(), torch.stack([ex.map_a for ex in pairs]).mean(0).numpy(), rtol=1e-4, atol=1e-7
        )
        assert score == pytest.approx(float(np.mean([ex.score for ex in pairs])), rel=1e-5)
        assert float(cells.sum()) == pytest.approx(score, rel=1e-4)  # no head: the map sums to the score
    fig = class_maps_figure(cm, {0: imgs[0]}, names={0: "T-shirt"}, columns=2)
    assert len(fig.axes) == 5  # 2 x 2 panels and a colour bar
    with pytest.raises(GalleryError, match="labels \\[3\\] are not in the gallery"):
        gallery.class_maps(labels=[3])
    with pytest.raises(GalleryError, match="size must be"):
        gallery.class_maps(size=(0, 5))
    with pytest.raises(GalleryError, match="no class map for label 9"):
        cm.map(9)


@pytest.fixture(scope="module")
def stamped(session: sv.ModelSession, fashion) -> tuple[sv.Gallery, set[int]]:
    images, _ = fashion
    rng = np.random.default_rng(0)
    chosen = set(rng.choice(len(images), len(images) // 4, replace=False).tolist())
    planted = [_stamp(im) if i in chosen else im for i, im in enumerate(images)]
    gallery = sv.Gallery.build(planted, session, progress=False)
    return gallery, {i for i, src in enumerate(gallery.sources) if src in chosen}


def test_the_audit_finds_a_planted_stamp_and_where_it_is(stamped) -> None:
    gallery, truth = stamped
    findings = gallery.audit(k=10)
    assert len(findings) >= 1
    top = findings[0]
    found = set(top.images)
    precision, recall = len(found & truth) / len(found), len(found & truth) / len(truth)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)
    # the stamp's centre in relative coordinates; the finding's box centre within one cell of it
    centre = (IMAGE_PX - 4 - STAMP_PX / 2) / IMAGE_PX
    h, w = top.grid
    x0, y0, x1, y1 = top.box
    assert abs((x0 + x1) / 2 - centre) <= 1 / w and abs((y0 + y1) / 2 - centre) <= 1 / h, top
    assert top.share == pytest.approx(len(found) / len(gallery)) and top.peak >= 2.0
    fig = audit_figure(top, [gallery.image(i) for i in top.images[:4]])
    assert len(fig.axes) == 4


def test_an_unstamped_gallery_gives_no_finding(session: sv.ModelSession, fashion) -> None:
    images, _ = fashion
    gallery = sv.Gallery.build(images, session, progress=False)
    assert gallery.audit(k=10) == ()


def test_audit_arguments_are_checked(stamped, session: sv.ModelSession, fashion) -> None:
    gallery, _ = stamped
    for kwargs, message in [
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 2.5}, "k must be a positive integer"),
        ({"ratio": 0.5}, "ratio must be >= 1"),
        ({"ratio": math.nan}, "ratio must be a finite number"),
        ({"min_lift": -1}, "min_lift must be >= 0"),
        ({"min_images": 1}, "min_images must be >= 2"),
        ({"max_findings": 0}, "max_findings must be a positive integer"),
    ]:
        with pytest.raises(GalleryError, match=message):
            gallery.audit(**kwargs)
    coarse = sv.Gallery.build(fashion[0][:4], session.variant(size=64), progress=False)
    with pytest.raises(GalleryError, match="too coarse for an audit"):
        coarse.audit()
    five = sv.Gallery.build(fashion[0][:4], session.variant(size=160), progress=False)  # a 5 x 5 grid
    with pytest.raises(GalleryError, match=r"grid \(5, 5\) is too coarse for an audit \(needs at least 6 x 6"):
        five.audit()
    with pytest.raises(GalleryError, match="at least 3 images"):
        sv.Gallery.build(fashion[0][:2], session, progress=False).audit()
    with pytest.raises(GalleryError, match="no labels"):
        coarse.class_maps()
    maxed = sv.Gallery.build(fashion[0][:4], session.variant(pooling="max"), progress=False)
    with pytest.raises(GalleryError, match="measured for average \\(and sum\\) pooling only, not 'max'"):
        maxed.audit()
    gem = sv.Gallery.build(fashion[0][:4], session.variant(pooling="gem", p=3), progress=False)
    with pytest.raises(GalleryError, match="GeM has not been measured"):
        gem.audit()


def _peaks_by_loops(p: np.ndarray, grid_a: tuple[int, int], grid_b: tuple[int, int]) -> np.ndarray:
    """The module docstring's ``peak``, one cell at a time."""
    (ha, wa), (hb, wb) = grid_a, grid_b
    out = np.zeros(grid_a)
    for r in range(ha):
        for c in range(wa):
            mr, mc = int((r + 0.5) / ha * hb), int((c + 0.5) / wa * wb)
            d = p[r * wa + c, mr * wb + mc]
            best = -np.inf
            for rr in range(hb):
                for cc in range(wb):
                    if max(abs(rr - mr), abs(cc - mc)) >= FAR:
                        best = max(best, p[r * wa + c, rr * wb + cc])
            for rr in range(ha):
                for cc in range(wa):
                    if max(abs(rr - r), abs(cc - c)) >= FAR:
                        best = max(best, p[rr * wa + cc, mr * wb + mc])
            if d > 0 and np.isfinite(best):
                out[r, c] = np.inf if best <= 0 else d / best
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 6), st.integers(3, 6), st.integers(3, 6), st.integers(3, 6))
def test_pair_peaks_equal_loops(seed: int, ha: int, wa: int, hb: int, wb: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(ha * wa, hb * wb, generator=g, dtype=torch.float64)
    pp = pair_peaks(p, (ha, wa), (hb, wb))
    np.testing.assert_allclose(pp.peak.numpy(), _peaks_by_loops(p.numpy(), (ha, wa), (hb, wb)), rtol=1e-5)
    same = pp.same.numpy()
    lift = p.numpy()[np.arange(ha * wa), same] / np.abs(p.numpy()).mean()
    np.testing.assert_allclose(pp.lift.numpy().flatten(), lift, rtol=1e-5)
