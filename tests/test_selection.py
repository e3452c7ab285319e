"""The Repr Filter selection (SPEC section 7): exactly the sequential loop, however it is blocked."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset, Features, List, Value, load_from_disk

from deita_hf.selection import SelectionInputError, select_indices, unit_rows
from deita_hf.subset import deita_select


def reference_selection(scores, vectors, budget, threshold):
    """SPEC section 7, one candidate at a time. The vectors are ``unit_rows(vectors)`` (float32); ``cos`` is
    their exact dot product (float32 products are exact in float64; ``math.fsum`` sums them exactly); a
    candidate is rejected iff some ``cos > threshold``. Returns the selected rows, the highest ``cos`` of
    each to the rows before it, and the number of candidates examined."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    unit = unit_rows(np.asarray(vectors, dtype=np.float32)).astype(np.float64)
    selected, nearest, examined = [], [], 0
    for x in order:
        if len(selected) == budget:
            break
        examined += 1
        products = [unit[x] * unit[y] for y in selected]
        if not any(math.fsum([*p.tolist(), -threshold]) > 0 for p in products):
            selected.append(x)
            nearest.append(max((math.fsum(p.tolist()) for p in products), default=math.nan))
    return selected, nearest, examined


def pool(scores, vectors, **extra):
    return Dataset.from_dict(
        {"deita_score": list(scores), "embedding": np.asarray(vectors, dtype=np.float32), **extra}
    )


def clustered(seed, n, dim, clusters, noise):
    """``n`` vectors around ``clusters`` centres (near duplicates) and integer scores (many ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, dim))
    return rng.integers(0, 6, n).astype(float), vectors.astype(np.float32)


# -- the contract: the sequential loop -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seed", "n", "dim", "clusters", "noise", "threshold", "budget", "block_size"),
    [
        (0, 400, 16, 60, 0.3, 0.9, 150, 32),  # planted near duplicates, ties in the scores
        (1, 400, 16, 60, 0.3, 0.9, 150, 1),  # one candidate per block: the plain loop
        (2, 300, 8, 300, 1.0, 0.5, 120, 64),  # random directions, a low threshold
        (3, 500, 32, 20, 0.5, 0.8, 1000, 128),  # the budget is larger than what the pool yields
        (4, 250, 4, 10, 0.05, 0.99, 40, 7),  # tight clusters in few dimensions, odd block size
    ],
)
def test_selection_equals_the_sequential_loop(seed, n, dim, clusters, noise, threshold, budget, block_size):
    scores, vectors = clustered(seed, n, dim, clusters, noise)
    result = select_indices(pool(scores, vectors), budget, threshold, block_size=block_size, progress=False)
    expected, nearest, examined = reference_selection(scores, vectors, budget, threshold)
    assert 0 < len(expected) < n  # the case rejects some rows and keeps some
    assert result.indices == expected
    assert (result.examined, result.rejected) == (examined, examined - len(expected))
    np.testing.assert_allclose(result.similarities, nearest, atol=1e-5)  # NaN first in both


def test_ties_in_score_keep_the_original_row_order():
    vectors = np.eye(5, dtype=np.float32)
    result = select_indices(pool([1.0, 2.0, 1.0, 2.0, 1.0], vectors), budget=5, progress=False)
    assert result.indices == [1, 3, 0, 2, 4]


def test_a_similarity_exactly_at_the_threshold_is_kept():
    # (3, 4) / 5 is (0.6f, 0.8f); its similarity to (1, 0) is exactly float32(0.6) = 0.60000002384...
    vectors = [[1, 0], [3, 4]]
    at = float(np.float32(0.6))
    assert select_indices(pool([2.0, 1.0], vectors), 2, threshold=at, progress=False).indices == [0, 1]
    assert select_indices(pool([2.0, 1.0], vectors), 2, threshold=0.6, progress=False).indices == [0]


def test_decisions_follow_the_exact_similarity_where_float32_rounding_would_flip_them():
    rng = np.random.default_rng(7)
    dim, flips = 256, 0
    for _ in range(40):
        a = rng.normal(size=dim)
        b = 0.9 * a / np.linalg.norm(a) + math.sqrt(1 - 0.81) * rng.normal(size=dim) / math.sqrt(dim)
        unit = unit_rows(np.array([a, b], dtype=np.float32))
        float32_dot = float(np.dot(unit[0], unit[1]))
        exact = math.fsum((unit[0].astype(np.float64) * unit[1].astype(np.float64)).tolist())
        if float32_dot == exact:
            continue
        threshold = (float32_dot + exact) / 2  # float32 arithmetic and exact arithmetic disagree here
        result = select_indices(pool([2.0, 1.0], np.array([a, b])), 2, threshold, progress=False)
        assert result.indices == ([0, 1] if exact <= threshold else [0])
        flips += 1
    assert flips > 20


def test_budget_one_selects_the_highest_scored_row():
    scores, vectors = clustered(5, 50, 8, 5, 0.3)
    result = select_indices(pool(scores, vectors), budget=1, progress=False)
    assert result.indices == [int(np.argmax(scores))]
    assert (result.examined, result.rejected) == (1, 0)
    assert math.isnan(result.similarities[0])


def test_budget_larger_than_the_pool_examines_every_row():
    scores, vectors = clustered(6, 80, 8, 10, 0.2)
    result = select_indices(pool(scores, vectors), budget=1000, progress=False)
    assert result.examined == 80
    assert len(result.indices) + result.rejected == 80
    assert result.indices == reference_selection(scores, vectors, 1000, 0.9)[0]


def test_the_selection_for_a_budget_is_a_prefix_of_the_selection_for_a_larger_budget():
    ds = pool(*clustered(8, 600, 16, 100, 0.3))
    large = select_indices(ds, 300, block_size=64, progress=False).indices
    for budget in (1, 17, 64, 65, 200):
        assert select_indices(ds, budget, block_size=64, progress=False).indices == large[:budget]


def test_result_does_not_depend_on_the_block_size():
    ds = pool(*clustered(9, 500, 16, 80, 0.3))
    results = {size: select_indices(ds, 200, block_size=size, progress=False) for size in (1, 5, 64, 1024)}
    assert len({tuple(r.indices) for r in results.values()}) == 1
    assert len({r.examined for r in results.values()}) == 1


def test_kept_rows_report_their_nearest_similarity_at_most_the_threshold():
    ds = pool(*clustered(10, 400, 16, 30, 0.35))
    result = select_indices(ds, 100, threshold=0.8, progress=False)
    similarities = np.array(result.similarities[1:])
    assert np.all(similarities <= 0.8) and similarities.max() > 0.5


# -- storage: views, chunks, files, types --------------------------------------------------------------------
def same_selection(a, b):
    """Same rows and counts; the reported similarities agree to float32 accuracy (a float32 product's last
    bits may depend on memory alignment)."""
    assert (a.indices, a.examined, a.rejected) == (b.indices, b.examined, b.rejected)
    np.testing.assert_allclose(a.similarities, b.similarities, atol=1e-6)
    return True


def test_a_dataset_view_selects_by_its_own_row_indices():
    scores, vectors = clustered(11, 300, 8, 40, 0.3)
    view = pool(scores, vectors, row=list(range(300))).shuffle(seed=0).select(range(200))  # an indices mapping
    flat = view.flatten_indices()
    assert view._indices is not None
    assert same_selection(select_indices(view, 80, progress=False), select_indices(flat, 80, progress=False))


def test_a_memory_mapped_dataset_on_disk_with_many_chunks_gives_the_same_selection(tmp_path):
    scores, vectors = clustered(12, 3000, 8, 200, 0.3)
    in_memory = pool(scores, vectors)
    in_memory.save_to_disk(tmp_path / "pool", max_shard_size="20KB")
    on_disk = load_from_disk(tmp_path / "pool")
    assert on_disk.data.table.column("embedding").num_chunks >= 5
    assert same_selection(select_indices(on_disk, 500, progress=False), select_indices(in_memory, 500, progress=False))
    from_disk, from_memory = deita_select(on_disk, 500, progress=False), deita_select(in_memory, 500, progress=False)
    assert from_disk.features == from_memory.features
    np.testing.assert_array_equal(np.array(from_disk["embedding"]), np.array(from_memory["embedding"]))


def test_rows_are_read_in_any_order_from_a_pool_on_disk_a_view_and_parquet_files(tmp_path):
    from deita_hf.pool import DatasetReader, ParquetPool

    scores, vectors = clustered(18, 1000, 8, 50, 0.3)
    ds = pool(scores, vectors, row=list(range(1000)))
    ds.save_to_disk(tmp_path / "pool", max_shard_size="20KB")
    ds.to_parquet(str(tmp_path / "pool.parquet"), batch_size=64)
    parquet = ParquetPool(tmp_path / "pool.parquet")
    assert parquet._files[0].metadata.num_row_groups == 16  # 64 rows each
    rows = np.array([999, 3, 500, 3])
    for reader in (DatasetReader(load_from_disk(tmp_path / "pool")), parquet):
        table = reader.take(rows, ["row", "embedding"])
        assert table.column("row").to_pylist() == [999, 3, 500, 3]
        read = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
        np.testing.assert_array_equal(read, vectors[rows])
        many = np.random.default_rng(0).permutation(1000)[:600]  # swept, where the four rows were looked up
        assert reader.take(many, ["row"]).column("row").to_pylist() == many.tolist()
        assert reader.take([], ["row"]).num_rows == 0
        assert reader.column("row").to_pylist() == list(range(1000))
    view = load_from_disk(tmp_path / "pool").shuffle(seed=3).select(range(100))
    view_rows = [99, 0, 42] + list(range(50))
    assert DatasetReader(view).take(view_rows, ["row"]).column("row").to_pylist() == [
        view[i]["row"] for i in view_rows
    ]


def test_fixed_size_float64_and_integer_vectors_are_read_as_float32():
    scores, vectors = clustered(13, 200, 8, 20, 0.3)
    expected = select_indices(pool(scores, vectors), 60, progress=False).indices
    fixed = Dataset(
        pa.table({"deita_score": scores, "embedding": pa.FixedSizeListArray.from_arrays(vectors.ravel(), 8)})
    )
    wide = Dataset.from_dict({"deita_score": scores, "embedding": vectors.astype(np.float64)})
    assert select_indices(fixed, 60, progress=False).indices == expected
    assert select_indices(wide, 60, progress=False).indices == expected
    integers = Dataset.from_dict({"deita_score": [2, 1, 0], "embedding": [[1, 0], [10, 1], [0, 3]]})
    assert select_indices(integers, 3, progress=False).indices == [0, 2]


@pytest.mark.parametrize("kind", ["fixed", "large", "float64"])
def test_deita_select_keeps_the_vectors_column_type_and_values(kind):
    scores, vectors = clustered(19, 100, 8, 10, 0.3)
    column = {
        "fixed": pa.FixedSizeListArray.from_arrays(vectors.ravel(), 8),
        "large": pa.array(list(vectors), type=pa.large_list(pa.float32())),
        "float64": pa.array(list(vectors.astype(np.float64) / 3), type=pa.list_(pa.float64())),
    }[kind]
    ds = Dataset(pa.table({"deita_score": scores, "embedding": column}))
    subset = deita_select(ds, 20, progress=False)
    rows = select_indices(ds, 20, progress=False).indices
    assert subset.data.table.column("embedding").type == column.type
    assert subset["embedding"] == ds.select(rows)["embedding"]


def test_any_numeric_column_can_be_the_score_and_any_vector_column_the_embedding():
    vectors = np.eye(3, dtype=np.float32)
    ds = Dataset.from_dict({"rank": [3, 1, 2], "vec": vectors})
    assert select_indices(ds, 3, score_column="rank", embedding_column="vec", progress=False).indices == [0, 2, 1]


# -- deita_select --------------------------------------------------------------------------------------------
def test_deita_select_returns_the_rows_in_selection_order_with_every_column_unchanged():
    scores, vectors = clustered(14, 200, 8, 30, 0.3)
    ds = pool(scores, vectors, id=[f"row-{i}" for i in range(200)], meta=[{"n": i} for i in range(200)])
    result = select_indices(ds, 50, progress=False)
    subset = deita_select(ds, 50, progress=False)
    assert subset.column_names == ["deita_score", "embedding", "id", "meta", "nearest_selected_similarity"]
    assert subset["id"] == [f"row-{i}" for i in result.indices]
    assert subset["meta"] == [{"n": i} for i in result.indices]
    np.testing.assert_array_equal(np.array(subset["embedding"]), vectors[result.indices])
    assert subset.features["embedding"] == ds.features["embedding"]
    np.testing.assert_array_equal(subset["nearest_selected_similarity"], result.similarities)


def test_deita_select_on_a_view_returns_the_views_rows():
    scores, vectors = clustered(16, 300, 8, 40, 0.3)
    view = pool(scores, vectors, id=list(range(300))).shuffle(seed=1).select(range(150))
    result = select_indices(view, 40, progress=False)
    assert list(deita_select(view, 40, progress=False)["id"]) == [view[i]["id"] for i in result.indices]


def test_deita_select_has_a_deterministic_fingerprint():
    ds = pool(*clustered(17, 100, 8, 10, 0.3))
    first, again = deita_select(ds, 20, progress=False), deita_select(ds, 20, progress=False)
    assert first._fingerprint == again._fingerprint != deita_select(ds, 21, progress=False)._fingerprint


def test_an_empty_pool_selects_nothing():
    features = Features({"deita_score": Value("float64"), "embedding": List(Value("float32"))})
    empty = Dataset.from_dict({"deita_score": [], "embedding": []}, features=features)
    assert select_indices(empty, 5, progress=False) == select_indices(empty, 5, progress=False)
    assert select_indices(empty, 5, progress=False).indices == []
    subset = deita_select(empty, 5, progress=False)
    assert len(subset) == 0 and subset.column_names == ["deita_score", "embedding", "nearest_selected_similarity"]


def test_deita_select_without_a_similarity_column():
    ds = pool(*clustered(15, 50, 8, 10, 0.3))
    assert deita_select(ds, 5, similarity_column=None, progress=False).column_names == ["deita_score", "embedding"]


# -- bad input -----------------------------------------------------------------------------------------------
def test_nan_score_raises_an_error_naming_the_rows():
    ds = pool([1.0, math.nan, 2.0, math.nan], np.eye(4))
    with pytest.raises(SelectionInputError, match=r"'deita_score' is NaN in rows 1, 3") as error:
        select_indices(ds, 2, progress=False)
    assert error.value.rows == [1, 3]


def test_missing_score_raises_an_error_naming_the_row():
    ds = Dataset.from_dict({"deita_score": [1.0, None], "embedding": np.eye(2, dtype=np.float32)})
    with pytest.raises(SelectionInputError, match=r"missing \(null\) in row 1"):
        select_indices(ds, 2, progress=False)


def test_zero_vector_raises_an_error_naming_the_row():
    ds = pool([3.0, 2.0, 1.0], [[1, 0], [0, 0], [0, 1]])
    with pytest.raises(SelectionInputError, match=r"zero vector in row 1"):
        select_indices(ds, 3, progress=False)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_vector_raises_an_error_naming_the_row(bad):
    ds = pool([3.0, 2.0, 1.0], [[1, 0], [0, 1], [bad, 1]])
    with pytest.raises(SelectionInputError, match=r"NaN or infinite values in row 2"):
        select_indices(ds, 3, progress=False)


def test_null_value_inside_a_vector_raises_an_error_naming_the_row():
    ds = Dataset.from_dict(
        {"deita_score": [2.0, 1.0], "embedding": [[1.0, 0.0], [None, 1.0]]},
        features=Features({"deita_score": Value("float64"), "embedding": List(Value("float32"))}),
    )
    with pytest.raises(SelectionInputError, match=r"NaN or infinite values in row 1"):
        select_indices(ds, 2, progress=False)


def test_vectors_of_different_lengths_raise_an_error_naming_the_rows():
    ds = Dataset.from_dict({"deita_score": [1.0, 2.0, 3.0], "embedding": [[1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0]]})
    # The first candidate (row 2, the highest score) sets the length.
    with pytest.raises(SelectionInputError, match=r"different lengths: row 2 has 2 values but row 1 has 3;") as error:
        select_indices(ds, 2, progress=False)
    assert error.value.rows == [1]
    # Like a bad value, a vector is judged where the loop examines its row: row 1 is never examined here.
    assert select_indices(ds, 1, progress=False).indices == [2]


def test_missing_vector_raises_an_error_naming_the_row():
    ds = Dataset.from_dict({"deita_score": [1.0, 2.0, 3.0], "embedding": [[1.0, 0.0], None, [0.0, 1.0]]})
    with pytest.raises(SelectionInputError, match=r"'embedding' is missing \(null\) in row 1$"):
        select_indices(ds, 2, progress=False)
    assert select_indices(ds, 1, progress=False).indices == [2]
    first = Dataset.from_dict({"deita_score": [1.0, 2.0], "embedding": [[1.0, 0.0], None]})
    with pytest.raises(SelectionInputError, match=r"'embedding' is missing \(null\) in row 1$"):
        select_indices(first, 1, progress=False)


def test_empty_vectors_raise_an_error_naming_the_row():
    features = Features({"deita_score": Value("float64"), "embedding": List(Value("float32"))})
    ds = Dataset.from_dict({"deita_score": [1.0, 2.0], "embedding": [[], []]}, features=features)
    with pytest.raises(SelectionInputError, match=r"'embedding' holds empty vectors in row 1$"):
        select_indices(ds, 1, progress=False)


@pytest.mark.parametrize("column", ["score_column", "embedding_column"])
def test_missing_column_raises_an_error_naming_the_argument(column):
    ds = pool([1.0], [[1, 0]])
    with pytest.raises(KeyError, match=rf"{column}='nope' is not a column of the pool"):
        select_indices(ds, 1, progress=False, **{column: "nope"})


@pytest.mark.parametrize("budget", [0, -3, 2.5, True, "10"])
def test_budget_below_one_or_not_a_whole_number_is_refused(budget):
    with pytest.raises(ValueError, match="budget must be a whole number of rows, at least 1"):
        select_indices(pool([1.0], [[1, 0]]), budget, progress=False)


def test_non_numeric_score_column_is_refused():
    ds = Dataset.from_dict({"deita_score": ["high"], "embedding": [[1.0, 0.0]]})
    with pytest.raises(TypeError, match="score column 'deita_score' must be numeric"):
        select_indices(ds, 1, progress=False)


def test_a_pool_that_is_not_a_dataset_is_refused():
    with pytest.raises(
        TypeError, match="must be a datasets.Dataset, a ParquetPool or the path of Parquet files, got dict"
    ):
        select_indices({"deita_score": [1.0]}, 1)
    with pytest.raises(FileNotFoundError, match="no such pool: no/such/folder"):
        select_indices("no/such/folder", 1)


def test_an_existing_similarity_column_is_not_overwritten():
    ds = pool([1.0], [[1, 0]], nearest_selected_similarity=[0.5])
    with pytest.raises(ValueError, match="already has a column 'nearest_selected_similarity'"):
        deita_select(ds, 1, progress=False)


# -- real data -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_on_alpaca_eval_selects_fewer_repeated_instructions_at_a_lower_threshold(shared_data, minilm_path):
    """Each AlpacaEval instruction is answered by four models: the lower the threshold, the fewer of an
    instruction's answers survive the diversity filter."""
    from deita_hf.embedding import Embedder

    rows = [json.loads(line) for line in (shared_data / "alpaca_eval_pool.jsonl").open()]
    # The four answers of each of the first 100 instructions (400 of the 3220 rows) show the same property.
    first = set(list(dict.fromkeys(row["messages"][0]["content"] for row in rows))[:100])
    rows = [row for row in rows if row["messages"][0]["content"] in first]
    assert len(rows) == 400
    ds = Dataset.from_list(rows)
    # A score that does not group an instruction's answers: the selection meets them in a random order.
    ds = ds.add_column("deita_score", np.random.default_rng(0).random(len(ds)).tolist())
    # The first 32 tokens (the instruction and the start of the answer) keep the run short on a CPU.
    ds = ds.map(
        Embedder(str(minilm_path), batch_size=64, max_length=32, progress=False), batched=True, batch_size=1000
    )
    repeated = {}
    for threshold in (0.9, 0.7):
        subset = deita_select(ds, budget=len(ds), threshold=threshold, progress=False)
        counts = Counter(messages[0]["content"] for messages in subset["messages"])
        repeated[threshold] = sum(count > 1 for count in counts.values())
    assert repeated[0.9] > repeated[0.7]
    print(f"instructions selected more than once: {repeated}")


@pytest.mark.parametrize("threshold", [1.5, -1.01, float("nan"), float("inf"), True, "0.9"])
def test_a_threshold_outside_minus_one_to_one_is_refused_in_python_and_on_the_command_line(
    threshold, tmp_path, capsys
):
    from deita_hf.cli import main

    ds = pool([2.0, 1.0], np.array([[1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"threshold is a cosine similarity, a number in \[-1, 1\]"):
        deita_select(ds, budget=1, threshold=threshold, progress=False)
    if isinstance(threshold, float):
        ds.save_to_disk(tmp_path / "pool")
        argv = ["select", "--dataset_name", str(tmp_path / "pool"), "--output_dir", str(tmp_path / "out")]
        assert main([*argv, "--budget", "1", "--threshold", str(threshold)]) == 1
        assert "error: --threshold is a cosine similarity, a number in [-1, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("block_size", [1, 3, 8, 512])
def test_a_bad_vector_is_an_error_exactly_where_the_loop_reaches_its_row(block_size):
    # 8 rows; the lowest-scored row (row 7) has a zero vector, row 6 a NaN.
    vectors = np.eye(8, dtype=np.float32)
    vectors[7] = 0
    vectors[6, 0] = math.nan
    ds = pool([8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], vectors)
    result = select_indices(ds, 5, block_size=block_size, progress=False)
    assert (result.indices, result.examined) == ([0, 1, 2, 3, 4], 5)
    assert select_indices(ds, 6, block_size=block_size, progress=False).indices == [0, 1, 2, 3, 4, 5]
    with pytest.raises(SelectionInputError, match=r"NaN or infinite values in row 6$") as error:
        select_indices(ds, 7, block_size=block_size, progress=False)
    assert error.value.rows == [6]
    vectors[6, 0] = 0.5
    with pytest.raises(SelectionInputError, match=r"zero vector in row 7;"):
        select_indices(
            pool([8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], vectors), 8, block_size=block_size, progress=False
        )


# -- one rule for rows without a score; I/O through the public datasets API -----------------------------------
@pytest.mark.parametrize("block_size", [1, 7, 512])
def test_rows_without_a_score_are_left_out_and_counted_when_asked(block_size):
    scores, vectors = clustered(20, 300, 8, 40, 0.3)
    unscored = [3, 17, 150, 299]
    with_gaps = [None if i == 17 else (math.nan if i in unscored else s) for i, s in enumerate(scores)]
    ds = pool(with_gaps, vectors, row=list(range(300)))
    kept = [i for i in range(300) if i not in unscored]
    expected = select_indices(ds.select(kept), 60, block_size=block_size, progress=False)
    result = select_indices(ds, 60, block_size=block_size, progress=False, unscored="leave_out")
    assert result.indices == [kept[i] for i in expected.indices]
    assert (result.examined, result.rejected, result.left_out) == (expected.examined, expected.rejected, 4)
    subset = deita_select(ds, 60, block_size=block_size, progress=False, unscored="leave_out")
    assert list(subset["row"]) == result.indices
    with pytest.raises(SelectionInputError, match=r"'deita_score' is missing \(null\) in row 17$"):
        deita_select(ds, 60, progress=False)
    with pytest.raises(ValueError, match=r"unscored must be one of \('raise', 'leave_out'\), got 'skip'"):
        deita_select(ds, 60, progress=False, unscored="skip")


def test_an_infinite_score_is_a_score_first_or_last():
    ds = pool([1.0, math.inf, 2.0, -math.inf], np.eye(4))
    for unscored in ("raise", "leave_out"):
        result = select_indices(ds, 4, progress=False, unscored=unscored)
        assert (result.indices, result.left_out) == ([1, 2, 0, 3], 0)


def test_the_output_is_select_then_flatten_then_the_similarity_column(tmp_path):
    scores, vectors = clustered(21, 500, 8, 50, 0.3)
    pool(scores, vectors, id=[f"r{i}" for i in range(500)]).save_to_disk(tmp_path / "pool", max_shard_size="20KB")
    on_disk = load_from_disk(tmp_path / "pool")
    result = select_indices(on_disk, 50, progress=False)
    subset = deita_select(on_disk, 50, progress=False)
    expected = on_disk.select(result.indices)
    assert subset.remove_columns("nearest_selected_similarity").to_dict() == expected.to_dict()
    np.testing.assert_array_equal(subset["nearest_selected_similarity"], result.similarities)  # NaN first
    assert subset.features == Features({**on_disk.features, "nearest_selected_similarity": Value("float64")})
    assert subset.cache_files == []  # in memory: nothing written next to the pool


def test_the_selection_reads_the_pool_through_the_public_datasets_api_only():
    from pathlib import Path

    import deita_hf

    internals = [
        r"\._indices\b",
        r"'_indices'",
        r"\.data\.table\b",
        r"fast_gather",
        r"\._fingerprint",
        r"/proc/self",
        r"\bpread\b",
    ]
    for name in ("selection.py", "strategies.py", "subset.py", "pool.py"):
        source = (Path(deita_hf.__file__).parent / name).read_text()
        for internal in [*internals, r"(?<![\w.])Dataset\("]:  # no hand-built Dataset(table)
            assert not re.search(internal, source), (name, internal)


# -- a pool in Parquet files, read in place; windows ----------------------------------------------------------
def parquet_pool_folder(ds, folder, files=3, rows_per_group=50):
    """``ds`` in the Hub layout of a ``pool/`` folder: ``files`` files of row groups of ``rows_per_group`` rows."""
    data = folder / "data"
    data.mkdir(parents=True)
    for k in range(files):
        shard = ds.shard(files, k, contiguous=True)
        shard.to_parquet(str(data / f"train-{k:05d}-of-{files:05d}.parquet"), batch_size=rows_per_group)
    return folder


@pytest.mark.parametrize("strategy", ["deita", "score", "length", "random"])
def test_a_parquet_pool_folder_selects_what_the_dataset_does_without_a_copy(tmp_path, strategy):
    import datasets

    from deita_hf.pool import ParquetPool

    scores, vectors = clustered(22, 600, 8, 60, 0.3)
    conversations = [[{"from": "human", "value": "q" * (i % 37)}, {"from": "gpt", "value": "a"}] for i in range(600)]
    ds = pool(scores, vectors, id=[f"r{i}" for i in range(600)], conversations=conversations)
    folder = parquet_pool_folder(ds, tmp_path / "pool")
    cache = tmp_path / "cache"
    previous = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = cache
    try:
        for source in (folder, str(folder), ParquetPool(folder)):
            expected = deita_select(ds, 80, strategy=strategy, progress=False)
            subset = deita_select(source, 80, strategy=strategy, progress=False)
            assert subset.features == expected.features
            similarity = "nearest_selected_similarity"
            assert subset.remove_columns(similarity).to_dict() == expected.remove_columns(similarity).to_dict()
            np.testing.assert_array_equal(subset[similarity], expected[similarity])  # NaN first
        assert same_selection(select_indices(folder, 80, progress=False), select_indices(ds, 80, progress=False))
    finally:
        datasets.config.HF_DATASETS_CACHE = previous
    assert not cache.exists()  # nothing copied into the datasets cache


def test_a_parquet_pool_reads_only_the_row_groups_that_hold_the_rows_it_needs(tmp_path, monkeypatch):
    from deita_hf.pool import ParquetPool

    scores, vectors = clustered(23, 600, 8, 60, 0.3)
    scores = np.where(np.arange(600) < 100, scores + 10, scores)  # every candidate of a small budget is in rows 0-99
    folder = parquet_pool_folder(pool(scores, vectors), tmp_path / "pool", files=2, rows_per_group=50)
    parquet = ParquetPool(folder)
    groups = []
    for file in parquet._files:
        original = file.iter_batches

        def spy(*args, original=original, **kwargs):
            groups.append(tuple(kwargs["row_groups"]))
            return original(*args, **kwargs)

        monkeypatch.setattr(file, "iter_batches", spy)
    result = select_indices(parquet, 20, block_size=16, progress=False)
    assert result.examined < 100 and set(result.indices) <= set(range(100))
    vector_reads = groups[len(parquet._groups) :]  # after the score column, read whole (every group once)
    assert groups[: len(parquet._groups)] == [(g,) for g in range(6)] * 2
    assert set(vector_reads) == {(0,), (1,)}  # rows 0-99 of the first file


@pytest.mark.parametrize("window_rows", [1, 7, 40])
def test_the_candidates_are_read_in_windows_of_bounded_memory(monkeypatch, tmp_path, window_rows):
    from deita_hf import selection
    from deita_hf.pool import PoolReader

    scores, vectors = clustered(24, 500, 8, 50, 0.3)
    ds = pool(scores, vectors)
    expected = select_indices(ds, 120, block_size=16, progress=False)
    taken = []
    original = PoolReader.pieces

    def spy(self, rows, columns):
        taken.append(len(rows))
        return original(self, rows, columns)

    monkeypatch.setattr(PoolReader, "pieces", spy)
    monkeypatch.setattr(selection, "WINDOW_BYTES", 4 * 8 * window_rows)
    for source in (ds, parquet_pool_folder(ds, tmp_path / f"pool-{window_rows}")):
        taken.clear()
        assert same_selection(select_indices(source, 120, block_size=16, progress=False), expected)
        # The first candidate alone (its length), then windows of at most window_rows rows or one block.
        assert taken[0] == 1 and max(taken[1:]) == max(window_rows, 16)
        assert sum(taken[1:]) >= expected.examined
