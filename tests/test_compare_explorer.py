"""CompareExplorer and snapshots without a browser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets

import simvis_widgets as sv
from simvis_widgets.widgets.pair_explorer import matrix_payload


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
    c = sv.CompareExplorer([resnet18_random, resnet18_random.variant(pooling="max")], photos["chelsea"], photos["coffee"])
    version = c._version
    c.set_pair(photos["motorcycle_left"], photos["motorcycle_right"])
    assert c._version == version + 1
    assert c.panels[1]["score"] == pytest.approx(resnet18_random.variant(pooling="max").explain(photos["motorcycle_left"], photos["motorcycle_right"]).score)


def test_matrix_payload_is_shared_with_pair_explorer(resnet18_random: sv.ModelSession, photos: dict) -> None:
    ex = resnet18_random.explain(photos["chelsea"], photos["coffee"])
    pair = sv.PairExplorer.from_explanation(ex)
    for name, value in matrix_payload(ex).items():
        assert getattr(pair, name) == value


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
