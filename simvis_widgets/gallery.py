"""A gallery for region-based retrieval: embeddings in RAM, local features (float16) in RAM or memory-mapped.

Region retrieval is exact (method.md): for a query region with cell weights ``w`` on image A,

    s_R(B) = <sum_i w_i q_A[i], g_B> * scale(A, B),   g_B = e_B - c,   scale = 1 / (|e_A| |e_B|) (cosine)

so one matrix multiply of the query vector with the pre-scaled gallery matrix ``G[b] = g_b / |e_b|`` scores
every image, and equals ``session.explain(query, B).region_score("a", mask)``. Local features are only read
for the top-k hits, to draw their region maps.

File format (version 1, one file, written atomically): ``MAGIC``, a little-endian u64 header length, a JSON
header (session fingerprint, entries, array offsets), then the float32 embeddings and the float16 features,
each 64-byte aligned, so the features can be memory-mapped.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._io import atomic_write, file_digest, image_hash
from .decompose import (
    cell_weights,
    decompose,
    pooled_embeddings,
    region_query,
)
from .errors import GalleryError
from .images import ImageInputError, ImageLike, load_image
from .pair import ExplainedPair
from .session import ModelSession

MAGIC = b"SIMVISG1"
FORMAT_VERSION = 2
FLOAT16_MAX = float(np.finfo(np.float16).max)
"""Local features are stored as float16: a build refuses features above this (65504) instead of storing inf."""
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass
class Hit:
    """One search result."""

    index: int
    """Position in the gallery."""
    source: str | int
    """The file path, or the index for in-memory images."""
    score: float
    """Exact region score s_R; for the whole image, the similarity itself (with a biased head: s_R + the global term)."""
    map: Tensor
    """The region map over the result image's cells: where the query region is matched."""
    label: Any = None


@dataclass
class GalleryEntry:
    source: str | int
    pixel_hash: str
    file_hash: str | None
    grid: tuple[int, int]
    label: Any = None


@dataclass
class _Item:
    position: int
    source: str | int
    prepared: np.ndarray | None
    pixel_hash: str
    file_hash: str | None
    error: str | None = None
    label: Any = None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, by suffix), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"'{folder}' is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class _Loader(torch.utils.data.Dataset):
    """Decodes, hashes and resizes one source (in DataLoader workers, overlapped with the model)."""

    def __init__(self, sources: Sequence[Any], labels: Sequence[Any] | None, session: ModelSession) -> None:
        self.sources, self.labels = sources, labels
        self.resize = session.resizer()

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> _Item:
        src = self.sources[i]
        label = self.labels[i] if self.labels is not None else None
        name: str | int = str(src) if isinstance(src, (str, os.PathLike)) else i
        try:
            raw = load_image(src)
            prepared = self.resize(raw)
            file_hash = file_digest(src) if isinstance(src, (str, os.PathLike)) else None
            return _Item(i, name, prepared, image_hash(raw), file_hash, None, label)
        except (ImageInputError, FileNotFoundError, OSError) as err:
            return _Item(i, name, None, "", None, str(err), label)


def _collate(items: list[_Item]) -> list[_Item]:
    return items


def _dataset_items(dataset: torch.utils.data.Dataset) -> tuple[list[Any], list[Any] | None]:
    images, labels = [], []
    for k in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[k]
        if isinstance(item, (tuple, list)) and len(item) == 2:
            images.append(item[0])
            labels.append(item[1])
        else:
            images.append(item)
            labels.append(None)
    return images, (labels if any(v is not None for v in labels) else None)


class Gallery:
    """Embeddings and local features of many images, searchable by whole image, region or single cell."""

    def __init__(
        self,
        session: ModelSession,
        entries: list[GalleryEntry],
        embeddings: Tensor,
        features: list[np.ndarray],
        images: Sequence[Any] | None = None,
        unreadable: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        if len(embeddings) != len(entries) or len(features) != len(entries):
            raise GalleryError(
                f"{len(entries)} entries but {len(embeddings)} embeddings and {len(features)} feature maps"
            )
        if images is not None and len(images) != len(entries):
            raise GalleryError(f"{len(images)} images given for a gallery of {len(entries)}")
        self.session = session
        self._images = list(images) if images is not None else None
        self._entries = entries
        self.embeddings = embeddings.to(session.device, torch.float32)
        """``(K, D)``: the network's embeddings ``e`` (not normalised)."""
        self._features = features
        self.reused = 0
        """Images taken from the cache by the last :meth:`build`."""
        self.embedded = len(entries)
        """Images run through the network by the last :meth:`build`."""
        self.unreadable: dict[str, tuple[str, str]] = dict(unreadable or {})
        """Files that could not be read, by file hash: ``(source, error)``. A rebuild skips a file whose bytes are
        unchanged without warning again."""
        self._fingerprint = session.fingerprint()
        self._refresh_scoring()

    # ---------------------------------------------------------------------------------------------
    # Building
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        source: Any,
        session: ModelSession,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 16,
        labels: Sequence[Any] | None = None,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> Gallery:
        """Embed ``source``: a folder (recursive, image files only), a list of paths / PIL images / arrays, or a
        torch ``Dataset`` (items: image or ``(image, label)``).

        Unreadable files are skipped with one warning listing them. With ``cache_dir``, an existing gallery
        there (same session) is reused: only new or changed images are embedded, and the result is saved back.
        """
        if batch_size < 1:
            raise GalleryError(f"batch_size must be >= 1, got {batch_size}")
        if session.approximate:
            raise GalleryError(
                "region retrieval needs an exact decomposition; this session is APPROXIMATE (a CLS-token ViT)"
            )
        sources, labels = cls._sources(source, labels)
        if not sources:
            raise GalleryError(f"no images to build a gallery from ({_describe(source)})")
        cached: Gallery | None = None
        cache_file = Path(cache_dir) / "gallery.simvis" if cache_dir is not None else None
        if cache_file is not None and cache_file.exists():
            cached = cls.load(cache_file, session)
        reuse: dict[int, int] = {}
        known_bad: dict[str, tuple[str, str]] = {}  # unreadable last time, bytes unchanged: skipped without a word
        if cached is not None:
            by_file = {e.file_hash: k for k, e in enumerate(cached.entries) if e.file_hash}
            by_pixels = {e.pixel_hash: k for k, e in enumerate(cached.entries)}
            for i, src in enumerate(sources):
                if isinstance(src, (str, os.PathLike)) and Path(src).is_file():
                    h = file_digest(src)
                    k = by_file.get(h)
                    if k is None and h in cached.unreadable:
                        known_bad[h] = (str(src), cached.unreadable[h][1])
                else:
                    try:
                        k = by_pixels.get(image_hash(load_image(src)))
                    except (ImageInputError, FileNotFoundError):
                        k = None
                if k is not None:
                    reuse[i] = k
        known_sources = {source for source, _ in known_bad.values()}
        todo = [i for i in range(len(sources)) if i not in reuse and str(sources[i]) not in known_sources]
        computed, skipped = cls._embed(sources, labels, todo, session, batch_size, num_workers, progress)
        entries: list[GalleryEntry] = []
        embeddings: list[Tensor] = []
        features: list[np.ndarray] = []
        kept: list[Any] = []
        for i in range(len(sources)):
            if i in reuse or i in computed:
                kept.append(sources[i])
            if i in reuse:
                k = reuse[i]
                e = cached.entries[k]  # type: ignore[union-attr]
                name = str(sources[i]) if isinstance(sources[i], (str, os.PathLike)) else i
                entries.append(GalleryEntry(name, e.pixel_hash, e.file_hash, e.grid, labels[i] if labels else e.label))
                embeddings.append(cached.embeddings[k].cpu())  # type: ignore[union-attr]
                features.append(np.asarray(cached.stored_features(k)))  # type: ignore[union-attr]
            elif i in computed:
                entry, emb, feat = computed[i]
                entries.append(entry)
                embeddings.append(emb)
                features.append(feat)
        if skipped:
            listing = "\n".join(f"  {name}: {err}" for name, err in skipped)
            warnings.warn(f"skipped {len(skipped)} unreadable image(s):\n{listing}", stacklevel=2)
        if not entries:
            raise GalleryError(f"none of the {len(sources)} images could be read ({_describe(source)})")
        unreadable = dict(known_bad)
        for name, err in skipped:
            if isinstance(name, str) and Path(name).is_file():
                unreadable[file_digest(name)] = (name, err)
        gallery = cls(session, entries, torch.stack(embeddings), features, images=kept, unreadable=unreadable)
        gallery.reused = len(reuse)
        gallery.embedded = len(computed)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            gallery.save(cache_file)
        return gallery

    @staticmethod
    def _sources(source: Any, labels: Sequence[Any] | None) -> tuple[list[Any], list[Any] | None]:
        if isinstance(source, (str, os.PathLike)):
            if not Path(source).exists():
                raise GalleryError(f"'{source}' does not exist")
            items: list[Any] = list_images(source) if Path(source).is_dir() else [Path(source)]
        elif isinstance(source, torch.utils.data.Dataset) and not isinstance(source, (list, tuple)):
            items, found = _dataset_items(source)
            labels = labels if labels is not None else found
        elif isinstance(source, Iterable) and not isinstance(source, (np.ndarray, Tensor)):
            items = list(source)
        else:
            raise GalleryError(
                f"source must be a folder, a list of images or a torch Dataset; got {type(source).__name__}"
            )
        if labels is not None and len(labels) != len(items):
            raise GalleryError(f"{len(labels)} labels for {len(items)} images")
        return items, (list(labels) if labels is not None else None)

    @staticmethod
    def _embed(
        sources: list[Any],
        labels: list[Any] | None,
        todo: list[int],
        session: ModelSession,
        batch_size: int,
        num_workers: int | None,
        progress: bool,
    ) -> tuple[dict[int, tuple[GalleryEntry, Tensor, np.ndarray]], list[tuple[str | int, str]]]:
        from tqdm.auto import tqdm

        computed: dict[int, tuple[GalleryEntry, Tensor, np.ndarray]] = {}
        skipped: list[tuple[str | int, str]] = []
        if not todo:
            return computed, skipped
        dataset = torch.utils.data.Subset(_Loader(sources, labels, session), todo)
        # Decoding in worker processes only pays where there are cores to spare (on 2 cores it was slower).
        cores = os.cpu_count() or 1
        workers = (
            num_workers if num_workers is not None else (min(4, cores // 2) if cores > 2 and len(todo) > 32 else 0)
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=session.device.type == "cuda",
        )
        with tqdm(total=len(todo), desc=f"gallery ({session.name})", unit="img", disable=not progress) as bar:
            for batch in loader:
                groups: dict[tuple[int, ...], list[_Item]] = {}
                for item in batch:
                    if item.prepared is None:
                        skipped.append((item.source, item.error or "unreadable"))
                        bar.total -= 1  # the bar counts images embedded, not files tried
                        bar.set_postfix(unreadable=len(skipped))
                    else:
                        groups.setdefault(item.prepared.shape, []).append(item)
                for group in groups.values():
                    feats = session.batch_features([it.prepared for it in group])  # type: ignore[misc]
                    peak = float(feats.abs().max())
                    if peak > FLOAT16_MAX:
                        raise GalleryError(
                            f"{session.name} gives local features up to {peak:.3g} for {group[0].source!r}; the gallery "
                            f"stores them as float16, whose largest value is {FLOAT16_MAX:g}: scale the features down "
                            "(e.g. a layer before the last activation) to build a gallery"
                        )
                    _, emb = pooled_embeddings(feats, session.pooling, session.p, session.head)
                    for it, f, e in zip(group, feats, emb):
                        grid = (int(f.shape[1]), int(f.shape[2]))
                        entry = GalleryEntry(it.source, it.pixel_hash, it.file_hash, grid, it.label)
                        computed[it.position] = (entry, e.float().cpu(), f.to(torch.float16).cpu().numpy())
                bar.update(sum(len(group) for group in groups.values()))
        return computed, skipped

    # ---------------------------------------------------------------------------------------------
    # Persistence
    # ---------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the gallery to one file atomically (temp file in the same folder, then rename): an interrupted
        save leaves any previous file intact."""
        path = Path(path)
        if not path.parent.exists():
            raise GalleryError(f"cannot save to '{path}': folder '{path.parent}' does not exist")
        emb = self.embeddings.detach().cpu().numpy().astype("<f4")
        offsets, total = [], 0
        for f in self._features:
            offsets.append(total)
            total += int(np.prod(f.shape))
        header: dict[str, Any] = {
            "format": "simvis-widgets gallery",
            "version": FORMAT_VERSION,
            "session": self._fingerprint,
            "count": len(self._entries),
            "dim": int(emb.shape[1]),
            "entries": [
                {
                    "source": e.source,
                    "pixel_hash": e.pixel_hash,
                    "file_hash": e.file_hash,
                    "grid": list(e.grid),
                    "label": e.label if isinstance(e.label, (str, int, float, bool, type(None))) else str(e.label),
                    "feature_offset": off,
                }
                for e, off in zip(self._entries, offsets)
            ],
            "feature_total": total,
            "unreadable": [{"file_hash": h, "source": src, "error": err} for h, (src, err) in self.unreadable.items()],
        }
        header["embeddings_at"] = header["features_at"] = 0
        reserved = len(json.dumps(header).encode()) + 64  # room for the two offsets' digits
        header["embeddings_at"] = _align(len(MAGIC) + 8 + reserved)
        header["features_at"] = _align(header["embeddings_at"] + emb.nbytes)
        blob = json.dumps(header).encode().ljust(reserved)  # JSON allows trailing spaces
        with atomic_write(path) as fh:
            fh.write(MAGIC + struct.pack("<Q", len(blob)) + blob)
            fh.write(b"\0" * (header["embeddings_at"] - fh.tell()))
            fh.write(emb.tobytes())
            fh.write(b"\0" * (header["features_at"] - fh.tell()))
            for f in self._features:
                fh.write(np.ascontiguousarray(f, dtype="<f2").tobytes())
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, session: ModelSession, mmap: bool = True, images: Sequence[Any] | None = None
    ) -> Gallery:
        """Load a saved gallery for ``session`` (which must match the one that built it). Local features stay
        on disk, memory-mapped, unless ``mmap=False``. ``images``: the in-memory images of a gallery built from
        arrays (file-based galleries read their files), for :meth:`image`."""
        path = Path(path)
        if not path.is_file():
            raise GalleryError(f"gallery file '{path}' does not exist")
        size = path.stat().st_size
        try:
            with open(path, "rb") as fh:
                magic = fh.read(len(MAGIC))
                if magic != MAGIC:
                    raise GalleryError(f"'{path}' is not a simvis-widgets gallery file")
                (length,) = struct.unpack("<Q", fh.read(8))
                if length > size:
                    raise GalleryError(f"gallery file '{path}' is corrupt (header length {length} > file size {size})")
                header = json.loads(fh.read(length))
        except (struct.error, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise GalleryError(f"gallery file '{path}' is corrupt: {err}") from None
        if header.get("version") != FORMAT_VERSION:
            raise GalleryError(
                f"gallery file '{path}' has format version {header.get('version')}; this library reads {FORMAT_VERSION}"
            )
        expected = session.fingerprint()
        differs = {k: (header["session"].get(k), v) for k, v in expected.items() if header["session"].get(k) != v}
        if differs:
            detail = ", ".join(f"{k}: gallery {a!r} vs session {b!r}" for k, (a, b) in differs.items())
            raise GalleryError(
                f"gallery '{path}' was built with another session ({detail}); rebuild it for this session"
            )
        count, dim, total = header["count"], header["dim"], header["feature_total"]
        end = header["features_at"] + 2 * total
        if size < end:
            raise GalleryError(f"gallery file '{path}' is truncated ({size} bytes, expected {end})")
        emb = np.fromfile(path, dtype="<f4", count=count * dim, offset=header["embeddings_at"]).reshape(count, dim)
        flat: np.ndarray
        if mmap:
            flat = np.memmap(path, dtype="<f2", mode="r", offset=header["features_at"], shape=(total,))
        else:
            flat = np.fromfile(path, dtype="<f2", count=total, offset=header["features_at"])
        channels = header["session"]["channels"]
        entries, features = [], []
        for e in header["entries"]:
            h, w = e["grid"]
            off = e["feature_offset"]
            features.append(flat[off : off + channels * h * w].reshape(channels, h, w))
            entries.append(GalleryEntry(e["source"], e["pixel_hash"], e["file_hash"], (h, w), e.get("label")))
        if not np.isfinite(emb).all():
            raise GalleryError(f"gallery file '{path}' is corrupt (non-finite embeddings)")
        if images is not None and len(images) != len(entries):
            raise GalleryError(f"{len(images)} images given for a gallery of {len(entries)}")
        unreadable = {u["file_hash"]: (u["source"], u["error"]) for u in header.get("unreadable", [])}
        return cls(session, entries, torch.from_numpy(emb), features, images=images, unreadable=unreadable)

    # ---------------------------------------------------------------------------------------------
    # Search
    # ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[GalleryEntry, ...]:
        """What the gallery knows of each image (source, content hashes, grid, label), in gallery order."""
        return tuple(self._entries)

    def stored_features(self, index: int) -> np.ndarray:
        """The local features of image ``index`` as stored (float16 ``(C, h, w)``, possibly memory-mapped)."""
        return self._features[self._check_index(index)]

    @property
    def sources(self) -> list[str | int]:
        return [e.source for e in self._entries]

    @property
    def labels(self) -> list[Any]:
        return [e.label for e in self._entries]

    def image(self, index: int) -> np.ndarray:
        """Gallery image ``index`` as an ``H x W x 3`` uint8 array (read from its file, or kept in memory)."""
        index = self._check_index(index)
        entry = self._entries[index]
        if self._images is not None:
            return load_image(self._images[index])
        if isinstance(entry.source, str):
            return load_image(entry.source)
        raise GalleryError(f"gallery image {index} was an in-memory image: pass images=... to Gallery.load to show it")

    def grid(self, index: int) -> tuple[int, int]:
        """The ``(h, w)`` feature grid of gallery image ``index``."""
        return self._entries[self._check_index(index)].grid

    def features(self, index: int) -> Tensor:
        """Local features ``(C, h, w)`` of gallery image ``index`` (float32, on the session's device)."""
        index = self._check_index(index)
        return torch.from_numpy(np.asarray(self._features[index], dtype=np.float32)).to(self.session.device)

    def _refresh_scoring(self) -> None:
        """Scores are ``(E @ q - <c, q>) / |e_b|`` (cosine) or ``E @ q - <c, q>`` (dot): computed from the
        embeddings themselves, with one norm per image, so no second copy of the gallery is kept."""
        bias = self.session.head.bias if self.session.head is not None else None
        self._bias = bias.to(self.embeddings) if bias is not None else None
        self._inv_norms: Tensor | None = None
        if self.session.normalize:
            norms = self.embeddings.norm(dim=1)
            if bool((norms == 0).any()):
                raise GalleryError("a gallery image has an all-zero embedding: cosine similarity is undefined")
            self._inv_norms = 1.0 / norms
        self._by_hash: dict[str, list[int]] = {}
        for i, entry in enumerate(self._entries):
            self._by_hash.setdefault(entry.pixel_hash, []).append(i)
        self.index: Any = ExactIndex(self.embeddings, self._inv_norms, self._bias)

    def use_index(self, index: ExactIndex | FaissIndex) -> None:
        """Search with another backend built on :meth:`scoring_matrix` (e.g. :class:`FaissIndex`)."""
        self.index = index

    def scoring_matrix(self) -> Tensor:
        """``(K, D)``: ``g_b / |e_b|`` (cosine) or ``g_b`` (dot), ``g = e - c``: region scores are this times the
        query vector. A new tensor (for other index backends); the exact index does not keep one."""
        g = self.embeddings - self._bias if self._bias is not None else self.embeddings.clone()
        return g * self._inv_norms[:, None] if self._inv_norms is not None else g

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
        if not isinstance(k, int) or k <= 0:
            raise GalleryError(f"k must be a positive integer, got {k!r}")
        enc = self.session.encode(query)
        weights = self.query_weights(enc.source_size, enc.grid, mask, box, point)
        return self.search_features(enc.features, weights, k, exclude=enc.hash if exclude_self else None)

    def search_features(
        self, feats: Tensor, weights: Tensor | None, k: int = 10, exclude: str | None = None
    ) -> list[Hit]:
        """:meth:`search` on the query's local features and cell weights (None: whole image)."""
        s = self.session
        q, e = region_query(feats, weights, s.pooling, s.p, s.head)
        scale = 1.0 / float(e.norm()) if s.normalize else 1.0
        excluded = set(self._by_hash.get(exclude, ())) if exclude is not None else set()
        n = min(k + len(excluded), len(self))
        if weights is None and self._bias is not None:
            # The whole image with a biased head: its score is the similarity itself, bias terms (the global term)
            # included, which the region scoring leaves out: <e_A, e_B> * scale, exactly, from the embeddings.
            scores, order = ExactIndex(self.embeddings, self._inv_norms).search(e.float() * scale, n)
        else:
            scores, order = self.index.search(q.float() * scale, n)
        hits = []
        for score, i in zip(scores.tolist(), order.tolist()):
            if i in excluded:
                continue
            ex = decompose(feats, self.features(i), s.pooling, s.p, s.normalize, s.head, check_values=False)
            region = ex.region_map("a", weights) if weights is not None else ex.map_b
            entry = self._entries[i]
            hits.append(Hit(i, entry.source, float(score), region, entry.label))
            if len(hits) == k:
                break
        return hits

    def explain(self, query: ImageLike, index: int) -> ExplainedPair:
        """The full decomposition of ``query`` against gallery image ``index`` (from its stored features)."""
        self._check_index(index)
        image = None
        with contextlib.suppress(GalleryError, ImageInputError, FileNotFoundError):
            image = self.session.resize(self.image(index))
        return self.session.explain_encoded(self.session.encode(query), features_b=self.features(index), image_b=image)

    def _check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < len(self):
            raise GalleryError(f"gallery index must be an integer in [0, {len(self) - 1}], got {index!r}")
        return int(index)

    def __repr__(self) -> str:
        return f"Gallery({len(self)} images, {self.session.name!r}, dim={self.embeddings.shape[1]})"


class ExactIndex:
    """Exact inner-product search with torch on the gallery's device: one matrix multiply and a top-k.

    Scores ``(matrix @ q - <bias, q>) * row_scale`` (``row_scale`` and ``bias`` optional), so a cosine gallery
    needs only its embeddings and one inverse norm per row."""

    def __init__(self, matrix: Tensor, row_scale: Tensor | None = None, bias: Tensor | None = None) -> None:
        self.matrix, self.row_scale, self.bias = matrix, row_scale, bias

    def search(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        q = query.to(self.matrix)
        scores = self.matrix @ q
        if self.bias is not None:
            scores = scores - self.bias @ q
        if self.row_scale is not None:
            scores = scores * self.row_scale
        top = torch.topk(scores, k)
        return top.values.cpu(), top.indices.cpu()


class FaissIndex:
    """FAISS flat inner-product search (``pip install faiss-cpu``): the same exact scores, for large galleries."""

    def __init__(self, matrix: Tensor) -> None:
        try:
            import faiss
        except ImportError:
            raise GalleryError("FaissIndex needs faiss: pip install faiss-cpu") from None
        data = np.ascontiguousarray(matrix.detach().cpu().numpy(), dtype=np.float32)
        self._index = faiss.IndexFlatIP(data.shape[1])
        self._index.add(data)

    def search(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        q = np.ascontiguousarray(query.detach().cpu().numpy()[None], dtype=np.float32)
        scores, order = self._index.search(q, k)
        return torch.from_numpy(scores[0]), torch.from_numpy(order[0].astype(np.int64))


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{source}'"
    return type(source).__name__


__all__ = ["ExactIndex", "FaissIndex", "Gallery", "GalleryError", "Hit", "list_images"]
