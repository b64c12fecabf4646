"""The training study on real Fashion-MNIST, tiny (a 32 px input, two block stages, a dozen images a class): the
records are what the saved checkpoints give when measured again independently, the untrained strategies agree
where they must, and the command line writes its table and figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from simvis_widgets.datasets import fashion_mnist
from simvis_widgets.errors import ModelError
from simvis_widgets.studies import concentration, object_share, retrieval_quality, silhouette
from simvis_widgets.training_study import StudyConfig, Trunk, main, run_study

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist is not installed (make test installs it)",
)

TINY = StudyConfig(
    strategies=("pretrained", "finetuned", "scratch"),
    poolings=("avg", "max"),
    epochs=1,
    train_classes=(0, 1),
    heldout_classes=(7, 9),
    train_per_class=16,
    eval_per_class=6,
    pairs=2,
    size=32,
    stage=1,
    per_class_in_batch=8,
)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("study")
    return run_study(TINY, fashion_mnist("train"), fashion_mnist("test"), folder, log=lambda _: None, device="cpu")


def test_records_cover_every_strategy_and_epoch(study) -> None:  # type: ignore[no-untyped-def]
    keys = [(r.strategy, r.pooling, r.epoch) for r in study.records]
    assert keys == [
        ("pretrained", "avg", 0),
        ("pretrained", "max", 0),
        ("finetuned", "avg", 0),
        ("finetuned", "avg", 1),
        ("finetuned", "max", 0),
        ("finetuned", "max", 1),
        ("scratch", "avg", 0),
        ("scratch", "avg", 1),
        ("scratch", "max", 0),
        ("scratch", "max", 1),
    ]
    for r in study.records:
        assert (r.epoch == 0) == math.isnan(r.train_loss) == math.isnan(r.map_agreement)
        assert 0 <= r.recall_at_1 <= 1 and 0 < r.mean_average_precision <= 1 and 0 <= r.object_share <= 1
    # fine-tuning starts from the untrained ImageNet network: its epoch 0 is the "pretrained" strategy
    for pooling in TINY.poolings:
        pre, fine = study.rows("pretrained", pooling)[0], study.rows("finetuned", pooling)[0]
        assert (pre.recall_at_1, pre.mean_average_precision, pre.concentration) == (
            fine.recall_at_1,
            fine.mean_average_precision,
            fine.concentration,
        )
        assert np.array_equal(study.maps[("pretrained", pooling)][0], study.maps[("finetuned", pooling)][0])
    table = study.table().splitlines()
    assert len(table) == 2 + len(study.records) and table[0].startswith("| strategy | pooling | epoch | R@1 |")


def test_checkpoints_reproduce_the_records(study) -> None:  # type: ignore[no-untyped-def]
    # measured again from the saved weights, through the public API only
    heldout = fashion_mnist("test").subset(TINY.heldout_classes, TINY.eval_per_class, seed=TINY.seed)
    rgb = [heldout.rgb(i) for i in range(len(heldout))]
    for strategy, pooling in [("finetuned", "max"), ("scratch", "avg")]:
        sessions = study.sessions(strategy, pooling)
        assert len(sessions) == 2
        for epoch, session in enumerate(sessions):
            record = study.rows(strategy, pooling)[epoch]
            quality = retrieval_quality(session.embed_many(rgb, progress=False), heldout.labels)
            assert quality.recall_at_1 == pytest.approx(record.recall_at_1, abs=1e-9)
            assert quality.mean_average_precision == pytest.approx(record.mean_average_precision, abs=1e-6)
        maps_now = study.maps[(strategy, pooling)][1]
        pair_a, pair_b = study.pair_images[0]
        ex = sessions[1].explain(np.repeat(pair_a[..., None], 3, 2), np.repeat(pair_b[..., None], 3, 2))
        np.testing.assert_allclose(ex.map_a.numpy(), maps_now[0], atol=1e-5)
        conc = [concentration(m) for m in maps_now]
        on_object = [object_share(m, silhouette(img)) for m, (img, _) in zip(maps_now, study.pair_images)]
        record = study.rows(strategy, pooling)[1]
        assert record.concentration == pytest.approx(float(np.nanmean(conc)))
        assert record.object_share == pytest.approx(float(np.nanmean(on_object)))
    # training changed the weights; the untrained epoch is the ImageNet trunk exactly
    first = torch.load(study.checkpoints[("finetuned", "avg")][0], weights_only=True)
    trained = torch.load(study.checkpoints[("finetuned", "avg")][1], weights_only=True)
    assert first.keys() == trained.keys()
    assert any(not torch.equal(first[k], trained[k]) for k in first)
    reference = Trunk(pretrained=True, stage=TINY.stage).state_dict()
    assert all(torch.equal(first[k], reference[k]) for k in reference if not k.endswith("num_batches_tracked"))
    with pytest.raises(ModelError, match="no checkpoints for pretrained/avg"):
        study.sessions("pretrained", "avg")


def test_figures(study) -> None:  # type: ignore[no-untyped-def]
    curves = study.curves_figure()
    assert len(curves.axes) == 5 and len(curves.axes[0].lines) == 6
    maps = study.maps_figure(1)
    assert len(maps.axes) == 6 * 3 + 1  # a row per strategy and pooling (the image, epochs 0 and 1), a colour bar


def test_config_is_checked() -> None:
    with pytest.raises(ModelError, match="strategies must be among"):
        StudyConfig(strategies=("lucky",))
    with pytest.raises(ModelError, match="poolings must be among"):
        StudyConfig(poolings=("median",))
    with pytest.raises(ModelError, match="both a training and a held-out class"):
        StudyConfig(train_classes=(0, 1), heldout_classes=(1, 2))
    with pytest.raises(ModelError, match="pairs must be a positive integer"):
        StudyConfig(pairs=0)
    with pytest.raises(ModelError, match="stage must be 0-6"):
        StudyConfig(stage=7)


def test_command_line_writes_table_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--out", str(tmp_path), "--strategies", "pretrained,classifier", "--poolings", "avg", "--size", "32"]
    args += ["--stage", "1", "--eval-per-class", "4", "--pairs", "1", "--device", "cpu"]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["strategy"] for r in results["records"]] == ["pretrained", "classifier"]
    assert (tmp_path / "results.md").read_text().startswith("| strategy |")
    assert (tmp_path / "curves.png").stat().st_size > 1000 and (tmp_path / "maps.png").stat().st_size > 1000
    assert "| classifier | avg | 0 |" in capsys.readouterr().out
