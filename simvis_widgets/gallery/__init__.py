"""Region retrieval over a gallery stored as a Lance dataset (:mod:`.store`), searched exactly in RAM.

Region retrieval is exact (docs/method.md): for a query region with cell weights ``w`` on image A,

    s_R(B) = <sum_i w_i q_A[i], g_B> * scale(A, B),   g_B = e_B - c,   scale = 1 / (|e_A| |e_B|) (cosine)

so every score is one inner product with a per-image key (:mod:`.keys`), and equals
``session.explain(query, B).region_score("a", mask)``. The in-RAM index (:class:`.index.Int8Index`) holds one
byte per key value and returns the exact top-k (a certified re-rank from the stored float32 embeddings); the
approximate :class:`.ann.IvfPqIndex` serves galleries too big to scan. Local features are read (and verified)
only for the top-k hits, to draw their region maps, or recomputed from the images (``features="recompute"``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._io import file_digest, image_hash
from ..decompose import cell_weights, decompose, region_query
from ..errors import GalleryError
from ..images import ImageInputError, ImageLike, load_image
from ..pair import ExplainedPair
from ..session import ModelSession
from .audit import AuditFinding, ClassMaps, audit_gallery, gallery_class_maps
from .engines import FLOAT16_MAX, BuildItem, CommitPolicy, memory_key, run_local
from .index import ArrayKeys, Int8Index, SearchIndex, exact_scores
from .keys import search_key_query
from .searchable import StoreKeys, checked_index, load_searchable
from .sources import IMAGE_SUFFIXES, describe, gallery_sources, is_path, list_images
from .store import (
    FEATURE_MODES,
    FORMAT_VERSION,
    GalleryStore,
    GalleryWriter,
    dataset_uri,
    decode_label,
    encode_label,
    temporary_uri,
)

ENGINES = ("local", "ray")


@dataclass
class Hit:
    """One search result."""

    index: int
    """Position in the gallery."""
    source: str | int
    """The file path, or the position in the list of in-memory images the gallery was built from."""
    score: float
    """Exact region score s_R; for the whole image, the similarity itself (with a biased head: s_R + the global term)."""
    map: Tensor
    """The region map over the result image's cells: where the query region is matched."""
    label: Any = None


@dataclass(frozen=True)
class GalleryEntry:
    """What the gallery knows of one image."""

    source: str | int
    pixel_hash: str
    file_hash: str | None
    grid: tuple[int, int]
    label: Any = None


class Gallery:
    """Embeddings and local features of many images, stored in a Lance dataset; searchable by whole image,
    region or single cell. Make one with :meth:`build` or :meth:`open`."""

    def __init__(self, session: ModelSession, store: GalleryStore, images: Sequence[Any] | None = None) -> None:
        _require_exact(session)
        self.session = session
        self.store = store
        """The pinned dataset version this gallery reads."""
        self._images = list(images) if images is not None else None
        head = session.head
        bias = head.bias if head is not None else None
        self._bias = bias.detach().cpu().numpy().astype(np.float32) if bias is not None else None
        loaded = load_searchable(store, self._bias, session.normalize)
        self.unreadable: dict[str, tuple[str, str]] = loaded.unreadable
        """Files that could not be read, by file hash: ``(source, error)``. A rebuild skips a file whose bytes are
        unchanged without warning again."""
        self._store_rows = loaded.rows
        self._facts = loaded.facts
        self.keys: StoreKeys = loaded.keys
        """The exact scoring keys of the gallery's images (for other indexes, e.g. :class:`.ann.IvfPqIndex`)."""
        self.index: SearchIndex = loaded.index
        """What :meth:`search` ranks with: the exact :class:`.index.Int8Index` unless :meth:`use_index` set another."""
        self._entries: tuple[GalleryEntry, ...] | None = None
        self.reused = 0
        """Images already in the dataset (unchanged) at the last :meth:`build`."""
        self.embedded = len(self)
        """Images run through the network by the last :meth:`build`."""

    # ---------------------------------------------------------------------------------------------
    # Building and opening
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, session: ModelSession, *, images: Sequence[Any] | None = None) -> Gallery:
        """The gallery at ``path`` (a folder or any URI Lance supports), for ``session``: refused, naming the
        fields that differ, if it was built under another session fingerprint (weights included). Every row is
        verified as it is read. ``images``: the list of in-memory images the gallery was built from (file-based
        entries read their files), for :meth:`image` and ``features="recompute"``."""
        return cls(session, GalleryStore.open(dataset_uri(path), session.fingerprint()), images=images)

    @classmethod
    def build(
        cls,
        source: Any,
        session: ModelSession,
        path: str | os.PathLike | None = None,
        *,
        batch_size: int = 16,
        labels: Sequence[Any] | None = None,
        engine: str = "local",
        features: str = "store",
        commit_every: int = 256,
        commit_seconds: float = 30.0,
        num_workers: int | None = None,
        progress: bool = True,
        ray_options: dict[str, Any] | None = None,
    ) -> Gallery:
        """Embed ``source`` -- a folder (recursive, image files only), a list of paths / PIL images / arrays, or
        a torch ``Dataset`` (items: image or ``(image, label)``) -- into the dataset at ``path`` (None: a new
        temporary folder, deleted when the process exits), committing every ``commit_every`` images or
        ``commit_seconds`` seconds (checked after each batch of ``batch_size``).

        Building into an existing gallery embeds only what is missing or changed (a file is known by its path and
        bytes, an in-memory image by its position and pixels) and deletes the rows of images no longer in
        ``source``; a build that was killed resumes from its last commit. Unreadable files are skipped with one
        warning listing them (and remembered: unchanged, they are skipped silently next time).

        ``features="store"`` keeps each image's float16 local features (fast maps, more disk);
        ``"recompute"`` stores none and recomputes the hits' features for their maps. ``engine="ray"`` embeds on
        a Ray cluster (``ray_options``: see :func:`.ray_engine.run_ray`).
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise GalleryError(f"batch_size must be a positive integer, got {batch_size!r}")
        if engine not in ENGINES:
            raise GalleryError(f"engine must be one of {ENGINES}, got {engine!r}")
        if features not in FEATURE_MODES:
            raise GalleryError(f"features must be one of {FEATURE_MODES}, got {features!r}")
        _require_exact(session)
        sources, labels = gallery_sources(source, labels)
        if not sources:
            raise GalleryError(f"no images to build a gallery from ({describe(source)})")
        uri = dataset_uri(path) if path is not None else temporary_uri()
        writer = GalleryWriter(uri, session.fingerprint(), session.channels, features)
        policy = CommitPolicy(writer.commit, commit_every, commit_seconds)
        plan = _plan(sources, labels, writer.existing)
        writer.delete(plan.stale)
        if engine == "local":
            failed = run_local(
                plan.todo,
                session,
                policy,
                store_features=features == "store",
                batch_size=batch_size,
                num_workers=num_workers,
                progress=progress,
            )
        else:
            from .ray_engine import run_ray

            failed = run_ray(
                plan.todo,
                session,
                writer,
                policy,
                store_features=features == "store",
                batch_size=batch_size,
                progress=progress,
                **(ray_options or {}),
            )
        if failed:
            listing = "\n".join(f"  {f.item.source}: {f.error}" for f in failed)
            warnings.warn(f"skipped {len(failed)} unreadable image(s):\n{listing}", stacklevel=2)
        if not GalleryStore.exists(uri):
            raise GalleryError(f"none of the {len(sources)} images could be read ({describe(source)})")
        gallery = cls.open(uri, session, images=sources)
        if len(gallery) == 0:
            raise GalleryError(f"none of the {len(sources)} images could be read ({describe(source)})")
        gallery.reused = plan.reused
        gallery.embedded = len(plan.todo) - len(failed)
        return gallery

    # ---------------------------------------------------------------------------------------------
    # What the gallery holds
    # ---------------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Where the dataset is (a folder or URI)."""
        return self.store.uri

    @property
    def features_mode(self) -> str:
        """``"store"`` (local features in the dataset) or ``"recompute"``."""
        return self.store.info.features

    def __len__(self) -> int:
        return len(self._store_rows)

    @staticmethod
    def _entries_of(table: Any) -> list[GalleryEntry]:
        names = ("source", "in_memory", "pixel_hash", "file_hash", "grid_h", "grid_w", "label")
        columns = [table.column(c).to_pylist() for c in names]
        return [
            GalleryEntry(int(src) if mem else src, ph, fh, (gh, gw), decode_label(label))
            for src, mem, ph, fh, gh, gw, label in zip(*columns)
        ]

    @property
    def entries(self) -> tuple[GalleryEntry, ...]:
        """What the gallery knows of each image (source, content hashes, grid, label), in gallery order (built
        once, on first use: at millions of images prefer :meth:`entry`)."""
        if self._entries is None:
            self._entries = tuple(self._entries_of(self._facts)) if self._facts is not None else ()
        return self._entries

    def entry(self, index: int) -> GalleryEntry:
        """What the gallery knows of image ``index`` (read from the in-RAM Arrow table; no per-gallery objects)."""
        index = self._check_index(index)
        if self._entries is not None:
            return self._entries[index]
        return self._entries_of(self._facts.slice(index, 1))[0]

    @property
    def sources(self) -> list[str | int]:
        return [e.source for e in self.entries]

    @property
    def labels(self) -> list[Any]:
        return [e.label for e in self.entries]

    @property
    def embeddings(self) -> Tensor:
        """``(K, D)`` float32: the network's embeddings ``e`` (not normalised), read from the dataset."""
        return torch.from_numpy(self.keys.embeddings(np.arange(len(self))))

    def scoring_matrix(self) -> Tensor:
        """``(K, D)``: ``g_b / |e_b|`` (cosine) or ``g_b`` (dot), ``g = e - c``: region scores are this times the
        query vector (read from the dataset)."""
        keys = self.keys.keys(np.arange(len(self)))
        return torch.from_numpy(np.ascontiguousarray(keys[:, :-1]))

    def grid(self, index: int) -> tuple[int, int]:
        """The ``(h, w)`` feature grid of gallery image ``index``."""
        return self.entry(index).grid

    def image(self, index: int) -> np.ndarray:
        """Gallery image ``index`` as an ``H x W x 3`` uint8 array (read from its file, or from ``images``)."""
        entry = self.entry(index)
        if isinstance(entry.source, str):
            return load_image(entry.source)
        if self._images is None:
            raise GalleryError(
                f"gallery image {index} was an in-memory image: pass images=... to Gallery.open to show it"
            )
        if entry.source >= len(self._images):
            raise GalleryError(
                f"gallery image {index} was image {entry.source} of the build's list; images= has {len(self._images)}"
            )
        return load_image(self._images[entry.source])

    def stored_features(self, index: int) -> np.ndarray:
        """The local features of image ``index`` as stored (float16 ``(C, h, w)``, checksum verified)."""
        if self.features_mode != "store":
            raise GalleryError("this gallery stores no local features (features='recompute'): use features()")
        _, _, local = self.store.take(self._store_rows[[self._check_index(index)]], features=True)
        return local[0]  # type: ignore[return-value]

    def features(self, index: int) -> Tensor:
        """Local features ``(C, h, w)`` of gallery image ``index`` (float32, on the session's device)."""
        return self.hit_features([self._check_index(index)])[0]

    def hit_features(self, indices: Sequence[int]) -> list[Tensor]:
        """Local features of several images: one verified read, or one batch through the network
        (``features="recompute"``, after checking each image is unchanged since the build)."""
        if not len(indices):
            return []
        device = self.session.device
        if self.features_mode == "store":
            _, _, local = self.store.take(self._store_rows[np.asarray(indices, dtype=np.int64)], features=True)
            return [torch.from_numpy(np.asarray(f, dtype=np.float32)).to(device) for f in local]
        resize = self.session.resizer()
        prepared = [resize(self._unchanged_image(i)) for i in indices]
        out: list[Tensor | None] = [None] * len(indices)
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, p in enumerate(prepared):
            groups.setdefault(p.shape, []).append(j)
        for members in groups.values():
            feats = self.session.batch_features([prepared[j] for j in members])
            for j, f in zip(members, feats):
                out[j] = f.float()
        return out  # type: ignore[return-value]

    def _unchanged_image(self, index: int) -> np.ndarray:
        entry = self.entry(index)
        image = self.image(index)
        if isinstance(entry.source, str):
            if file_digest(entry.source) != entry.file_hash:
                raise GalleryError(
                    f"'{entry.source}' changed since the gallery was built; rebuild it (Gallery.build into the same path)"
                )
        elif image_hash(image) != entry.pixel_hash:
            raise GalleryError(f"in-memory image {entry.source} is not the one the gallery was built from")
        return image

    # ---------------------------------------------------------------------------------------------
    # Search
    # ---------------------------------------------------------------------------------------------

    def use_index(self, index: SearchIndex) -> None:
        """Search with another index over :attr:`keys` (e.g. ``IvfPqIndex.build(gallery.keys)``)."""
        if not callable(getattr(index, "search", None)):
            raise GalleryError(f"an index needs a search(query, k, exclude) method; got {type(index).__name__}")
        self.index = index

    def rows_with_pixels(self, pixel_hash: str) -> list[int]:
        """Gallery positions of the images with these pixels (see ``_io.image_hash``): one vectorised compare."""
        if self._facts is None:
            return []
        import pyarrow.compute as pc

        found = pc.equal(self._facts.column("pixel_hash"), pixel_hash)
        return np.flatnonzero(np.asarray(found.to_numpy(zero_copy_only=False), bool)).tolist()

    def query_weights(
        self,
        query_size: tuple[int, int],
        grid: tuple[int, int],
        mask: Any = None,
        box: Sequence[float] | None = None,
        point: Sequence[float] | None = None,
    ) -> Tensor | None:
        """Cell weights of a region given as a pixel ``mask`` (query image size), a ``box`` ``(x0, y0, x1, y1)``
        or a ``point`` ``(x, y)`` in query-image pixels; None for the whole image."""
        given = [name for name, v in (("mask", mask), ("box", box), ("point", point)) if v is not None]
        if len(given) > 1:
            raise GalleryError(f"give one of mask, box or point, not {' and '.join(given)}")
        h, w = query_size
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise GalleryError(
                    f"box {tuple(box)} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h} (query pixels)"
                )
            mask = np.zeros((h, w), np.float32)
            mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = 1
        if point is not None:
            x, y = (float(v) for v in point)
            if not (0 <= x < w and 0 <= y < h):
                raise GalleryError(f"point {tuple(point)} lies outside the {w}x{h} query image")
            weights = torch.zeros(grid, dtype=torch.float32)
            weights[int(y / h * grid[0]), int(x / w * grid[1])] = 1
            return weights
        if mask is None:
            return None
        m = np.asarray(mask)
        if m.ndim != 2 or m.shape != (h, w):
            raise GalleryError(f"mask has shape {m.shape}; expected the query image's size ({h}, {w})")
        weights = cell_weights(m.astype(np.float32), grid, (h, w))
        if float(weights.sum()) == 0:
            raise GalleryError("the mask selects nothing (all zero)")
        return weights

    def search(
        self,
        query: ImageLike,
        mask: Any = None,
        box: Sequence[float] | None = None,
        point: Sequence[float] | None = None,
        k: int = 10,
        exclude_self: bool = False,
    ) -> list[Hit]:
        """The ``k`` gallery images most similar to ``query`` -- in the region ``mask`` / ``box`` / ``point``
        (query-image pixels) or as a whole -- with exact region scores and each hit's region map."""
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise GalleryError(f"k must be a positive integer, got {k!r}")
        enc = self.session.encode(query)
        weights = self.query_weights(enc.source_size, enc.grid, mask, box, point)
        return self.search_features(enc.features, weights, k, exclude=enc.hash if exclude_self else None)

    def search_features(
        self, feats: Tensor, weights: Tensor | None, k: int = 10, exclude: str | None = None
    ) -> list[Hit]:
        """:meth:`search` on the query's local features and cell weights (None: whole image); ``exclude``: the
        pixel hash of images to leave out (the query itself)."""
        s = self.session
        q, e = region_query(feats, weights, s.pooling, s.p, s.head)
        query = search_key_query(q, e, self._bias, s.normalize, whole=weights is None)
        excluded = np.asarray(self.rows_with_pixels(exclude) if exclude is not None else [], np.int64)
        scores, order = self.index.search(query, min(k, len(self)), exclude=excluded)
        indices = [int(i) for i in order]
        hits = []
        for score, i, hit_feats in zip(scores.tolist(), indices, self.hit_features(indices)):
            ex = decompose(feats, hit_feats, s.pooling, s.p, s.normalize, s.head, check_values=False)
            region = ex.region_map("a", weights) if weights is not None else ex.map_b
            entry = self.entry(i)
            hits.append(Hit(i, entry.source, float(score), region, entry.label))
        return hits

    def hard_negatives(self, query: ImageLike, label: Any, k: int = 10) -> list[Hit]:
        """The gallery images of another label that outrank ``query``'s weakest positive, best first (at most ``k``).

        With ``s(q, g)`` the whole-image score of :meth:`search`, the positives are the gallery images labelled
        ``label`` and the rest are negatives, both without the query itself (every gallery image with its pixels).
        The weakest positive scores ``s_min = min over positives of s(q, p)``; the hard negatives are the negatives
        ``n`` with ``s(q, n) > s_min`` (strictly: a tie does not outrank), in descending score order. Each is a
        :class:`Hit` as :meth:`search` returns it. Exact with the default index; with an approximate one
        (:meth:`use_index`) the ranking is the index's. An unknown ``label``, or a label no image but the query
        carries, raises :class:`GalleryError`."""
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise GalleryError(f"k must be a positive integer, got {k!r}")
        labels = self.labels
        if not any(lab == label for lab in labels):
            shown = sorted({repr(lab) for lab in labels})
            raise GalleryError(
                f"label {label!r} is not in the gallery (its labels: {', '.join(shown[:10])}"
                f"{', ...' if len(shown) > 10 else ''})"
            )
        enc = self.session.encode(query)
        itself = set(self.rows_with_pixels(enc.hash))
        positives = sum(1 for i, lab in enumerate(labels) if lab == label and i not in itself)
        if positives == 0:
            raise GalleryError(f"no positives: the only gallery images labelled {label!r} are the query itself")
        total = len(self) - len(itself)
        want = min(total, positives + k)
        while True:  # rank deeper until the weakest positive is in the ranking
            hits = self.search_features(enc.features, None, want, exclude=enc.hash)
            if sum(1 for h in hits if h.label == label) == positives or want >= total:
                break
            want = min(total, 2 * want)
        weakest = min(h.score for h in hits if h.label == label)
        return [h for h in hits if h.label != label and h.score > weakest][:k]

    def explain(self, query: ImageLike, index: int) -> ExplainedPair:
        """The full decomposition of ``query`` against gallery image ``index`` (from its stored features)."""
        self._check_index(index)
        image = None
        with contextlib.suppress(GalleryError, ImageInputError, FileNotFoundError):
            image = self.session.resize(self.image(index))
        return self.session.explain_encoded(self.session.encode(query), features_b=self.features(index), image_b=image)

    def class_maps(self, size: tuple[int, int] | None = None, labels: Sequence[Any] | None = None) -> ClassMaps:
        """Where within-class similarity lives, per label: :func:`.audit.class_maps` (a :class:`.audit.ClassMaps`;
        draw it with :func:`simvis_widgets.render.class_maps_figure`)."""
        return gallery_class_maps(self, size=size, labels=labels)

    def audit(self, k: int = 10, **options: Any) -> tuple[AuditFinding, ...]:
        """Small regions (a watermark, a logo, a border, text) whose same-place matches make many images each other's
        neighbours: :func:`.audit.audit` (a tuple of :class:`.audit.AuditFinding`, empty when none; draw one with
        :func:`simvis_widgets.render.audit_figure`)."""
        return audit_gallery(self, k, **options)

    def _check_index(self, index: Any) -> int:
        return checked_index(index, len(self))

    def __repr__(self) -> str:
        return f"Gallery({len(self)} images, {self.session.name!r}, '{self.path}', features={self.features_mode!r})"


@dataclass
class _Plan:
    todo: list[BuildItem]
    stale: list[str]
    reused: int


def _plan(sources: list[Any], labels: list[Any] | None, existing: GalleryStore | None) -> _Plan:
    """Which sources to embed, which stored rows to delete, how many are already there and unchanged."""
    known: dict[str, tuple[str | None, str | None, str | None]] = {}
    if existing is not None:
        columns = ("key", "file_hash", "label", "error")
        for table in existing.facts(columns):
            for key, file_hash, label, error in zip(*(table.column(c).to_pylist() for c in columns)):
                known[key] = (file_hash, label, error)
    todo: list[BuildItem] = []
    keep: set[str] = set()
    reused = 0
    for i, src in enumerate(sources):
        label = labels[i] if labels is not None else None
        stored_label = encode_label(label)
        if is_path(src):
            key = os.path.abspath(src)
            file_hash = None
            with contextlib.suppress(OSError):
                file_hash = file_digest(src)
            old = known.get(key)
            if old is not None and file_hash is not None and old[0] == file_hash and old[1] == stored_label:
                keep.add(key)
                reused += old[2] is None
                continue
            todo.append(BuildItem(i, src, label, key, file_hash))
        else:
            try:
                pixel_hash: str | None = image_hash(load_image(src))
            except (ImageInputError, FileNotFoundError, OSError):
                pixel_hash = None
            mem_key = memory_key(i, pixel_hash) if pixel_hash is not None else None
            if mem_key is not None and mem_key in known and known[mem_key][1] == stored_label:
                keep.add(mem_key)
                reused += 1
                continue
            todo.append(BuildItem(i, src, label, None, pixel_hash=pixel_hash))
    return _Plan(todo, [key for key in known if key not in keep], reused)


def _require_exact(session: ModelSession) -> None:
    if session.approximate:
        raise GalleryError(
            "region retrieval needs an exact decomposition; this session is APPROXIMATE (a CLS-token ViT)"
        )


__all__ = [
    "FLOAT16_MAX",
    "FORMAT_VERSION",
    "IMAGE_SUFFIXES",
    "ArrayKeys",
    "Gallery",
    "GalleryEntry",
    "GalleryError",
    "Hit",
    "Int8Index",
    "StoreKeys",
    "exact_scores",
    "list_images",
]
