"""Indexing engines: turn build items into stored rows and commit them as they go.

One item is decoded, hashed and resized by :func:`load_item`; a group of loaded items of one size goes through
the network in one batch (:func:`embed_group`). Both are used by every engine, so the local engine and the Ray
engine (:mod:`simvis_widgets.gallery.ray_engine`) write the same rows. :class:`CommitPolicy` commits every
``rows`` images or ``seconds`` seconds, whichever comes first: a killed build keeps every commit it made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._io import file_digest, image_hash
from ..decompose import pooled_embeddings
from ..errors import GalleryError
from ..images import ImageInputError, load_image
from ..session import ModelSession
from .store import StoredRow

FLOAT16_MAX = float(np.finfo(np.float16).max)
"""Local features are stored as float16: a build refuses features above this (65504) instead of storing inf."""


@dataclass(frozen=True)
class BuildItem:
    """One image to embed: its position in the build's source list, the source, its label and storage key."""

    position: int
    source: Any
    label: Any
    key: str | None
    """The row key: a file's absolute path, known before decoding; None for an in-memory image (from its pixels)."""
    file_hash: str | None = None
    pixel_hash: str | None = None
    """An in-memory image's pixel hash when the plan already computed it (it is not computed twice)."""


@dataclass
class Loaded:
    item: BuildItem
    prepared: np.ndarray | None
    pixel_hash: str
    file_hash: str | None
    error: str | None = None


def memory_key(position: int, pixel_hash: str) -> str:
    """The row key of in-memory image ``position`` with these pixels."""
    return f"memory:{position}:{pixel_hash}"


def source_name(item: BuildItem) -> str:
    return str(item.source) if item.key is not None else str(item.position)


def load_item(item: BuildItem, resize: Callable[[np.ndarray], np.ndarray]) -> Loaded:
    """Decode, hash and resize one item; an unreadable one comes back with ``error`` set."""
    try:
        raw = load_image(item.source)
        prepared = resize(raw)
        file_hash = item.file_hash
        if item.key is not None and file_hash is None:
            file_hash = file_digest(item.source)
        return Loaded(item, prepared, item.pixel_hash or image_hash(raw), file_hash)
    except (ImageInputError, FileNotFoundError, OSError) as err:
        return Loaded(item, None, "", item.file_hash, str(err))


def unreadable_row(loaded: Loaded) -> StoredRow | None:
    """The row that records an unreadable file (so a rebuild skips it while its bytes are unchanged); None for an
    in-memory image, which has no bytes to recognise."""
    item = loaded.item
    if item.key is None or loaded.file_hash is None:
        return None
    return StoredRow(
        key=item.key,
        source=source_name(item),
        in_memory=False,
        label=item.label,
        pixel_hash="",
        file_hash=loaded.file_hash,
        grid=(0, 0),
        embedding=None,
        error=loaded.error or "unreadable",
    )


def embed_group(group: Sequence[Loaded], session: ModelSession, store_features: bool) -> list[StoredRow]:
    """Run one batch of same-size loaded items through the network: their rows."""
    feats = session.batch_features([it.prepared for it in group])  # type: ignore[misc]
    # a value beyond float16's range becomes inf here (as does an inf); a NaN stays NaN and is refused below.
    # Finite float16 values sum to at most 65504 x their count, finite in float32 for any feature map, so the
    # element-wise check runs only where the sum (one pass, 3x faster) is not finite
    half_t = feats.detach().to(torch.float16).cpu() if store_features else None
    half = half_t.numpy() if half_t is not None else None
    if (
        half_t is not None
        and not bool(torch.isfinite(half_t.sum(dtype=torch.float32)))
        and bool(torch.isinf(half_t).any())
    ):
        peak = float(feats.abs().max())
        raise GalleryError(
            f"{session.name} gives local features up to {peak:.3g} for {group[0].item.source!r}; the gallery "
            f"stores them as float16, whose largest value is {FLOAT16_MAX:g}: scale the features down "
            "(e.g. a layer before the last activation) or build with features='recompute'"
        )
    _, emb = pooled_embeddings(feats, session.pooling, session.p, session.head)
    check_embeddings(emb, [loaded.item.source for loaded in group], session.normalize)
    rows = []
    for i, (loaded, f, e) in enumerate(zip(group, feats, emb)):
        item = loaded.item
        rows.append(
            StoredRow(
                key=item.key if item.key is not None else memory_key(item.position, loaded.pixel_hash),
                source=source_name(item),
                in_memory=item.key is None,
                label=item.label,
                pixel_hash=loaded.pixel_hash,
                file_hash=loaded.file_hash,
                grid=(int(f.shape[1]), int(f.shape[2])),
                embedding=e.detach().float().cpu().numpy(),
                features=half[i] if half is not None else None,
            )
        )
    return rows


def check_embeddings(embeddings: torch.Tensor, sources: Sequence[Any], normalize: bool) -> None:
    """Refuse, before anything is committed, embeddings a gallery could not score: non-finite ones, and all-zero
    ones under cosine similarity (undefined)."""
    finite = torch.isfinite(embeddings).all(dim=1)
    if not bool(finite.all()):
        bad = sources[int((~finite).nonzero()[0])]
        raise GalleryError(f"the network gives a non-finite embedding for {bad!r}; nothing of this batch was stored")
    if normalize:
        zero = embeddings.norm(dim=1) == 0
        if bool(zero.any()):
            bad = sources[int(zero.nonzero()[0])]
            raise GalleryError(
                f"the network gives an all-zero embedding for {bad!r}: cosine similarity is undefined for it"
            )


def embed_loaded(
    batch: Sequence[Loaded], session: ModelSession, store_features: bool
) -> tuple[list[StoredRow], list[Loaded]]:
    """Rows of a batch of loaded items (grouped by prepared size) and the items that could not be read."""
    groups: dict[tuple[int, ...], list[Loaded]] = {}
    failed = []
    for loaded in batch:
        if loaded.prepared is None:
            failed.append(loaded)
        else:
            groups.setdefault(loaded.prepared.shape, []).append(loaded)
    rows: list[tuple[int, StoredRow]] = []
    for group in groups.values():
        positions = [loaded.item.position for loaded in group]
        rows.extend(zip(positions, embed_group(group, session, store_features)))
    return [row for _, row in sorted(rows, key=lambda pr: pr[0])], failed


class CommitPolicy:
    """Buffers rows and hands them to ``commit`` every ``rows`` rows or ``seconds`` seconds."""

    def __init__(self, commit: Callable[[list[StoredRow]], None], rows: int, seconds: float) -> None:
        if not isinstance(rows, int) or rows < 1:
            raise GalleryError(f"commit_every must be a positive integer, got {rows!r}")
        if not seconds > 0:
            raise GalleryError(f"commit_seconds must be > 0, got {seconds!r}")
        self._commit, self.rows, self.seconds = commit, rows, seconds
        self._pending: list[StoredRow] = []
        self._since = time.monotonic()
        self.commits = 0

    def add(self, rows: Sequence[StoredRow]) -> None:
        self._pending.extend(rows)
        if len(self._pending) >= self.rows or time.monotonic() - self._since >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._commit(self._pending)
            self.commits += 1
        self._pending = []
        self._since = time.monotonic()


class _LoadDataset(torch.utils.data.Dataset):
    """Loads items in DataLoader workers, overlapped with the network."""

    def __init__(self, items: Sequence[BuildItem], resize: Callable[[np.ndarray], np.ndarray]) -> None:
        self.items, self.resize = items, resize

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Loaded:
        return load_item(self.items[i], self.resize)


def _as_list(batch: list[Loaded]) -> list[Loaded]:
    return batch


def run_local(
    items: Sequence[BuildItem],
    session: ModelSession,
    policy: CommitPolicy,
    *,
    store_features: bool,
    batch_size: int,
    num_workers: int | None,
    progress: bool,
) -> list[Loaded]:
    """Embed ``items`` in this process and commit their rows through ``policy``; returns the unreadable ones."""
    from tqdm.auto import tqdm

    if not items:
        return []
    # Decoding in worker processes only pays where there are cores to spare (on 2 cores it was slower).
    cores = os.cpu_count() or 1
    workers = num_workers if num_workers is not None else (min(4, cores // 2) if cores > 2 and len(items) > 32 else 0)
    loader = torch.utils.data.DataLoader(
        _LoadDataset(items, session.resizer()),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_as_list,
        pin_memory=session.device.type == "cuda",
    )
    failed: list[Loaded] = []
    with tqdm(total=len(items), desc=f"gallery ({session.name})", unit="img", disable=not progress) as bar:
        for batch in loader:
            rows, bad = embed_loaded(batch, session, store_features)
            failed.extend(bad)
            policy.add(rows + [r for r in map(unreadable_row, bad) if r is not None])
            if bad:
                bar.total -= len(bad)  # the bar counts images embedded, not files tried
                bar.set_postfix(unreadable=len(failed))
            bar.update(len(rows))
    policy.flush()
    return failed
