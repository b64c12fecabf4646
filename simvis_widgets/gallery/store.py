"""The gallery's storage: one Lance dataset, one row per image, every row checked when it is read.

Columns (``SCHEMA_COLUMNS``): ``key`` (unique: the file path, or ``memory:<position>:<pixel hash>`` for an
in-memory image), ``source`` (the path, or the position in the list given to build), ``in_memory``, ``label``
(JSON), ``pixel_hash``, ``file_hash``, ``grid_h``/``grid_w``, ``embedding`` (float32, the pooled embedding),
``error`` (set, with no embedding, for a file that could not be read), ``checksum`` (CRC-32 of all the above),
``features`` (the float16 local features ``(C, h, w)``, little-endian; null when the gallery recomputes them)
and ``features_checksum``.

The schema's metadata carries the format version, the session fingerprint (weights digest included), the storage
mode of local features and the channel count. Every commit is a new Lance version (atomic: a reader sees the
whole commit or none of it), so a killed build keeps what it committed. Readers pin the version they opened:
another process appending or deleting rows does not move them.

Integrity: a row's ``checksum`` is verified whenever the row is read (all rows when a gallery is opened, since
it reads every embedding), ``features_checksum`` when the features are read (a hit's map). Anything Lance itself
cannot read (a truncated or rewritten file, a damaged manifest) is a :class:`GalleryError` naming the dataset.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GalleryError

FORMAT_VERSION = 3
FEATURE_MODES = ("store", "recompute")
_META_FORMAT = b"simvis.format"
_META_FINGERPRINT = b"simvis.fingerprint"
_META_FEATURES = b"simvis.features"
_META_CHANNELS = b"simvis.channels"
META_COLUMNS = ("key", "source", "in_memory", "label", "pixel_hash", "file_hash", "grid_h", "grid_w", "error")
"""The per-image facts (everything but the vectors), in checksum order."""


@dataclass(frozen=True)
class StoredRow:
    """One image as written to the dataset."""

    key: str
    source: str
    in_memory: bool
    label: Any
    pixel_hash: str
    file_hash: str | None
    grid: tuple[int, int]
    embedding: np.ndarray | None
    """``(D,)`` float32; None for an unreadable file (then ``error`` says why)."""
    features: np.ndarray | None = None
    """``(C, h, w)`` float16, or None when features are recomputed."""
    error: str | None = None


def dataset_uri(path: str | os.PathLike[str]) -> str:
    """A gallery path as Lance takes it: a URI as given, a local path made absolute; an empty path is an error."""
    text = os.fspath(path)
    if not text:
        raise GalleryError("the gallery path is empty")
    return text if "://" in text else os.path.abspath(text)


def temporary_uri() -> str:
    """A new dataset path in a temporary folder that is deleted when the process exits."""
    folder = tempfile.mkdtemp(prefix="simvis-gallery-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return os.path.join(folder, "gallery.lance")


def _lance() -> Any:
    import lance

    return lance


def _pa() -> Any:
    import pyarrow

    return pyarrow


@contextlib.contextmanager
def lance_errors(uri: str, doing: str) -> Iterator[None]:
    """Turn what Lance or Arrow raise on unreadable data (I/O errors, damaged files) into a GalleryError that
    names the dataset and what was being done."""
    pa = _pa()
    try:
        yield
    except GalleryError:
        raise
    except (OSError, ValueError, RuntimeError, pa.ArrowException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GalleryError(f"gallery '{uri}': {doing} failed: {first}") from err


def row_checksum(meta: Sequence[Any], embedding: Any) -> int:
    """CRC-32 of a row's facts (``META_COLUMNS`` order; each None or a string with its length) and its embedding
    bytes (any buffer: bytes or a contiguous little-endian float32 array; None for an error row)."""
    text = "".join("\x00" if v is None else f"\x01{len(str(v))}:{v}" for v in meta)
    crc = zlib.crc32(text.encode())
    return zlib.crc32(embedding if embedding is not None else b"\x00", crc)


def encode_label(label: Any) -> str | None:
    """A label as stored: JSON text (numpy and torch scalars become plain numbers)."""
    if label is None:
        return None
    if hasattr(label, "item") and getattr(label, "ndim", 0) == 0:
        label = label.item()
    try:
        return json.dumps(label)
    except TypeError:
        raise GalleryError(
            f"labels must be JSON values (str, int, float, bool, lists of them); got {type(label).__name__}"
        ) from None


def decode_label(text: str | None) -> Any:
    """A stored label (JSON text) as the value given to build."""
    return json.loads(text) if text is not None else None


def _meta_values(row: StoredRow) -> list[Any]:
    label = encode_label(row.label)
    return [
        row.key,
        row.source,
        row.in_memory,
        label,
        row.pixel_hash,
        row.file_hash,
        row.grid[0],
        row.grid[1],
        row.error,
    ]


def schema(dim: int, channels: int, fingerprint: dict[str, Any], features: str) -> Any:
    """The dataset's Arrow schema, its metadata included."""
    pa = _pa()
    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("in_memory", pa.bool_(), nullable=False),
            pa.field("label", pa.string()),
            pa.field("pixel_hash", pa.string(), nullable=False),
            pa.field("file_hash", pa.string()),
            pa.field("grid_h", pa.int32(), nullable=False),
            pa.field("grid_w", pa.int32(), nullable=False),
            pa.field("error", pa.string()),
            pa.field("embedding", pa.list_(pa.float32(), dim)),
            pa.field("checksum", pa.int64(), nullable=False),
            pa.field("features", pa.large_binary()),
            pa.field("features_checksum", pa.int64()),
        ],
        metadata={
            _META_FORMAT: str(FORMAT_VERSION).encode(),
            _META_FINGERPRINT: json.dumps(fingerprint, sort_keys=True).encode(),
            _META_FEATURES: features.encode(),
            _META_CHANNELS: str(channels).encode(),
        },
    )


def rows_to_table(rows: Sequence[StoredRow], table_schema: Any) -> Any:
    """An Arrow table of ``rows`` with their checksums (used by every engine, so all write the same bytes)."""
    pa = _pa()
    dim = table_schema.field("embedding").type.list_size
    columns: dict[str, list[Any]] = {name: [] for name in META_COLUMNS}
    embeddings = np.zeros((len(rows), dim), np.float32)
    valid = np.zeros(len(rows), bool)
    checksums: list[int] = []
    features: list[np.ndarray | None] = []
    for i, row in enumerate(rows):
        meta = _meta_values(row)
        for name, value in zip(META_COLUMNS, meta):
            columns[name].append(value)
        emb_bytes: np.ndarray | None = None
        if row.embedding is not None:
            if row.embedding.shape != (dim,):
                raise GalleryError(
                    f"embedding of '{row.source}' has shape {row.embedding.shape}; the gallery's is ({dim},)"
                )
            embeddings[i] = row.embedding
            valid[i] = True
            emb_bytes = embeddings[i].astype("<f4")
        checksums.append(row_checksum(meta, emb_bytes))
        features.append(None if row.features is None else np.ascontiguousarray(row.features, dtype="<f2"))
    feature_column, feature_sums = _binary_with_checksums(features)
    flat = pa.array(embeddings.reshape(-1), pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(~valid))
    arrays = [pa.array(columns[name], table_schema.field(name).type) for name in META_COLUMNS]
    arrays += [
        embedding,
        pa.array(checksums, pa.int64()),
        feature_column,
        pa.array(feature_sums, pa.int64()),
    ]
    return pa.Table.from_arrays(arrays, schema=table_schema)


def _binary_with_checksums(arrays: Sequence[np.ndarray | None]) -> tuple[Any, list[int | None]]:
    """A ``large_binary`` Arrow column of the arrays' bytes (None: null) and the CRC-32 of each, from one buffer:
    a list of Python ``bytes`` costs two more copies of every value (measured 1.6 ms per 125 kB row)."""
    pa = _pa()
    lengths = np.array([0 if a is None else a.nbytes for a in arrays], np.int64)
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    present = [a.reshape(-1).view(np.uint8) for a in arrays if a is not None]
    data = np.concatenate(present) if present else np.zeros(0, np.uint8)
    valid = np.array([a is not None for a in arrays], bool)
    sums = [None if a is None else zlib.crc32(data[offsets[i] : offsets[i + 1]].data) for i, a in enumerate(arrays)]
    column = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        len(arrays),
        [pa.array(valid).buffers()[1], pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=int((~valid).sum()),
    )
    return column, sums


@dataclass(frozen=True)
class DatasetInfo:
    """What the dataset's metadata says."""

    fingerprint: dict[str, Any]
    features: str
    channels: int
    dim: int


class GalleryStore:
    """One pinned version of a gallery dataset, read with every row verified."""

    def __init__(self, uri: str, dataset: Any, info: DatasetInfo) -> None:
        self.uri = uri
        self._dataset = dataset
        self.info = info

    # -- opening -------------------------------------------------------------------------------------

    @staticmethod
    def exists(uri: str) -> bool:
        """Whether a Lance dataset is at ``uri`` (local paths are checked without Lance)."""
        if "://" not in uri:
            return os.path.isdir(os.path.join(uri, "_versions"))
        with contextlib.suppress(Exception):
            _lance().dataset(uri)
            return True
        return False

    @classmethod
    def open(cls, uri: str, fingerprint: dict[str, Any]) -> GalleryStore:
        """Open the latest version at ``uri``; refuse another format or a dataset written under another session
        fingerprint, naming each field that differs."""
        if not cls.exists(uri):
            raise GalleryError(f"no gallery at '{uri}' (build one with Gallery.build(source, session, '{uri}'))")
        with lance_errors(uri, "opening"):
            dataset = _lance().dataset(uri)
            metadata = dataset.schema.metadata or {}
            dim = dataset.schema.field("embedding").type.list_size if "embedding" in dataset.schema.names else -1
        info = cls._check_metadata(uri, metadata, fingerprint, dim)
        return cls(uri, dataset, info)

    @staticmethod
    def _check_metadata(uri: str, metadata: dict[bytes, bytes], fingerprint: dict[str, Any], dim: int) -> DatasetInfo:
        version = metadata.get(_META_FORMAT, b"").decode(errors="replace")
        if version != str(FORMAT_VERSION):
            what = f"format version {version}" if version else "no simvis-widgets metadata"
            raise GalleryError(f"'{uri}' has {what}; this library reads gallery format {FORMAT_VERSION}")
        try:
            stored = json.loads(metadata[_META_FINGERPRINT])
            features = metadata[_META_FEATURES].decode()
            channels = int(metadata[_META_CHANNELS])
        except (KeyError, ValueError, UnicodeDecodeError) as err:
            raise GalleryError(f"gallery '{uri}' has damaged metadata ({err})") from None
        if not isinstance(stored, dict) or features not in FEATURE_MODES or channels < 1 or dim < 1:
            raise GalleryError(f"gallery '{uri}' has damaged metadata")
        expected = json.loads(json.dumps(fingerprint, sort_keys=True))
        differs = [k for k in sorted(set(stored) | set(expected)) if stored.get(k) != expected.get(k)]
        if differs:
            detail = ", ".join(f"{k}: gallery {stored.get(k)!r} vs session {expected.get(k)!r}" for k in differs)
            raise GalleryError(
                f"gallery '{uri}' was built with another session ({detail}); rebuild it for this session"
            )
        return DatasetInfo(stored, features, channels, dim)

    # -- reading -------------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self._dataset.version)

    def __len__(self) -> int:
        with lance_errors(self.uri, "counting rows"):
            return int(self._dataset.count_rows())

    def scan(self, batch_rows: int = 65536) -> Iterator[tuple[Any, np.ndarray]]:
        """All rows in dataset order, verified, as ``(facts table, embeddings (n, D) float32)`` blocks (the
        embeddings of error rows are zeros). Raises GalleryError on the first row that fails its checksum."""
        columns = [*META_COLUMNS, "embedding", "checksum"]
        start = 0
        with lance_errors(self.uri, "reading"):
            for batch in self._dataset.to_batches(columns=columns, batch_size=batch_rows):
                table = _pa().Table.from_batches([batch])
                yield table.select(list(META_COLUMNS)), self._verified(table, start)
                start += table.num_rows

    def facts(self, columns: Sequence[str], batch_rows: int = 65536) -> Iterator[Any]:
        """Some of the facts columns (``META_COLUMNS``), every row in dataset order, as Arrow tables, *without*
        checksum verification and without reading the vectors: for planning a rebuild only. Whatever a plan keeps is
        verified when the built gallery is opened, so a damaged row is still an error, never a result."""
        unknown = [c for c in columns if c not in META_COLUMNS]
        if unknown:
            raise GalleryError(f"not facts columns: {unknown}")
        with lance_errors(self.uri, "reading"):
            for batch in self._dataset.to_batches(columns=list(columns), batch_size=batch_rows):
                yield _pa().Table.from_batches([batch])

    def take(self, rows: np.ndarray, *, features: bool = False) -> tuple[Any, np.ndarray, list[np.ndarray | None]]:
        """Rows ``rows`` (positions in this version), verified: ``(facts, embeddings, features or [])``."""
        rows = np.asarray(rows, dtype=np.int64)
        columns = [*META_COLUMNS, "embedding", "checksum"] + (["features", "features_checksum"] if features else [])
        with lance_errors(self.uri, f"reading rows {rows[:5].tolist()}"):
            table = self._dataset.take(rows, columns=columns)
        embeddings = self._verified(table, rows)
        local: list[np.ndarray | None] = []
        if features:
            blobs = table.column("features").to_pylist()
            sums = table.column("features_checksum").to_pylist()
            grids = zip(table.column("grid_h").to_pylist(), table.column("grid_w").to_pylist())
            for row, blob, crc, (h, w) in zip(rows.tolist(), blobs, sums, grids):
                local.append(self._features(row, blob, crc, h, w))
        return table.select(list(META_COLUMNS)), embeddings, local

    def _features(self, row: int, blob: bytes | None, crc: int | None, h: int, w: int) -> np.ndarray | None:
        if blob is None and crc is None and self.info.features == "recompute":
            return None
        expected = 2 * self.info.channels * h * w
        if blob is None or crc is None or zlib.crc32(blob) != crc or len(blob) != expected:
            raise GalleryError(
                f"gallery '{self.uri}' is corrupt: the stored local features of row {row} fail their checksum "
                "(the data changed after it was written); rebuild the gallery"
            )
        return np.frombuffer(blob, dtype="<f2").reshape(self.info.channels, h, w)

    def _verified(self, table: Any, rows: int | np.ndarray) -> np.ndarray:
        n = table.num_rows
        dim = self.info.dim
        emb_col = table.column("embedding").combine_chunks()
        flat = emb_col.flatten().to_numpy(zero_copy_only=False)
        valid = ~np.asarray(emb_col.is_null().to_numpy(zero_copy_only=False), bool)
        embeddings = np.zeros((n, dim), np.float32)
        embeddings[valid] = np.asarray(flat, np.float32).reshape(-1, dim)
        facts = [table.column(name).to_pylist() for name in META_COLUMNS]
        stored = table.column("checksum").to_pylist()
        little = embeddings if embeddings.dtype.byteorder in "=<|" and np.little_endian else embeddings.astype("<f4")
        for i, meta in enumerate(zip(*facts)):
            if row_checksum(meta, little[i] if valid[i] else None) != stored[i]:
                where = int(rows) + i if isinstance(rows, int) else int(rows[i])
                raise GalleryError(
                    f"gallery '{self.uri}' is corrupt: row {where} ({meta[1]!r}) fails its checksum (the data changed "
                    "after it was written); rebuild the gallery"
                )
        if not np.isfinite(embeddings).all():
            raise GalleryError(f"gallery '{self.uri}' holds non-finite embeddings")
        return embeddings


class GalleryWriter:
    """Appends verified rows to the dataset at ``uri``, one Lance commit per call (a new version each)."""

    def __init__(self, uri: str, fingerprint: dict[str, Any], channels: int, features: str) -> None:
        if features not in FEATURE_MODES:
            raise GalleryError(f"features must be one of {FEATURE_MODES}, got {features!r}")
        self.uri, self.fingerprint, self.channels, self.features = uri, fingerprint, channels, features
        self._schema: Any = None
        self._deferred: list[StoredRow] = []
        self.existing: GalleryStore | None = None
        if "://" not in uri and os.path.exists(uri) and not GalleryStore.exists(uri):
            if not os.path.isdir(uri) or os.listdir(uri):
                raise GalleryError(
                    f"'{uri}' exists and is not a gallery: build into a new path (nothing there is touched)"
                )
        self._created = GalleryStore.exists(uri)
        if self._created:
            self.existing = GalleryStore.open(uri, fingerprint)
            if self.existing.info.features != features:
                raise GalleryError(
                    f"gallery '{uri}' stores features={self.existing.info.features!r}; building it with "
                    f"features={features!r} needs a new path"
                )
            self._schema = schema(self.existing.info.dim, channels, fingerprint, features)

    def schema_for(self, dim: int) -> Any:
        """The schema rows must have (fixed by the first commit)."""
        if self._schema is None:
            self._schema = schema(dim, self.channels, self.fingerprint, self.features)
        elif self._schema.field("embedding").type.list_size != dim:
            raise GalleryError(
                f"gallery '{self.uri}' holds {self._schema.field('embedding').type.list_size}-d embeddings; got {dim}-d"
            )
        return self._schema

    def commit(self, rows: Sequence[StoredRow]) -> None:
        """Append ``rows`` as one commit (creating the dataset on the first). Rows of unreadable files wait for
        the first embedded row, which fixes the embedding width."""
        rows = [*self._deferred, *rows]
        dims = {r.embedding.shape[0] for r in rows if r.embedding is not None}
        if len(dims) > 1:
            raise GalleryError(f"embeddings of different widths in one build: {sorted(dims)}")
        if not dims and self._schema is None:
            self._deferred = rows
            return
        self._deferred = []
        if rows:
            dim = dims.pop() if dims else self._schema.field("embedding").type.list_size
            self.commit_table(rows_to_table(rows, self.schema_for(dim)))

    def commit_table(self, table: Any) -> None:
        with lance_errors(self.uri, "committing rows"):
            _lance().write_dataset(table, self.uri, schema=table.schema, mode="append" if self._created else "create")
        self._created = True

    def commit_fragments(self, fragments: Sequence[Any], table_schema: Any) -> None:
        """One commit of fragments written elsewhere (by distributed workers) with :func:`write_fragments`."""
        if not fragments:
            return
        lance = _lance()
        with lance_errors(self.uri, "committing fragments"):
            if self._created:
                version = lance.dataset(self.uri).version
                operation = lance.LanceOperation.Append(list(fragments))
            else:
                version = None
                operation = lance.LanceOperation.Overwrite(table_schema, list(fragments))
            lance.LanceDataset.commit(self.uri, operation, read_version=version)
        self._created = True

    def delete(self, keys: Sequence[str]) -> None:
        """Delete the rows of ``keys`` (one commit)."""
        if not keys or not self._created:
            return
        with lance_errors(self.uri, "deleting stale rows"):
            dataset = _lance().dataset(self.uri)
            for start in range(0, len(keys), 1000):
                quoted = ", ".join("'" + k.replace("'", "''") + "'" for k in keys[start : start + 1000])
                dataset.delete(f"key IN ({quoted})")


def write_fragments(rows: Sequence[StoredRow], uri: str, table_schema: Any) -> list[dict[str, Any]]:
    """Write ``rows`` as uncommitted Lance fragments (a distributed worker's job); returns their JSON, for
    :meth:`GalleryWriter.commit_fragments` on the driver."""
    from lance.fragment import write_fragments as lance_write_fragments

    table = rows_to_table(rows, table_schema)
    with lance_errors(uri, "writing fragments"):
        fragments = lance_write_fragments(table, uri, schema=table_schema)
    return [f.to_json() for f in fragments]


def fragments_from_json(data: Sequence[dict[str, Any]]) -> list[Any]:
    """Fragment metadata back from :func:`write_fragments`' JSON."""
    from lance.fragment import FragmentMetadata

    return [FragmentMetadata.from_json(json.dumps(d)) for d in data]
