"""TextGallery: span-restricted retrieval over passages ranks exactly as brute force over ``span_score`` with every
stored passage; build / open round trip, incremental rebuild, integrity (fingerprint, checksums)."""

from __future__ import annotations

from pathlib import Path

import lance
import numpy as np
import pytest
import torch

import simvis_widgets as sv
from simvis_widgets.errors import CellIndexError, GalleryError, TextInputError

PASSAGES = [
    "The cat sat on the warm mat by the fire.",
    "Stock markets fell sharply after the announcement.",
    "A dog chased the ball across the park.",
    "The recipe needs two cups of flour and an egg.",
    "Kittens sleep most of the day in sunny spots.",
    "Interest rates were raised by the central bank.",
    "The river bank flooded after days of heavy rain.",
    "She deposited her savings at the local bank branch.",
    "Puppies and kittens are often adopted from shelters.",
    "Bake the bread at a high temperature for thirty minutes.",
]
QUERY = "My kitten loves to nap while the bank raises interest rates."


@pytest.fixture(scope="module")
def mini() -> sv.TextSession:
    return sv.TextSession.from_pretrained("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="module")
def built(mini: sv.TextSession, tmp_path_factory: pytest.TempPathFactory) -> sv.TextGallery:
    path = tmp_path_factory.mktemp("text-gallery") / "g.lance"
    return sv.TextGallery.build(PASSAGES, mini, path, labels=[i % 3 for i in range(len(PASSAGES))], batch_size=4)


@pytest.fixture(scope="module")
def oracle(mini: sv.TextSession) -> list[sv.ExplainedText]:
    """Every stored passage explained against the query on its own (no gallery involved)."""
    return [mini.explain(QUERY, text) for text in PASSAGES]


@pytest.mark.parametrize("span", [None, (1, 4), (8, 12), (0, 1)])
def test_span_search_ranks_exactly_as_brute_force(
    oracle: list[sv.ExplainedText], built: sv.TextGallery, span: tuple[int, int] | None
) -> None:
    brute = [ex.score if span is None else ex.span_score("a", *span) for ex in oracle]
    order = sorted(range(len(PASSAGES)), key=lambda i: -brute[i])
    gaps = np.diff(sorted(brute))
    assert gaps.min() > 1e-4  # no near-ties: the order is a real check
    hits = built.search(QUERY, k=len(PASSAGES), span=span)
    assert [h.index for h in hits] == order
    for h in hits:
        assert h.score == pytest.approx(brute[h.index], abs=1e-5)
        assert h.text == PASSAGES[h.index] and h.label == h.index % 3
        ex = oracle[h.index]
        expected = ex.map_b if span is None else ex.span_map("a", *span)
        assert h.map.shape == expected.shape and len(h.tokens) == expected.shape[1]
        assert torch.allclose(h.map, expected, atol=1e-5)
    top3 = built.search(QUERY, k=3, span=span)
    assert [h.index for h in top3] == order[:3]


def test_character_span_selects_the_overlapping_tokens(oracle: list[sv.ExplainedText], built: sv.TextGallery) -> None:
    start = QUERY.index("kitten")
    tokens = oracle[0].char_span("a", start, start + len("kitten loves"))
    assert tokens == (2, 4)
    by_chars = built.search(QUERY, k=4, chars=(start, start + len("kitten loves")))
    by_tokens = built.search(QUERY, k=4, span=tokens)
    assert [h.index for h in by_chars] == [h.index for h in by_tokens]
    assert [h.score for h in by_chars] == pytest.approx([h.score for h in by_tokens], abs=1e-7)
    assert PASSAGES.index("Kittens sleep most of the day in sunny spots.") == by_chars[0].index


def test_round_trip_and_explain(mini: sv.TextSession, built: sv.TextGallery, oracle: list[sv.ExplainedText]) -> None:
    again = sv.TextGallery.open(built.path, mini)
    assert len(again) == len(PASSAGES) and again.passages == PASSAGES
    assert again.labels == [i % 3 for i in range(len(PASSAGES))]
    assert again.passage(4) == PASSAGES[4] and again.tokens(4) == len(mini.tokenize(PASSAGES[4])[0])
    assert [h.index for h in again.search(QUERY, k=5)] == [h.index for h in built.search(QUERY, k=5)]
    ex = again.explain(QUERY, 7)
    direct = oracle[7]
    assert ex.score == direct.score and torch.equal(ex.map_a, direct.map_a) and ex.tokens_b == direct.tokens_b
    # the stored embeddings are the model's (before normalisation; normalised they are its encode output)
    stored = torch.from_numpy(again.keys.embeddings(np.arange(len(again))))
    assert float((torch.nn.functional.normalize(stored, dim=-1) - mini.embed_many(PASSAGES)).abs().max()) < 1e-5


def test_rebuild_embeds_only_what_changed(mini: sv.TextSession, tmp_path: Path) -> None:
    path = tmp_path / "g.lance"
    first = sv.TextGallery.build(PASSAGES[:4], mini, path)
    assert (first.reused, first.embedded) == (0, 4)
    changed = [*PASSAGES[:2], "Something else entirely.", PASSAGES[3], PASSAGES[4]]
    second = sv.TextGallery.build(changed, mini, path)
    assert (second.reused, second.embedded) == (3, 2) and sorted(second.passages) == sorted(changed)


def test_stale_fingerprint_is_refused(mini: sv.TextSession, built: sv.TextGallery) -> None:
    shorter = sv.TextSession(mini.model, mini.name, max_tokens=64, weights_digest=mini.weights_digest)
    with pytest.raises(GalleryError, match=r"another session \(max_tokens: gallery 256 vs session 64\)"):
        sv.TextGallery.open(built.path, shorter)
    other = sv.TextSession(mini.model, mini.name, weights_digest="0" * 64)
    with pytest.raises(GalleryError, match="weights: gallery"):
        sv.TextGallery.open(built.path, other)


def test_tampered_row_fails_its_checksum(mini: sv.TextSession, tmp_path: Path) -> None:
    path = tmp_path / "g.lance"
    sv.TextGallery.build(PASSAGES[:3], mini, path)
    ds = lance.dataset(str(path))
    table = ds.to_table()
    sources = table.column("source").to_pylist()
    sources[1] = "A passage someone rewrote afterwards."
    import pyarrow as pa

    forged = table.set_column(table.schema.get_field_index("source"), table.schema.field("source"), pa.array(sources))
    lance.write_dataset(forged, str(path), schema=table.schema, mode="overwrite")
    with pytest.raises(GalleryError, match=r"row 1 .* fails its checksum"):
        sv.TextGallery.open(path, mini)


def test_bad_requests_are_named(mini: sv.TextSession, built: sv.TextGallery, tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="k must be a positive integer"):
        built.search(QUERY, k=0)
    with pytest.raises(GalleryError, match="span .tokens. or chars"):
        built.search(QUERY, span=(1, 2), chars=(0, 3))
    with pytest.raises(CellIndexError, match="token span"):
        built.search(QUERY, span=(5, 500))
    with pytest.raises(GalleryError, match="gallery index"):
        built.passage(len(PASSAGES))
    with pytest.raises(GalleryError, match="passage 1 is a int"):
        sv.TextGallery.build(["fine", 3], mini)  # type: ignore[list-item]
    with pytest.raises(GalleryError, match="no passages"):
        sv.TextGallery.build([], mini)
    with pytest.raises(TextInputError, match=r"texts\[0\] has 402 tokens"):
        sv.TextGallery.build([" ".join(["word"] * 400)], mini, tmp_path / "long.lance")
    long = sv.TextGallery.build([" ".join(["word"] * 400), "short"], mini, tmp_path / "cut.lance", truncate=True)
    assert long.tokens(0) == 256
    with pytest.raises(GalleryError, match="no gallery at"):
        sv.TextGallery.open(tmp_path / "nothing", mini)
