"""Span retrieval over passages: the image gallery's storage and exact search, with passages as the rows.

For a query passage A with token features ``a_i`` and a span of its tokens (weights ``w_i``: 1 inside, 0
outside), every stored passage B is ranked by the span's exact share of the similarity,

    s_R(B) = <sum_i w_i q_A[i], g_B> / (|e_A| |e_B|),   g_B = e_B - c,

which is what ``session.explain(A, B).span_score("a", start, stop)`` reports -- the text counterpart of a
painted image region (``docs/method.md``). Without a span the rank is the cosine similarity itself.

Storage is the gallery's Lance dataset (:mod:`.store`): one row per passage whose ``source`` holds the passage
text and ``pixel_hash`` its SHA-256 (so the row checksum covers the text), ``grid`` is ``(1, N_tokens)`` and
``embedding`` the passage's embedding before normalisation. Token features are not stored
(``features="recompute"``): a hit's map runs the passage through the model again, which gives exactly the
explanation of :meth:`TextSession.explain`. Opening checks the session fingerprint (model name, weights
digest, pooling, head, maximum length); every row is verified by its checksum when it is read; every build
step is one atomic Lance commit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from ..decompose import decompose, region_query
from ..errors import GalleryError
from .index import SearchIndex
from .keys import search_key_query
from .searchable import StoreKeys, checked_index, load_searchable
from .store import GalleryStore, GalleryWriter, StoredRow, dataset_uri, decode_label, encode_label, temporary_uri

if TYPE_CHECKING:  # pragma: no cover
    from ..text import ExplainedText, TextSession


@dataclass
class TextHit:
    """One passage found by :meth:`TextGallery.search`."""

    index: int
    """Position in the gallery."""
    text: str
    score: float
    """The exact span score ``s_R`` (the cosine similarity itself when no span was given)."""
    map: Tensor
    """``(1, N)`` over the passage's tokens: where the query span is matched (its row sums of ``P``)."""
    tokens: tuple[str, ...]
    """The passage's tokens (one per entry of ``map``)."""
    label: Any = None


def text_hash(text: str) -> str:
    """SHA-256 of a passage's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def passage_key(position: int, text: str) -> str:
    """The row key of passage ``position`` with this text."""
    return f"text:{position}:{text_hash(text)}"


class TextGallery:
    """Passages embedded by a :class:`~simvis_widgets.text.TextSession`, stored in a Lance dataset, searchable
    by a whole query passage or a span of its tokens. Make one with :meth:`build` or :meth:`open`."""

    def __init__(self, session: TextSession, store: GalleryStore) -> None:
        _require_exact(session)
        self.session = session
        self.store = store
        """The pinned dataset version this gallery reads."""
        bias = session.head.bias if session.head is not None else None
        self._bias = bias.detach().cpu().numpy().astype(np.float32) if bias is not None else None
        loaded = load_searchable(store, self._bias, session.normalize)
        self._rows = loaded.rows
        self._facts = loaded.facts
        self.keys: StoreKeys = loaded.keys
        """The exact scoring keys of the passages (for other indexes, e.g. :class:`.ann.IvfPqIndex`)."""
        self.index: SearchIndex = loaded.index
        """What :meth:`search` ranks with (the exact int8 scan with a certified re-rank)."""
        self.reused = 0
        """Passages already in the dataset (unchanged) at the last :meth:`build`."""
        self.embedded = len(self)
        """Passages run through the model by the last :meth:`build`."""

    # ---------------------------------------------------------------------------------------------
    # Building and opening
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], session: TextSession) -> TextGallery:
        """The text gallery at ``path`` for ``session``; refused, naming the fields that differ, if it was built
        under another session fingerprint (another model, other weights, another maximum length)."""
        return cls(session, GalleryStore.open(dataset_uri(path), session.fingerprint()))

    @classmethod
    def build(
        cls,
        passages: Sequence[str],
        session: TextSession,
        path: str | os.PathLike[str] | None = None,
        *,
        labels: Sequence[Any] | None = None,
        batch_size: int = 32,
        commit_every: int = 1024,
        truncate: bool = False,
    ) -> TextGallery:
        """Embed ``passages`` into the dataset at ``path`` (None: a temporary folder deleted at exit), one commit
        every ``commit_every`` passages. Building into an existing gallery embeds only new or changed passages (a
        passage is known by its position and text) and deletes the rows of passages no longer there.

        Every passage must fit the session's ``max_tokens`` (:class:`~simvis_widgets.errors.TextInputError`
        naming it otherwise) unless ``truncate=True``: then long passages are embedded and explained by their
        first ``max_tokens`` tokens."""
        _require_exact(session)
        if isinstance(passages, str) or not isinstance(passages, Sequence):
            raise GalleryError(f"passages must be a sequence of str, got {type(passages).__name__}")
        passages = list(passages)
        if not passages:
            raise GalleryError("no passages to build a gallery from")
        bad = [i for i, p in enumerate(passages) if not isinstance(p, str)]
        if bad:
            raise GalleryError(f"passages must be str; passage {bad[0]} is a {type(passages[bad[0]]).__name__}")
        if labels is not None and len(labels) != len(passages):
            raise GalleryError(f"{len(labels)} labels for {len(passages)} passages")
        if isinstance(commit_every, bool) or not isinstance(commit_every, int) or commit_every < 1:
            raise GalleryError(f"commit_every must be a positive integer, got {commit_every!r}")
        uri = dataset_uri(path) if path is not None else temporary_uri()
        writer = GalleryWriter(uri, session.fingerprint(), session.channels, "recompute")
        known: dict[str, str | None] = {}
        if writer.existing is not None:
            for table in writer.existing.facts(("key", "label")):
                known.update(zip(table.column("key").to_pylist(), table.column("label").to_pylist()))
        todo: list[int] = []
        keep: set[str] = set()
        for i, text in enumerate(passages):
            key = passage_key(i, text)
            label = encode_label(labels[i] if labels is not None else None)
            if key in known and known[key] == label:
                keep.add(key)
            else:
                todo.append(i)
        writer.delete([key for key in known if key not in keep])
        for start in range(0, len(todo), commit_every):
            chunk = todo[start : start + commit_every]
            texts = [passages[i] for i in chunk]
            feats = session.features_many(texts, batch_size=batch_size, truncate=truncate)
            rows = [
                StoredRow(
                    key=passage_key(i, passages[i]),
                    source=passages[i],
                    in_memory=True,
                    label=labels[i] if labels is not None else None,
                    pixel_hash=text_hash(passages[i]),
                    file_hash=None,
                    grid=(1, int(f.shape[0])),
                    embedding=session.raw_embedding(f).detach().float().cpu().numpy(),
                )
                for i, f in zip(chunk, feats)
            ]
            writer.commit(rows)
        gallery = cls.open(uri, session)
        gallery.reused = len(keep)
        gallery.embedded = len(todo)
        return gallery

    # ---------------------------------------------------------------------------------------------
    # What the gallery holds
    # ---------------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self.store.uri

    def __len__(self) -> int:
        return len(self._rows)

    def _column(self, name: str, index: int) -> Any:
        return self._facts.column(name)[index].as_py()

    def passage(self, index: int) -> str:
        """The text of passage ``index`` (read from the verified rows)."""
        return str(self._column("source", self._check_index(index)))

    @property
    def passages(self) -> list[str]:
        return [str(v) for v in self._facts.column("source").to_pylist()] if self._facts is not None else []

    def label(self, index: int) -> Any:
        return decode_label(self._column("label", self._check_index(index)))

    @property
    def labels(self) -> list[Any]:
        return [decode_label(v) for v in self._facts.column("label").to_pylist()] if self._facts is not None else []

    def tokens(self, index: int) -> int:
        """How many tokens passage ``index`` has (its grid's width)."""
        return int(self._column("grid_w", self._check_index(index)))

    # ---------------------------------------------------------------------------------------------
    # Search
    # ---------------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        span: tuple[int, int] | None = None,
        *,
        chars: tuple[int, int] | None = None,
        truncate: bool = False,
    ) -> list[TextHit]:
        """The ``k`` passages most similar to ``query``, by its tokens ``span = (start, stop)`` (``[start, stop)``,
        special tokens counted as the session tokenizes: ``[CLS]`` is token 0) or by the tokens overlapping its
        characters ``chars = (start, stop)``, or as a whole; scores exact (the span score), each hit with its map."""
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise GalleryError(f"k must be a positive integer, got {k!r}")
        if span is not None and chars is not None:
            raise GalleryError("give span (tokens) or chars (characters), not both")
        s = self.session
        enc = s.encode(query, truncate)
        weights: Tensor | None = None
        if span is not None or chars is not None:
            probe = s.explain_encoded(enc, enc)  # tokens only: the span helpers of the explanation validate ranges
            start, stop = _pair(span if span is not None else chars, "span" if span is not None else "chars")
            if chars is not None:
                start, stop = probe.char_span("a", start, stop)
            weights = probe.span_weights("a", start, stop)
        q, e = region_query(enc.features, weights, "avg", head=s.head, grid=enc.grid)
        key_query = search_key_query(q, e, self._bias, s.normalize, whole=weights is None)
        scores, order = self.index.search(key_query, min(k, len(self)))
        indices = [int(i) for i in order]
        hit_texts = [self.passage(i) for i in indices]
        hits = []
        for score, i, text, feats in zip(
            scores.tolist(), indices, hit_texts, s.features_many(hit_texts, truncate=True)
        ):
            ex = decompose(
                enc.features,
                feats,
                "avg",
                normalize=True,
                head=s.head,
                grid_a=enc.grid,
                grid_b=(1, int(feats.shape[0])),
            )
            region = ex.region_map("a", weights) if weights is not None else ex.map_b
            tokens = s.tokenize(text, truncate=True)[0]
            hits.append(TextHit(i, text, float(score), region, tuple(tokens), self.label(i)))
        return hits

    def explain(self, query: str, index: int, *, words: bool = False, truncate: bool = False) -> ExplainedText:
        """The full decomposition of ``query`` against passage ``index`` (exactly ``session.explain``)."""
        text = self.passage(index)
        s = self.session
        return s.explain_encoded(s.encode(query, truncate), s.encode(text, truncate=True), words=words)

    def _check_index(self, index: Any) -> int:
        return checked_index(index, len(self))

    def __repr__(self) -> str:
        return f"TextGallery({len(self)} passages, {self.session.name!r}, '{self.path}')"


def _pair(value: Any, name: str) -> tuple[int, int]:
    try:
        start, stop = value
    except (TypeError, ValueError):
        raise GalleryError(f"{name} must be a (start, stop) pair, got {value!r}") from None
    return start, stop


def _require_exact(session: Any) -> None:
    if not hasattr(session, "explain_encoded") or not hasattr(session, "fingerprint"):
        raise GalleryError(f"a text gallery needs a TextSession, got {type(session).__name__}")
    if session.approximate:
        raise GalleryError(
            "span retrieval needs an exact decomposition; this session is APPROXIMATE (a CLS-pooling model)"
        )


__all__ = ["TextGallery", "TextHit", "passage_key", "text_hash"]
