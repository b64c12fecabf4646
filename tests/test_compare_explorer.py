"""CompareExplorer and snapshots without a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import traitlets

import simvis_widgets as sv
from simvis_widgets.widgets import encoding

from oracles import brute_force, torch_pool


def test_rows_carry_each_sessions_explanation(resnet18_random: sv.ModelSession, photos: dict) -> None:
    sessions = [resnet18_random, resnet18_random.variant(pooling="max"), resnet18_random.variant(pooling="gem", p=4)]
    c = sv.CompareExplorer(sessions, photos["chelsea"], photos["coffee"], labels=["avg", "max", "gem"])
    assert [p["label"] for p in c.panels] == ["avg", "max", "gem"]
    assert len(c.images) == 2  # the same two network inputs, sent once
    for panel, session in zip(c.panels, sessions):
        ex = session.explain(photos["chelsea"], photos["coffee"])
        assert panel["score"] == pytest.approx(ex.score)
        P = panel["matrix_scale"] * np.frombuffer(bytes(panel["pairwise"]), "<f4").reshape(ex.pairwise.shape)
        np.testing.assert_allclose(P, ex.pairwise.numpy(), rtol=1e-5, atol=1e-9)
    assert c.scores == [ex.score for ex in c.explanations] and c.show_all


def test_traits_and_errors(resnet18_random: sv.ModelSession, photos: dict) -> None:
    c = sv.CompareExplorer([resnet18_random] * 5, photos["chelsea"], photos["coffee"])
    assert not c.show_all  # more than 4 rows: the slider shows one at a time
    c.current = 4
    with pytest.raises(traitlets.TraitError, match=r"row index in \[0, 4\]"):
        c.current = 5
    with pytest.raises(traitlets.TraitError):
        c.mode = "zoom"
    with pytest.raises(sv.PairExplorerError, match="at least one session"):
        sv.CompareExplorer([], photos["chelsea"], photos["coffee"])
    with pytest.raises(sv.PairExplorerError, match="2 labels for 1 sessions"):
        sv.CompareExplorer([resnet18_random], photos["chelsea"], photos["coffee"], labels=["a", "b"])
    with pytest.raises(sv.PairExplorerError, match="must be ModelSession"):
        sv.CompareExplorer(["resnet18"], photos["chelsea"], photos["coffee"])  # type: ignore[list-item]


def test_set_pair_replaces_every_row(resnet18_random: sv.ModelSession, photos: dict) -> None:
    c = sv.CompareExplorer(
        [resnet18_random, resnet18_random.variant(pooling="max")], photos["chelsea"], photos["coffee"]
    )
    version = c._version
    c.set_pair(photos["motorcycle_left"], photos["motorcycle_right"])
    assert c._version == version + 1
    assert c.panels[1]["score"] == pytest.approx(
        resnet18_random.variant(pooling="max").explain(photos["motorcycle_left"], photos["motorcycle_right"]).score
    )


def _decode(data: Any, dtype: str) -> np.ndarray:
    """Little-endian float32 / float16 bytes as float64 (what the browser's decodeFloats does)."""
    return np.frombuffer(bytes(data), "<f2" if dtype == "float16" else "<f4").astype(np.float64)


def _getter(payload: Any) -> Any:
    """Read a payload field by name from a CompareExplorer row (a dict) or a PairExplorer (traits)."""
    return payload.get if isinstance(payload, dict) else lambda name: getattr(payload, name)


def _decoded_matrix(payload: Any, n_a: int, n_b: int) -> np.ndarray:
    """``P`` rebuilt from the bytes a widget sends: ``matrix_scale * P`` bytes, or ``scale * Q_A Q_B^T``."""
    get = _getter(payload)
    if get("matrix_kind") == "pairwise":
        assert bytes(get("shares_a")) == bytes(get("shares_b")) == b""
        return get("matrix_scale") * _decode(get("pairwise"), get("matrix_dtype")).reshape(n_a, n_b)
    assert get("matrix_kind") == "factors" and bytes(get("pairwise")) == b""
    d = get("factor_dim")
    qa = _decode(get("shares_a"), get("matrix_dtype")).reshape(n_a, d)
    qb = _decode(get("shares_b"), get("matrix_dtype")).reshape(n_b, d)
    return get("scale") * qa @ qb.T


def _oracle(session: sv.ModelSession, img_a: np.ndarray, img_b: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The pairwise matrix and score by the brute-force oracle (loops over locations, torch pooling) on the
    network's features: no code shared with simvis_widgets.decompose or the payload encoder."""
    xa, xb = session.encode(img_a).features, session.encode(img_b).features
    head = session.head
    weight, bias = (head.weight, head.bias) if head is not None else (None, None)
    P, score = brute_force(xa, xb, session.pooling, session.p, session.normalize, weight, bias)
    fa, fb = (torch_pool(x.double(), session.pooling, session.p) for x in (xa, xb))
    if head is not None:
        fa, fb = weight.double() @ fa + bias.double(), weight.double() @ fb + bias.double()
    return P.numpy(), score, 1.0 / float(fa.norm() * fb.norm()) if session.normalize else 1.0


def _signed_head() -> torch.nn.Linear:
    torch.manual_seed(2)
    return torch.nn.Linear(512, 12)


@pytest.mark.parametrize(
    "variant",
    [{}, {"pooling": "max"}, {"pooling": "gem", "p": 4.0}, {"normalize": False}, {"head": _signed_head()}],
    ids=["avg", "max", "gem", "dot", "head"],
)
def test_payload_bytes_decode_to_the_brute_force_decomposition(
    resnet18_random: sv.ModelSession, photos: dict, variant: dict
) -> None:
    """The bytes PairExplorer and CompareExplorer send decode (float32 + matrix_scale) to the oracle's P, and
    their maps to its row and column sums."""
    session = resnet18_random.variant(**variant) if variant else resnet18_random
    img_a, img_b = photos["chelsea"], photos["coffee"]
    P, score, scale = _oracle(session, img_a, img_b)
    n_a, n_b = P.shape
    pair = sv.PairExplorer(session, img_a, img_b)
    row = sv.CompareExplorer([resnet18_random, session], img_a, img_b).panels[1]
    for payload in (pair, row):
        get = _getter(payload)
        assert (get("matrix_kind"), get("matrix_dtype")) == ("pairwise", "float32")
        assert float(np.abs(_decode(get("pairwise"), "float32")).max()) == 1.0  # sent divided by its largest magnitude
        np.testing.assert_allclose(_decoded_matrix(payload, n_a, n_b), P, rtol=2e-5, atol=2e-6 * np.abs(P).max())
        np.testing.assert_allclose(_decode(get("map_a"), "float32"), P.sum(1), rtol=2e-5, atol=2e-6 * np.abs(P).max())
        np.testing.assert_allclose(_decode(get("map_b"), "float32"), P.sum(0), rtol=2e-5, atol=2e-6 * np.abs(P).max())
        assert get("score") == pytest.approx(score, rel=1e-5)
        assert get("scale") == pytest.approx(scale, rel=1e-5)
    assert row["grid_a"] == pair.grid_a and row["grid_b"] == pair.grid_b and n_a == np.prod(pair.grid_a)


def test_large_grids_decode_to_the_independent_matrix(photos: dict) -> None:
    """Above FLOAT16_ABOVE entries P travels as float16, above PAIRWISE_MAX as its factors: both decode to
    ``P = X_A^T X_B / (N_A N_B |f_A| |f_B|)`` (average pooling, computed here with plain torch)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, stride=4))  # signed features: P has both signs
    cases = {96: ("pairwise", "float16", 3e-3), 128: ("factors", "float16", 3e-3)}
    for size, (kind, dtype, rtol) in cases.items():
        session = sv.ModelSession(net, "0", size=size, device="cpu")
        img_a, img_b = photos["chelsea"], photos["coffee"]
        xa, xb = session.encode(img_a).features.double(), session.encode(img_b).features.double()
        la, lb = xa.flatten(1).T, xb.flatten(1).T  # (N, C)
        fa, fb = torch_pool(xa, "avg"), torch_pool(xb, "avg")
        P = ((la @ lb.T) / (la.shape[0] * lb.shape[0] * fa.norm() * fb.norm())).numpy()
        assert P.size > encoding.FLOAT16_ABOVE and (P.size > encoding.PAIRWISE_MAX) == (kind == "factors")
        row = sv.CompareExplorer([session], img_a, img_b).panels[0]
        assert (row["matrix_kind"], row["matrix_dtype"]) == (kind, dtype)
        np.testing.assert_allclose(_decoded_matrix(row, *P.shape), P, rtol=rtol, atol=rtol * np.abs(P).max())
        if size == 96:
            assert -P.min() > P.max() > 0  # the largest magnitude is negative: matrix_scale is |P|'s maximum
        np.testing.assert_allclose(
            _decode(row["map_a"], "float32"), P.sum(1), rtol=1e-4, atol=1e-6 * np.abs(P.sum(1)).max()
        )
        assert row["score"] == pytest.approx(float(fa @ fb / (fa.norm() * fb.norm())), rel=1e-5)


def test_snapshots_load_each_checkpoint(tmp_path: Path, photos: dict) -> None:
    from torchvision.models import resnet18

    paths = []
    for epoch in range(3):
        torch.manual_seed(epoch)
        model = resnet18()
        path = tmp_path / f"epoch{epoch}.pt"
        torch.save({"model_state_dict": model.state_dict(), "epoch": epoch}, path)
        paths.append(path)
    sessions = sv.snapshots(resnet18, paths, layer="layer4", size=96, device="cpu")
    assert [s.name for s in sessions] == ["epoch0", "epoch1", "epoch2"]
    torch.manual_seed(1)
    torch.testing.assert_close(sessions[1].model.conv1.weight, resnet18().conv1.weight)
    scores = [s.explain(photos["chelsea"], photos["coffee"]).score for s in sessions]
    assert len(set(scores)) == 3  # three different networks
    with pytest.raises(sv.ModelError, match="does not fit the model"):
        from torchvision.models import resnet34

        sv.snapshots(resnet34, paths[:1], layer="layer4")
    with pytest.raises(sv.ModelError, match="no checkpoints"):
        sv.snapshots(resnet18, [])
