"""The paper's training study on a real labelled data set: how a similarity network's maps change over training,
trained from scratch vs fine-tuned from ImageNet, under average vs max (vs GeM) pooling.

Recipe (one for every strategy, as retrieval papers do): the classes are split into training classes and held-out
classes; a network is trained on the training classes with pytorch-metric-learning's multi-similarity loss and
miner on batches of ``m`` images per class, and judged on the held-out classes only.

* the network: EfficientNet-Lite0 (the embedded ImageNet weights, or a random init) up to ``blocks[stage]``
  (stride 16: a 7 x 7 grid at 112 px), its local features pooled into the embedding, compared by cosine;
* strategies: ``pretrained`` (the ImageNet network untrained: epoch 0 only), ``finetuned`` (from the ImageNet
  weights), ``scratch`` (from a random init); plus ``classifier``: the whole ImageNet classifier's pooled
  ``forward_features`` (1280 channels, stride 32), the features a classification network gives;
* per epoch, on the held-out classes: Recall@1 and mAP (:func:`~simvis_widgets.studies.retrieval_quality`), and on
  fixed same-class pairs the map statistics of :mod:`simvis_widgets.studies` (concentration, share on the object,
  agreement with the previous epoch's map of the same pair); a checkpoint per epoch.

``python -m simvis_widgets.training_study --help`` runs it from the command line (``--full`` for the whole data
set; a GPU is used where there is one).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ._io import atomic_write
from .datasets import LabelledImages, fashion_mnist
from .decompose import POOLINGS, pool
from .errors import ModelError
from .models import build_backbone
from .session import ModelSession, default_device, resolve_device, snapshots
from .studies import concentration, map_agreement, object_share, retrieval_quality, silhouette

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

STRATEGIES = ("pretrained", "finetuned", "scratch", "classifier")
TRAINED = ("finetuned", "scratch")


@dataclass(frozen=True)
class StudyConfig:
    """What the study trains and measures. The defaults run in a few minutes on 2 CPU cores."""

    strategies: tuple[str, ...] = STRATEGIES
    poolings: tuple[str, ...] = ("avg", "max")
    epochs: int = 3
    train_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    heldout_classes: tuple[int, ...] = (5, 6, 7, 8, 9)
    train_per_class: int = 200
    """Training images per class (None in a full run: all of them)."""
    eval_per_class: int = 60
    """Held-out images per class for retrieval (from the test split)."""
    pairs: int = 24
    """Held-out same-class pairs whose maps are measured every epoch."""
    size: int = 112
    stage: int = 4
    """The last EfficientNet-Lite0 block stage kept (0-6); 3 and 4 have stride 16."""
    per_class_in_batch: int = 12
    learning_rate: float = 1e-3
    gem_p: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise ModelError(f"strategies must be among {', '.join(STRATEGIES)}; got {list(self.strategies)}")
        bad = [p for p in self.poolings if p not in POOLINGS]
        if bad or not self.poolings:
            raise ModelError(f"poolings must be among {', '.join(POOLINGS)}; got {list(self.poolings)}")
        if set(self.train_classes) & set(self.heldout_classes):
            raise ModelError("a class cannot be both a training and a held-out class")
        for name in ("epochs", "train_per_class", "eval_per_class", "pairs", "per_class_in_batch", "size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "epochs" else 1):
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.stage <= 6:
            raise ModelError(f"stage must be 0-6 (EfficientNet-Lite0 has 7 block stages), got {self.stage}")


class Trunk(nn.Module):
    """EfficientNet-Lite0 up to ``blocks[stage]``: ``forward_features(x)`` are its local features (the session
    reads them as timm's), ``forward`` the same."""

    def __init__(self, pretrained: bool, stage: int) -> None:
        super().__init__()
        net, _ = build_backbone("efficientnet_lite0", pretrained=pretrained)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)  # type: ignore[arg-type]
        self.blocks = nn.Sequential(*list(net.blocks)[: stage + 1])  # type: ignore[arg-type]

    def forward_features(self, x: Tensor) -> Tensor:
        out: Tensor = self.blocks(self.stem(x))
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


@dataclass
class EpochRecord:
    """One row of the study's table."""

    strategy: str
    pooling: str
    epoch: int
    recall_at_1: float
    mean_average_precision: float
    concentration: float
    """Mean over the pairs of the share of map A's total in its top 10 % of cells."""
    object_share: float
    """Mean over the pairs of the share of map A's positive contribution on the item (its silhouette)."""
    map_agreement: float
    """Mean over the pairs of the correlation of map A with the previous epoch's (NaN at a strategy's first)."""
    train_loss: float
    seconds: float


@dataclass
class StudyResult:
    """The records, the maps of the measured pairs by (strategy, pooling) and epoch, and where checkpoints are."""

    config: StudyConfig
    records: list[EpochRecord]
    pair_images: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    maps: dict[tuple[str, str], list[np.ndarray]] = field(repr=False)
    """``maps[(strategy, pooling)][epoch]``: ``(pairs, h, w)`` maps of image A of every measured pair."""
    checkpoints: dict[tuple[str, str], list[Path]] = field(repr=False)

    def rows(self, strategy: str | None = None, pooling: str | None = None) -> list[EpochRecord]:
        return [r for r in self.records if strategy in (None, r.strategy) and pooling in (None, r.pooling)]

    def table(self) -> str:
        """The records as a Markdown table."""
        head = "| strategy | pooling | epoch | R@1 | mAP | top-10 % share | on object | agreement | loss |"
        lines = [head, "|" + "---|" * 9]
        for r in self.records:
            lines.append(
                f"| {r.strategy} | {r.pooling} | {r.epoch} | {r.recall_at_1:.3f} | {r.mean_average_precision:.3f} | "
                f"{r.concentration:.2f} | {r.object_share:.2f} | {_fmt(r.map_agreement)} | {_fmt(r.train_loss)} |"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "records": [dataclasses.asdict(r) for r in self.records],
        }

    def sessions(self, strategy: str, pooling: str) -> list[ModelSession]:
        """One session per saved epoch of a trained strategy (from its checkpoints, ``weights_only``)."""
        paths = self.checkpoints.get((strategy, pooling))
        if not paths:
            raise ModelError(f"no checkpoints for {strategy}/{pooling}; trained: {sorted(self.checkpoints)}")
        stage = self.config.stage
        return snapshots(
            lambda: Trunk(pretrained=False, stage=stage),
            paths,
            labels=[f"{strategy} {pooling} epoch {e}" for e in range(len(paths))],
            **_session_options(self.config, pooling),
        )

    def curves_figure(self) -> Figure:
        """Each measure over the epochs, one line per strategy and pooling."""
        from .render import new_figure

        measures = [
            ("recall_at_1", "Recall@1 (held-out classes)"),
            ("mean_average_precision", "mAP (held-out classes)"),
            ("concentration", "share in the top 10 % of cells"),
            ("object_share", "positive share on the item"),
            ("map_agreement", "agreement with previous epoch"),
        ]
        fig = new_figure(figsize=(4 * len(measures), 3.4), layout="constrained")
        axes = fig.subplots(1, len(measures))
        for ax, (name, title) in zip(axes, measures):
            for strategy in self.config.strategies:
                for pooling in self.config.poolings:
                    rows = self.rows(strategy, pooling)
                    if not rows:
                        continue
                    xs = [r.epoch for r in rows]
                    ys = [getattr(r, name) for r in rows]
                    style = "-" if pooling == "avg" else "--" if pooling == "max" else ":"
                    ax.plot(xs, ys, style, marker="o", label=f"{strategy} {pooling}")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_xticks(range(self.config.epochs + 1))
        axes[0].legend(fontsize=7)
        return fig

    def maps_figure(self, pair: int = 0) -> Figure:
        """Map A of one measured pair at every epoch, a row per strategy and pooling, on ONE colour scale."""
        from .render import new_figure, shared_limit, upsample

        keys = [k for k in self.maps if self.maps[k]]
        epochs = max(len(self.maps[k]) for k in keys)
        limit = shared_limit(*[m[pair] for k in keys for m in self.maps[k]])
        image = self.pair_images[pair][0]
        fig = new_figure(figsize=(1.6 * (epochs + 1), 1.7 * len(keys) + 0.6), layout="constrained")
        axes = np.atleast_2d(fig.subplots(len(keys), epochs + 1, squeeze=False))
        for row, key in enumerate(keys):
            axes[row, 0].imshow(image, cmap="gray")
            axes[row, 0].set_ylabel(f"{key[0]}\n{key[1]}", fontsize=8)
            for col in range(epochs):
                ax = axes[row, col + 1]
                if col < len(self.maps[key]):
                    ax.imshow(image, cmap="gray")
                    heat = upsample(self.maps[key][col][pair], image.shape[:2])
                    shown = ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6)
                else:
                    ax.set_axis_off()  # an untrained strategy has epoch 0 only
                if row == 0:
                    ax.set_title(f"epoch {col}", fontsize=8)
            for ax in axes[row]:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.colorbar(shown, ax=list(axes.flat), orientation="horizontal", fraction=0.02, shrink=0.5).set_label(
            "contribution to the pair's similarity (one scale for every row)", fontsize=8
        )
        return fig


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _session_options(config: StudyConfig, pooling: str) -> dict[str, Any]:
    options: dict[str, Any] = {"pooling": pooling, "size": config.size, "cache_size": 0}
    if pooling == "gem":
        options["p"] = config.gem_p
    return options


def _measured_pairs(heldout: LabelledImages, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` same-class pairs of distinct held-out images, drawn with ``seed``, classes in turn."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(heldout.labels.tolist()))
    pairs = []
    for k in range(count):
        members = np.flatnonzero(heldout.labels == classes[k % len(classes)])
        a, b = rng.choice(members, 2, replace=False)
        pairs.append((int(a), int(b)))
    return pairs


def _evaluate(
    session: ModelSession, heldout: LabelledImages, pairs: Sequence[tuple[int, int]], rgb: list[np.ndarray]
) -> tuple[float, float, float, float, np.ndarray]:
    """(R@1, mAP, mean concentration, mean object share, maps of A) of one network on the held-out data."""
    embeddings = session.embed_many(rgb, batch_size=64, progress=False)
    quality = retrieval_quality(embeddings, heldout.labels, normalize=session.normalize)
    maps, conc, on_object = [], [], []
    for a, b in pairs:
        ex = session.explain(rgb[a], rgb[b])
        map_a = ex.map_a.detach().cpu().numpy()
        maps.append(map_a)
        conc.append(concentration(map_a))
        on_object.append(object_share(map_a, silhouette(heldout.images[a])))
    return (
        quality.recall_at_1,
        quality.mean_average_precision,
        float(np.nanmean(conc)),
        float(np.nanmean(on_object)),
        np.stack(maps),
    )


def _train_epoch(
    model: Trunk,
    x: Tensor,
    labels: Tensor,
    config: StudyConfig,
    pooling: str,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> float:
    """One pass over the training images in batches of ``per_class_in_batch`` images of each training class (each
    class's images in a fresh random order; the epoch ends when the smallest class runs out), with
    pytorch-metric-learning's multi-similarity loss and miner on the L2-normalised pooled features."""
    from pytorch_metric_learning import losses, miners

    loss_fn, miner = losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner()
    m = config.per_class_in_batch
    members = [torch.nonzero(labels == c).flatten() for c in config.train_classes]
    orders = [group[torch.randperm(len(group), generator=generator)] for group in members]
    batches = [
        torch.cat([order[k : k + m] for order in orders]) for k in range(0, min(len(o) for o in orders) - m + 1, m)
    ]
    model.train()
    total, steps = 0.0, 0
    device = next(model.parameters()).device
    for idx in batches:
        xb = x[idx].to(device, memory_format=torch.channels_last)  # oneDNN's fast layout, as sessions use
        flip = torch.rand(len(idx), generator=generator) < 0.5
        xb[flip.to(device)] = xb[flip.to(device)].flip(-1)
        feats = model(xb)
        locs = feats.flatten(2).transpose(1, 2)
        emb = nn.functional.normalize(pool(locs, pooling, config.gem_p), dim=-1)
        yb = labels[idx].to(device)
        loss = loss_fn(emb, yb, miner(emb, yb))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        steps += 1
    _recompute_batchnorm(model, x, m * len(config.train_classes))
    model.eval()
    return total / max(steps, 1)


@torch.no_grad()
def _recompute_batchnorm(model: nn.Module, x: Tensor, batch: int) -> None:
    """Set every batch norm's running statistics to their average over all of ``x`` (the network as trained now),
    instead of the momentum average of the last few batches, which lags behind the weights of a short training."""
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches that follow
    model.train()
    device = next(model.parameters()).device
    for start in range(0, len(x), batch):
        model(x[start : start + batch].to(device, memory_format=torch.channels_last))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def run_study(
    config: StudyConfig,
    train: LabelledImages,
    heldout: LabelledImages,
    checkpoint_dir: str | Path,
    log: Callable[[str], None] = print,
    device: str | torch.device | None = None,
) -> StudyResult:
    """Run every strategy and pooling of ``config`` (see the module docstring), writing one checkpoint per epoch
    of a trained strategy to ``checkpoint_dir/<strategy>_<pooling>/epoch<k>.pt`` (atomically)."""
    device = resolve_device(device)
    checkpoint_dir = Path(checkpoint_dir)
    train = train.subset(config.train_classes, config.train_per_class, seed=config.seed)
    heldout = heldout.subset(config.heldout_classes, config.eval_per_class, seed=config.seed)
    if len(train) == 0 or len(heldout) == 0:
        raise ModelError("no images of the chosen classes: check train_classes / heldout_classes")
    rgb = [heldout.rgb(i) for i in range(len(heldout))]
    pairs = _measured_pairs(heldout, config.pairs, config.seed)
    reference = ModelSession(Trunk(pretrained=True, stage=config.stage), size=config.size, device=device)
    x_train = reference.to_input([reference.prepare(train.rgb(i)) for i in range(len(train))]).contiguous().cpu()
    y_train = torch.tensor(train.labels)  # a copy: the data set's arrays are read-only

    records: list[EpochRecord] = []
    maps: dict[tuple[str, str], list[np.ndarray]] = {}
    checkpoints: dict[tuple[str, str], list[Path]] = {}
    for strategy in config.strategies:
        for pooling in config.poolings:
            key = (strategy, pooling)
            maps[key] = []
            generator = torch.Generator().manual_seed(config.seed)
            if strategy == "classifier":
                network: nn.Module = build_backbone("efficientnet_lite0")[0]
            else:
                torch.manual_seed(config.seed)  # the random init of "scratch"
                network = Trunk(pretrained=strategy != "scratch", stage=config.stage)
            epochs = config.epochs if strategy in TRAINED else 0
            optimizer = (
                torch.optim.AdamW(network.parameters(), lr=config.learning_rate) if strategy in TRAINED else None
            )
            if strategy in TRAINED:
                (checkpoint_dir / f"{strategy}_{pooling}").mkdir(parents=True, exist_ok=True)
                checkpoints[key] = []
            network.to(device).to(memory_format=torch.channels_last)
            for epoch in range(epochs + 1):
                t0 = time.perf_counter()
                loss = math.nan
                if epoch > 0:
                    assert optimizer is not None and isinstance(network, Trunk)
                    loss = _train_epoch(network, x_train, y_train, config, pooling, optimizer, generator)
                if strategy in TRAINED:
                    path = checkpoint_dir / f"{strategy}_{pooling}" / f"epoch{epoch}.pt"
                    with atomic_write(path) as f:
                        torch.save(network.state_dict(), f)
                    checkpoints[key].append(path)
                session = ModelSession(
                    copy.deepcopy(network),
                    name=f"{strategy} {pooling} epoch {epoch}",
                    device=device,
                    **_session_options(config, pooling),
                )
                r1, mean_ap, conc, on_object, pair_maps = _evaluate(session, heldout, pairs, rgb)
                agreement = (
                    float(np.nanmean([map_agreement(p, q) for p, q in zip(maps[key][-1], pair_maps)]))
                    if maps[key]
                    else math.nan
                )
                maps[key].append(pair_maps)
                records.append(
                    EpochRecord(
                        strategy,
                        pooling,
                        epoch,
                        r1,
                        mean_ap,
                        conc,
                        on_object,
                        agreement,
                        loss,
                        time.perf_counter() - t0,
                    )
                )
                log(
                    f"{strategy:10s} {pooling:4s} epoch {epoch}: R@1 {r1:.3f} mAP {mean_ap:.3f} "
                    f"top10% {conc:.2f} object {on_object:.2f} loss {_fmt(loss)} ({records[-1].seconds:.1f} s)"
                )
    pair_images = [(heldout.images[a], heldout.images[b]) for a, b in pairs]
    return StudyResult(config, records, pair_images, maps, checkpoints)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simvis_widgets.training_study", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("training_study"), help="folder for results and checkpoints")
    ap.add_argument("--full", action="store_true", help="all 30,000 training images and 5,000 held-out ones")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated, from " + ",".join(STRATEGIES))
    ap.add_argument("--poolings", default="avg,max", help="comma-separated, from avg,max,gem,sum")
    ap.add_argument("--size", type=int, help="input size in px (default 112)")
    ap.add_argument("--stage", type=int, help="last EfficientNet-Lite0 block stage kept (default 4: stride 16)")
    ap.add_argument("--pairs", type=int, help="same-class pairs whose maps are measured")
    ap.add_argument("--train-per-class", type=int)
    ap.add_argument("--eval-per-class", type=int)
    ap.add_argument("--root", help="folder holding the Fashion-MNIST files (default: where it is installed)")
    ap.add_argument("--device", help="torch device (default: cuda where there is one)")
    args = ap.parse_args(argv)
    changes: dict[str, Any] = {
        name: tuple(v.strip() for v in getattr(args, name).split(",") if v.strip())
        for name in ("strategies", "poolings")
    }
    if args.full:
        changes.update(train_per_class=6000, eval_per_class=1000, epochs=10, pairs=60)
    for name in ("epochs", "train_per_class", "eval_per_class", "size", "stage", "pairs"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    config = StudyConfig(**changes)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run_study(
        config,
        fashion_mnist("train", args.root),
        fashion_mnist("test", args.root),
        args.out / "checkpoints",
        device=args.device,
    )
    took = time.perf_counter() - t0
    summary = result.to_json() | {"seconds": took, "device": str(args.device or default_device())}
    with atomic_write(args.out / "results.json", text=True) as f:
        json.dump(summary, f, indent=1)
    with atomic_write(args.out / "results.md", text=True) as f:
        f.write(result.table() + "\n")
    from .render import save_figure

    save_figure(result.curves_figure(), args.out / "curves.png")
    save_figure(result.maps_figure(0), args.out / "maps.png")
    print(result.table())
    print(f"{took:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
