"""IvfPqIndex (FAISS IVF-PQ + exact re-rank) against a numpy brute-force oracle."""

from __future__ import annotations

import numpy as np
import pytest

from simvis_widgets.errors import GalleryError
from simvis_widgets.gallery.ann import IvfPqIndex, default_lists, default_subquantizers
from simvis_widgets.gallery.index import ArrayKeys

pytest.importorskip("faiss")

N, D, CENTRES, K = 20_000, 64, 20, 10  # 1,000 rows a cluster: more than the 100 candidates re-ranked


def clustered(n: int, d: int, centres: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` normalised rows around ``centres`` Gaussian centres, and 30 queries near random centres."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = c[rng.integers(0, centres, n)] + rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = c[rng.integers(0, centres, 30)] + 0.5 * rng.standard_normal((30, d)).astype(np.float32) / np.sqrt(d)
    return x, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def brute_force(x: np.ndarray, q: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """The oracle: rows of the k best exact scores (float64 dot products), ties by lower row."""
    s = x.astype(np.float64) @ q.astype(np.float64)
    if exclude is not None:
        s[exclude] = -np.inf
    return np.lexsort((np.arange(len(s)), -s))[:k]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(N, D, CENTRES, seed=1)


@pytest.fixture(scope="module")
def index(data: tuple[np.ndarray, np.ndarray]) -> IvfPqIndex:
    return IvfPqIndex.build(ArrayKeys(data[0]), seed=0)


def test_recall_at_10_and_scores_are_exact(data: tuple[np.ndarray, np.ndarray], index: IvfPqIndex) -> None:
    x, queries = data
    hits = 0
    for q in queries:
        scores, rows = index.search(q, K)
        assert scores.dtype == np.float32 and rows.dtype == np.int64 and len(rows) == K
        assert len(set(rows.tolist())) == K
        # exact scores of the rows returned (never PQ estimates), best first
        np.testing.assert_allclose(scores, x[rows].astype(np.float64) @ q.astype(np.float64), rtol=0, atol=1e-6)
        assert np.all(np.diff(scores) <= 0)
        hits += len(np.intersect1d(rows, brute_force(x, q, K)))
    assert hits / (K * len(queries)) >= 0.95
    assert index.stats["last_search"]["candidates"] >= 100


def test_exclude_is_honoured(data: tuple[np.ndarray, np.ndarray], index: IvfPqIndex) -> None:
    x, queries = data
    q = queries[0]
    top = brute_force(x, q, 50)
    exclude = top[:25]  # the 25 best rows: what is returned must come from further down
    scores, rows = index.search(q, K, exclude=exclude)
    assert len(rows) == K and not np.isin(rows, exclude).any()
    truth = brute_force(x, q, K, exclude=exclude)
    assert len(np.intersect1d(rows, truth)) >= 8
    np.testing.assert_allclose(scores, x[rows] @ q, rtol=0, atol=1e-6)
    # an exclude list in any order, with repeats, as a list of numpy ints
    _, rows2 = index.search(q, K, exclude=np.concatenate([exclude[::-1], exclude[:3]]))
    np.testing.assert_array_equal(rows, rows2)


def test_k_at_or_beyond_the_gallery_returns_every_remaining_row_exactly() -> None:
    x, queries = clustered(600, 16, 10, seed=3)
    index = IvfPqIndex.build(ArrayKeys(x), lists=8)
    q = queries[0]
    scores, rows = index.search(q, 1000)
    assert len(rows) == 600
    np.testing.assert_array_equal(rows, brute_force(x, q, 600))
    np.testing.assert_allclose(scores, x[rows] @ q, rtol=0, atol=1e-6)
    scores, rows = index.search(q, 600, exclude=np.arange(0, 600, 2))
    assert len(rows) == 300 and np.all(rows % 2 == 1)
    np.testing.assert_array_equal(rows, brute_force(x, q, 300, exclude=np.arange(0, 600, 2)))
    assert index.search(q, 5, exclude=np.arange(600))[1].size == 0


def test_round_trip_through_bytes(data: tuple[np.ndarray, np.ndarray], index: IvfPqIndex) -> None:
    x, queries = data
    index.probes = 12
    index.candidates = 150
    data_bytes = index.to_bytes()
    loaded = IvfPqIndex.from_bytes(data_bytes, ArrayKeys(x))
    assert (loaded.probes, loaded.candidates, loaded.lists, len(loaded)) == (12, 150, index.lists, N)
    for q in queries[:10]:
        s1, r1 = index.search(q, K)
        s2, r2 = loaded.search(q, K)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(s1, s2)
    index.candidates = None
    index.probes = loaded.stats["probes"]


def test_from_bytes_refuses_other_keys_and_junk(data: tuple[np.ndarray, np.ndarray], index: IvfPqIndex) -> None:
    x, _ = data
    blob = index.to_bytes()
    with pytest.raises(GalleryError, match="rows"):
        IvfPqIndex.from_bytes(blob, ArrayKeys(x[:-1]))
    with pytest.raises(GalleryError, match="dim"):
        IvfPqIndex.from_bytes(blob, ArrayKeys(np.zeros((N, D + 1), np.float32)))
    with pytest.raises(GalleryError, match="header"):
        IvfPqIndex.from_bytes(b"junk" * 100, ArrayKeys(x))
    with pytest.raises(GalleryError, match="checksum"):
        IvfPqIndex.from_bytes(blob[:-10], ArrayKeys(x))
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    with pytest.raises(GalleryError, match="checksum"):
        IvfPqIndex.from_bytes(bytes(flipped), ArrayKeys(x))
    # a well-formed header over a payload FAISS cannot read
    head_len = int.from_bytes(blob[8:16], "little")
    import hashlib
    import json

    header = json.loads(blob[16 : 16 + head_len])
    payload = b"junkjunkjunk"
    header["sha256"] = hashlib.sha256(payload).hexdigest()
    head = json.dumps(header).encode()
    with pytest.raises(GalleryError, match="FAISS"):
        IvfPqIndex.from_bytes(blob[:8] + len(head).to_bytes(8, "little") + head + payload, ArrayKeys(x))


def test_padding_when_no_subquantizer_count_divides_dim() -> None:
    assert default_subquantizers(1281) == 184  # padded to 1288
    assert [default_subquantizers(d) for d in (64, 256, 1280, 2048)] == [16, 64, 256, 256]
    x, queries = clustered(3000, 37, 20, seed=5)
    index = IvfPqIndex.build(ArrayKeys(x), subquantizers=8, lists=16)
    assert index.stats["padded_dim"] == 40 and index.dim == 37
    for q in queries[:5]:
        scores, rows = index.search(q, K)
        np.testing.assert_allclose(scores, x[rows] @ q, rtol=0, atol=1e-6)
        assert len(np.intersect1d(rows, brute_force(x, q, K))) >= 9
    loaded = IvfPqIndex.from_bytes(index.to_bytes(), ArrayKeys(x))
    np.testing.assert_array_equal(loaded.search(queries[0], K)[1], index.search(queries[0], K)[1])


def test_defaults_follow_the_gallery_size() -> None:
    assert default_lists(1_000_000) == 4000
    assert default_lists(100) == 2  # at most rows // 39
    assert default_lists(10) == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lists": 0}, "lists"),
        ({"lists": 5000}, "lists"),
        ({"lists": 2.5}, "lists"),
        ({"subquantizers": 0}, "subquantizers"),
        ({"subquantizers": 65}, "subquantizers"),
        ({"probes": 0}, "probes"),
        ({"lists": 8, "probes": 9}, "probes"),
        ({"candidates": 0}, "candidates"),
        ({"train_rows": 5000}, "train_rows"),
        ({"lists": 8, "train_rows": 4}, "train_rows"),
        ({"seed": -1}, "seed"),
        ({"probes": True}, "probes"),
    ],
)
def test_build_arguments_are_named(kwargs: dict[str, object], name: str) -> None:
    x, _ = clustered(1000, 64, 10, seed=7)
    with pytest.raises(GalleryError, match=name) as err:
        IvfPqIndex.build(ArrayKeys(x), **kwargs)  # type: ignore[arg-type]
    assert str(next(iter(kwargs.values()))) in str(err.value)


def test_empty_keys_refused() -> None:
    with pytest.raises(GalleryError, match="no rows"):
        IvfPqIndex.build(ArrayKeys(np.zeros((0, 8), np.float32)))


def test_search_arguments_are_named(data: tuple[np.ndarray, np.ndarray], index: IvfPqIndex) -> None:
    _, queries = data
    q = queries[0]
    with pytest.raises(GalleryError, match="k must"):
        index.search(q, 0)
    with pytest.raises(GalleryError, match="k must"):
        index.search(q, 1.5)  # type: ignore[arg-type]
    with pytest.raises(GalleryError, match="query"):
        index.search(q[:-1], K)
    with pytest.raises(GalleryError, match="NaN"):
        index.search(np.full(D, np.nan, np.float32), K)
    with pytest.raises(GalleryError, match=f"exclude row {N}"):
        index.search(q, K, exclude=np.array([1, N]))
    with pytest.raises(GalleryError, match="exclude"):
        index.search(q, K, exclude=np.array([0.5]))
    with pytest.raises(GalleryError, match="probes"):
        index.probes = index.lists + 1
    with pytest.raises(GalleryError, match="candidates"):
        index.candidates = 0


def test_small_gallery_and_few_candidates_still_return_k(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, queries = clustered(300, 8, 5, seed=11)  # fewer rows than 8-bit PQ wants: fewer bits, still works
    index = IvfPqIndex.build(ArrayKeys(x), lists=4, probes=1, candidates=20)
    assert index.stats["bits"] < 8 or index.stats["train_rows"] >= 256
    scores, rows = index.search(queries[0], K, exclude=np.arange(100))
    assert len(rows) == K and rows.min() >= 100
    np.testing.assert_allclose(scores, x[rows] @ queries[0], rtol=0, atol=1e-6)
