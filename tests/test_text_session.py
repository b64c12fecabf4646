"""TextSession and ExplainedText: parity with sentence-transformers on the real offline all-MiniLM-L6-v2 weights,
exactness of the token decomposition, word grouping, spans, padding, errors, and CLS / Dense / other-pooling models
built tiny (random weights) in the test itself."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import simvis_widgets as sv
from simvis_widgets.errors import (
    CellIndexError,
    DecompositionError,
    ModelError,
    TextInputError,
    WeightsUnavailableError,
)
from simvis_widgets.text_models import MANIFEST, extract_packaged, locate_text_model, packaged_zip, verify_manifest

A = "The quick brown fox jumps over the lazy dog near the riverbank at dawn, while unsuspecting farmers sleep."
B = "A fast auburn fox leaped above a sleepy hound beside the stream early in the morning; villagers slept on."
VOCAB = ["cat", "dog", "sat", "on", "the", "mat", "running", "quickly", "unbelievable", "bank", "river", "money", "!"]


@pytest.fixture(scope="module")
def mini() -> sv.TextSession:
    return sv.TextSession.from_pretrained("all-MiniLM-L6-v2", device="cpu")


def _cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=0))


# ---- parity with sentence-transformers (the reference library's own output) -------------------------------


def test_score_and_embeddings_match_sentence_transformers(mini: sv.TextSession) -> None:
    texts = [A, B, "Short.", "unbelievably tokenised sub-words: antidisestablishmentarianism!"]
    ref = mini.model.encode(texts, convert_to_tensor=True, batch_size=2)
    ex = mini.explain(A, B)
    assert ex.score == pytest.approx(_cos(ref[0], ref[1]), abs=1e-5)
    for text, r in zip(texts, ref):
        assert float((mini.embed(text) - r).abs().max()) < 1e-5
    assert float((mini.embed_many(texts, batch_size=3) - ref).abs().max()) < 1e-5
    # the token features are what the library's pooling averages
    tokens = mini.model.encode(A, output_value="token_embeddings", convert_to_tensor=True)
    assert float((mini.features(A) - tokens).abs().max()) < 1e-5
    assert mini.model_normalizes and float(mini.embed(A).norm()) == pytest.approx(1.0, abs=1e-6)


def test_embed_many_masks_padding(mini: sv.TextSession) -> None:
    texts = ["Hi.", A + " " + B, "Two words", B, "x"]
    one_by_one = torch.stack([mini.embed(t) for t in texts])
    batched = mini.embed_many(texts, batch_size=5)  # one batch: every short text is padded to the longest
    assert float((batched - one_by_one).abs().max()) < 1e-5
    lengths = [f.shape[0] for f in mini.features_many(texts, batch_size=5)]
    assert lengths == [len(mini.tokenize(t)[0]) for t in texts]
    assert mini.embed_many([]).shape == (0, 384)


# ---- exactness -------------------------------------------------------------------------------------------


def test_token_decomposition_is_exact(mini: sv.TextSession) -> None:
    ex = mini.explain(A, B)
    n_a, n_b = len(ex.tokens_a), len(ex.tokens_b)
    assert ex.grid_a == (1, n_a) and ex.grid_b == (1, n_b) and ex.map_a.shape == (1, n_a)
    assert ex.exact and ex.global_term == 0 and ex.normalized
    assert float(ex.map_a.sum()) + ex.global_term == pytest.approx(ex.score, abs=1e-6)
    assert float(ex.map_b.sum()) + ex.global_term == pytest.approx(ex.score, abs=1e-6)
    p = ex.pairwise.double()
    assert torch.allclose(p.sum(1), ex.map_a[0].double(), atol=1e-6)
    assert torch.allclose(p.sum(0), ex.map_b[0].double(), atol=1e-6)
    # special tokens are kept and carry part of the score; padding never appears
    assert ex.tokens_a[0] == "[CLS]" and ex.tokens_a[-1] == "[SEP]"
    assert ex.special_a[0] and ex.special_a[-1] and not any(ex.special_a[1:-1])
    assert ex.offsets_a[0] == (0, 0) and "[PAD]" not in ex.tokens_a + ex.tokens_b
    assert float(ex.map_a[0, 0]) != 0.0
    for tok, (s, e), special in zip(ex.tokens_a, ex.offsets_a, ex.special_a):
        assert special or A[s:e] == tok


def test_words_group_pieces_exactly_and_reassemble_the_text(mini: sv.TextSession) -> None:
    text = "Unbelievably, antidisestablishmentarianism rebounded!"
    ex = mini.explain(text, B)
    assert len(ex.tokens_a) > len(text.split()) + 3  # there are sub-word pieces to group
    w = mini.explain(text, B, words=True)
    assert w.words and w == w  # noqa: PLR0124 -- identity equality of the frozen dataclass
    assert w.word_level() is w
    assert w.score == ex.score and w.global_term == ex.global_term
    assert float(w.map_a.sum()) == pytest.approx(ex.score, abs=1e-6)
    # brute force: each word's value is the sum of its pieces' values, and its pairwise row their rows' sum
    ids = ex.word_ids_a
    groups: list[list[int]] = []
    for i, wid in enumerate(ids):
        if groups and wid is not None and ids[groups[-1][-1]] == wid:
            groups[-1].append(i)
        else:
            groups.append([i])
    assert len(groups) == len(w.tokens_a)
    for g, members in enumerate(groups):
        assert float(w.map_a[0, g]) == pytest.approx(float(ex.map_a[0, members].sum()), abs=1e-6)
        assert torch.allclose(w.pairwise[g], ex.pairwise[members].sum(0), atol=1e-6)
    # words reassemble the text: their spans, with the gaps between them, give it back
    words = [(tok, off) for tok, off, sp in zip(w.tokens_a, w.offsets_a, w.special_a) if not sp]
    assert [t for t, _ in words] == ["Unbelievably", ",", "antidisestablishmentarianism", "rebounded", "!"]
    rebuilt, cursor = "", 0
    for tok, (s, e) in words:
        assert text[s:e] == tok
        rebuilt += text[cursor:s] + tok
        cursor = e
    assert rebuilt + text[cursor:] == text
    assert w.tokens_a[0] == "[CLS]" and w.special_a[0] and w.tokens_b == mini.explain(text, B, words=True).tokens_b


def test_span_maps_equal_sums_of_pairwise_rows(mini: sv.TextSession) -> None:
    ex = mini.explain(A, B)
    p = ex.pairwise
    for side, start, stop in (("a", 1, 5), ("a", 0, len(ex.tokens_a)), ("b", 3, 4), ("b", 2, 9)):
        rows = p[start:stop].sum(0) if side == "a" else p[:, start:stop].sum(1)
        assert torch.allclose(ex.span_map(side, start, stop)[0], rows, atol=1e-6)
        own = ex.map_a if side == "a" else ex.map_b
        assert ex.span_score(side, start, stop) == pytest.approx(float(own[0, start:stop].sum()), abs=1e-6)
        w = ex.span_weights(side, start, stop)
        assert w.shape == (1, len(ex.tokens_a if side == "a" else ex.tokens_b)) and float(w.sum()) == stop - start
    assert ex.span_score("a", 0, len(ex.tokens_a)) == pytest.approx(ex.score, abs=1e-6)
    # characters -> tokens: "brown fox" covers tokens 3..4 ([CLS] The quick brown fox)
    start = A.index("brown")
    assert ex.char_span("a", start, start + len("brown fox")) == (3, 5)
    assert ex.char_span("a", start + 1, start + 2) == (3, 4)  # a character inside a token selects it


def test_swapped_exchanges_every_passage_field(mini: sv.TextSession) -> None:
    ex = mini.explain(A, B)
    sw = ex.swapped()
    assert sw.text_a == B and sw.tokens_a == ex.tokens_b and sw.offsets_b == ex.offsets_a
    assert sw.special_a == ex.special_b and sw.word_ids_b == ex.word_ids_a
    assert torch.equal(sw.map_a, ex.map_b) and sw.grid_a == ex.grid_b and sw.score == ex.score
    assert torch.allclose(sw.pairwise, ex.pairwise.T)
    direct = mini.explain(B, A)
    assert direct.score == pytest.approx(ex.score, abs=1e-6)
    assert torch.allclose(direct.map_a, sw.map_a, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.sampled_from(VOCAB), min_size=1, max_size=8),
    st.lists(st.sampled_from(VOCAB), min_size=1, max_size=8),
)
def test_random_short_texts_are_exact_and_symmetric(mini: sv.TextSession, wa: list[str], wb: list[str]) -> None:
    a, b = " ".join(wa), " ".join(wb)
    enc_a, enc_b = mini.encode(a), mini.encode(b)
    ex = mini.explain_encoded(enc_a, enc_b)
    assert float(ex.map_a.sum()) == pytest.approx(ex.score, abs=1e-5)
    assert float(ex.map_b.sum()) == pytest.approx(ex.score, abs=1e-5)
    back = mini.explain_encoded(enc_b, enc_a)
    assert back.score == pytest.approx(ex.score, abs=1e-6)
    assert torch.allclose(back.map_b, ex.map_a, atol=1e-6)
    words = ex.word_level()
    assert float(words.map_a.sum()) == pytest.approx(ex.score, abs=1e-5)
    assert [t for t, sp in zip(words.tokens_a, words.special_a) if not sp] == [w for w in wa]


# ---- errors, each named ------------------------------------------------------------------------------------


def test_bad_inputs_are_named(mini: sv.TextSession) -> None:
    with pytest.raises(TextInputError, match="text_a must be a str"):
        mini.explain(3, B)  # type: ignore[arg-type]
    with pytest.raises(TextInputError, match="text_b is empty"):
        mini.explain(A, "")
    with pytest.raises(TextInputError, match="only whitespace"):
        mini.embed(" \n\t ")
    long = " ".join(["word"] * 300)
    with pytest.raises(TextInputError, match=r"text_a has 302 tokens .* at most 256.*truncate=True"):
        mini.explain(long, B)
    with pytest.raises(TextInputError, match=r"texts\[1\] has 302 tokens"):
        mini.embed_many(["ok", long])
    cut = mini.explain(long, B, truncate=True)
    assert cut.truncated_a and not cut.truncated_b and len(cut.tokens_a) == 256 and cut.tokens_a[-1] == "[SEP]"
    assert "TRUNCATED A" in repr(cut)
    ex = mini.explain(A, B)
    for args in (("a", 0, 0), ("a", 5, 3), ("b", -1, 2), ("a", 0, len(ex.tokens_a) + 1)):
        with pytest.raises(CellIndexError, match="token span"):
            ex.span_map(*args)
    with pytest.raises(CellIndexError, match="must be an integer"):
        ex.span_score("a", 1.5, 3)  # type: ignore[arg-type]
    with pytest.raises(DecompositionError, match="side must be 'a' or 'b'"):
        ex.span_map("c", 0, 1)
    with pytest.raises(CellIndexError, match="cover no token"):
        ex.char_span("a", A.index(" "), A.index(" ") + 1)
    with pytest.raises(CellIndexError, match="not inside passage A"):
        ex.char_span("a", 0, len(A) + 1)
    with pytest.raises(ModelError, match="max_tokens must be an integer in"):
        sv.TextSession(mini.model, max_tokens=1000)
    with pytest.raises(ModelError, match="not a torch device"):
        sv.TextSession(mini.model, device="nope")
    with pytest.raises(ModelError, match="wraps a sentence-transformers model"):
        sv.TextSession(torch.nn.Linear(2, 2))


def test_unknown_model_fails_fast_saying_how_to_get_it() -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match=r"not on this machine.*pip install simvis-widgets\[text\]"):
        sv.TextSession.from_pretrained("no-such-org/no-such-model-xyz")
    assert time.perf_counter() - start < 10  # offline: no retries, no hang
    with pytest.raises(ModelError, match="non-empty string"):
        sv.TextSession.from_pretrained("")


def test_packaged_model_is_extracted_atomically_and_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMVIS_CACHE", str(tmp_path))
    zip_path = packaged_zip()
    assert zip_path is not None
    folder = extract_packaged(zip_path)
    assert (
        folder.parent == tmp_path / "text-models" and folder.name == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    )
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    manifest = verify_manifest(folder)
    assert "model.safetensors" in manifest and (folder / MANIFEST).is_file()
    located = locate_text_model("sentence-transformers/all-MiniLM-L6-v2")
    assert located.path == folder and located.origin == "package"
    (folder / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ModelError, match="damaged .*tokenizer_config.json"):
        locate_text_model("all-MiniLM-L6-v2")


def test_fingerprint_names_weights_pooling_and_length(mini: sv.TextSession) -> None:
    fp = mini.fingerprint()
    located = locate_text_model("all-MiniLM-L6-v2")
    file_sha = hashlib.sha256((located.path / "model.safetensors").read_bytes()).hexdigest()
    from simvis_widgets._io import digest

    assert fp["weights"] == digest(f"model.safetensors:{file_sha}".encode())
    assert fp["model"] == "all-MiniLM-L6-v2" and fp["pooling"] == "avg" and fp["normalize"] is True
    assert fp["max_tokens"] == 256 and fp["approximate"] is False
    shorter = sv.TextSession(mini.model, "all-MiniLM-L6-v2", max_tokens=128, weights_digest=fp["weights"])
    assert shorter.fingerprint()["max_tokens"] == 128 and shorter.fingerprint() != fp


# ---- other sentence-transformers pipelines, built tiny (random weights, no download) ----------------------


def _tiny_folder(tmp_path: Path, pooling: str, dense: str | None = None, normalize: bool = False) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCAB, "##s", "##ing", "##ed"]
    hf = tmp_path / "hf"
    hf.mkdir(exist_ok=True)
    (hf / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(hf)
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt"), do_lower_case=True).save_pretrained(hf)
    modules: list[torch.nn.Module] = [Transformer(str(hf), max_seq_length=32), Pooling(32, pooling_mode=pooling)]
    if dense is not None:
        activation = torch.nn.Identity() if dense == "identity" else torch.nn.Tanh()
        layer = Dense(32, 16, bias=True, activation_function=activation)
        torch.nn.init.normal_(layer.linear.bias, std=0.5)
        modules.append(layer)
    if normalize:
        modules.append(Normalize())
    folder = tmp_path / f"st-{pooling}-{dense}"
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


def test_cls_pooling_is_refused_then_approximate(tmp_path: Path) -> None:
    folder = _tiny_folder(tmp_path, "cls")
    with pytest.raises(ModelError, match="pools its CLS token.*allow_cls=True"):
        sv.TextSession.from_pretrained(str(folder), device="cpu")
    s = sv.TextSession.from_pretrained(str(folder), device="cpu", allow_cls=True)
    assert s.approximate and "APPROXIMATE" in repr(s) and s.fingerprint()["approximate"] is True
    a, b = "the cat sat on the mat", "dog running quickly"
    ex = s.explain(a, b)
    assert not ex.exact and "APPROXIMATE" in repr(ex)
    ref = s.model.encode([a, b], convert_to_tensor=True)
    assert ex.score == pytest.approx(_cos(ref[0], ref[1]), abs=1e-5)
    assert float((s.embed(a) - ref[0]).abs().max()) < 1e-5
    assert float(ex.map_a.sum()) + ex.global_term == pytest.approx(ex.score, abs=1e-6)
    # oracle: reverse-mode Jacobians of the embedding w.r.t. each token (norm statistics frozen), times the token
    from simvis_widgets.text_linearise import TextCLSLinearisation, frozen_layer_norms

    lin = TextCLSLinearisation(s.encoder, s.head)
    tokens = s.features(a)
    with frozen_layer_norms(lin.last), torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        jac = torch.autograd.functional.jacobian(lin.embedding, tokens)  # (D, N, C)
    brute = torch.einsum("dnc,nc->nd", jac, tokens)
    assert torch.allclose(lin.contributions(tokens), brute, atol=1e-5)
    # the linearisation carries the embedding (it does not cancel): the tokens' terms nearly sum to e
    with torch.no_grad():
        e = lin.embedding(tokens)
    assert float((brute.sum(0) - e).norm() / e.norm()) < 0.5
    with pytest.raises(sv.GalleryError, match="APPROXIMATE"):
        sv.TextGallery.build(["the cat"], s)


def test_dense_head_is_exact_with_a_global_term(tmp_path: Path) -> None:
    s = sv.TextSession.from_pretrained(str(_tiny_folder(tmp_path, "mean", dense="identity")), device="cpu")
    assert s.head is not None and s.head.bias is not None and s.dim == 16 and not s.model_normalizes
    a, b = "the cat sat on the mat", "money in the river bank"
    ex = s.explain(a, b)
    ref = s.model.encode([a, b], convert_to_tensor=True)
    assert ex.exact and ex.global_term != 0
    assert ex.score == pytest.approx(_cos(ref[0], ref[1]), abs=1e-5)
    assert float((s.embed_many([a, b]) - ref).abs().max()) < 1e-5
    assert float(ex.map_a.sum()) + ex.global_term == pytest.approx(ex.score, abs=1e-6)
    assert float(ex.pairwise.sum()) + ex.global_term == pytest.approx(ex.score, abs=1e-6)


@pytest.mark.parametrize(
    ("pooling", "dense", "message"),
    [
        ("max", None, "pooling mode 'max'"),
        ("weightedmean", None, "pooling mode 'weightedmean'"),
        ("lasttoken", None, "pooling mode 'lasttoken'"),
        ("mean", "tanh", "activation Tanh: not affine"),
    ],
)
def test_inexact_pipelines_are_refused_naming_why(
    tmp_path: Path, pooling: str, dense: str | None, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        sv.TextSession.from_pretrained(str(_tiny_folder(tmp_path, pooling, dense=dense)), device="cpu")


@pytest.mark.gpu
def test_cuda_session_matches_the_library_and_the_cpu(mini: sv.TextSession) -> None:
    gpu = sv.TextSession.from_pretrained("all-MiniLM-L6-v2", device="cuda")
    assert gpu.fingerprint() == mini.fingerprint()  # the digest is of the files, not of the device's tensors
    ex = gpu.explain(A, B)
    ref = gpu.model.encode([A, B], convert_to_tensor=True)
    assert ex.map_a.device.type == "cuda"
    assert ex.score == pytest.approx(_cos(ref[0], ref[1]), abs=1e-5)
    assert float(ex.map_a.sum()) == pytest.approx(ex.score, abs=1e-5)
    assert ex.score == pytest.approx(mini.explain(A, B).score, abs=1e-4)
    assert float((gpu.embed_many([A, B, "x"]).cpu() - mini.embed_many([A, B, "x"])).abs().max()) < 1e-4
