"""Dataset: every source gives the same arrays, shuffling is deterministic, streaming is exact and
bounded in memory, and bad input raises a DataError that names what is wrong."""

from __future__ import annotations

import os
import tracemalloc

import h5py
import numpy as np
import pandas as pd
import pytest

from llmasos.data import Dataset, TextDataset, digits_csv
from llmasos.errors import DataError

N_ROWS, N_FEATURES = 103, 6


@pytest.fixture(scope="module")
def table():
    """103 rows: column f0 is the row number (to follow rows through shuffles); values are
    multiples of 1/16, exact in decimal text, so every format must give identical float32s."""
    rng = np.random.default_rng(7)
    x = rng.integers(-64, 64, size=(N_ROWS, N_FEATURES)) / 16.0
    x[:, 0] = np.arange(N_ROWS)
    y = rng.integers(0, 4, size=N_ROWS)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["label"] = y
    return frame, x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def files(table, tmp_path_factory):
    frame, x, y = table
    folder = tmp_path_factory.mktemp("sources")
    paths = {name: folder / name for name in ("t.csv", "t.parquet", "t.h5", "named.h5", "x.npy", "y.npy", "t.npz")}
    frame.to_csv(paths["t.csv"], index=False)
    frame.to_parquet(paths["t.parquet"], row_group_size=25)          # 5 row groups
    with h5py.File(paths["t.h5"], "w") as handle:
        handle["x"], handle["y"] = x, y
    with h5py.File(paths["named.h5"], "w") as handle:
        handle["x"], handle["digit"] = x, y
    np.save(paths["x.npy"], x)
    np.save(paths["y.npy"], y)
    np.savez(paths["t.npz"], x=x, y=y)
    return {k: str(v) for k, v in paths.items()}


def _sources(files, table):
    frame, x, y = table
    return {
        "csv": lambda **kw: Dataset(files["t.csv"], **kw),
        "parquet": lambda **kw: Dataset(files["t.parquet"], **kw),
        "h5": lambda **kw: Dataset(files["t.h5"], **kw),
        "h5 target=": lambda **kw: Dataset(files["named.h5"], target="digit", **kw),
        "npy": lambda **kw: Dataset(files["x.npy"], files["y.npy"], **kw),
        "npy + array": lambda **kw: Dataset(files["x.npy"], y, **kw),
        "npz": lambda **kw: Dataset(files["t.npz"], **kw),
        "DataFrame": lambda **kw: Dataset(frame, **kw),
        "DataFrame + y": lambda **kw: Dataset(frame.drop(columns="label"), frame["label"].to_numpy(), **kw),
        "arrays": lambda **kw: Dataset(x, y, **kw),
    }


STREAMABLE = ("csv", "parquet", "h5", "h5 target=", "npy", "npy + array")
IN_MEMORY = ("npz", "DataFrame", "DataFrame + y", "arrays")


@pytest.mark.parametrize("name, chunk_size", [(name, None) for name in STREAMABLE + IN_MEMORY]
                         + [(name, 10) for name in STREAMABLE])
def test_every_source_gives_identical_arrays(files, table, name, chunk_size):
    _, x, y = table
    ds = _sources(files, table)[name](mode="test", chunk_size=chunk_size)
    assert ds.streaming == (chunk_size is not None)
    got_x, got_y = ds.arrays()
    assert got_x.dtype == np.float32 and got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    assert len(ds) == N_ROWS and ds.feature_shape == (N_FEATURES,)
    assert ds.has_labels and ds.label_dtype == np.int64
    assert ds.labels_range() == (int(y.min()), int(y.max()))
    batched = list(ds.batches(16))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batched]), x)


def test_images_stay_channels_first_and_flat_rows_reshape(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 16, size=(20, 1, 8, 8)).astype(np.float32) / 16
    labels = np.arange(20) % 10
    with h5py.File(tmp_path / "img.h5", "w") as handle:
        handle["x"], handle["y"] = images, labels
    frame = pd.DataFrame(images.reshape(20, 64), columns=[f"p{i}" for i in range(64)]).assign(label=labels)
    frame.to_csv(tmp_path / "img.csv", index=False)

    from_h5 = Dataset(tmp_path / "img.h5", mode="test")
    from_csv = Dataset(tmp_path / "img.csv", mode="test", shape=(1, 8, 8))
    streamed = Dataset(tmp_path / "img.csv", mode="test", shape=[1, 8, 8], chunk_size=7)
    for ds in (from_h5, from_csv, streamed):
        assert ds.feature_shape == (1, 8, 8)
        x, y = next(ds.batches(5))
        assert x.shape == (5, 1, 8, 8)
        np.testing.assert_array_equal(x, images[:5])
        np.testing.assert_array_equal(ds.arrays()[0], images)


def test_label_types_follow_the_values():
    x = np.zeros((4, 2))
    assert Dataset(x, np.array([0.0, 1.0, 2.0, 1.0])).label_dtype == np.int64     # whole numbers: classes
    regression = Dataset(x, np.array([0.5, 1.0, 2.25, -3.0]), mode="test")
    assert regression.label_dtype == np.float32
    np.testing.assert_array_equal(regression.arrays()[1], np.array([0.5, 1.0, 2.25, -3.0], np.float32))
    assert regression.labels_range() == (-3.0, 2.25)
    unlabelled = Dataset(x)
    assert not unlabelled.has_labels and unlabelled.label_dtype is None
    assert all(y is None for _, y in unlabelled.batches(3))


def test_int64_features_on_request(tmp_path):
    frame = pd.DataFrame({"a": [1, 5, 9], "b": [2.0, 3.0, 4.0], "label": [0, 1, 0]})
    ids = Dataset(frame, dtype="int64", mode="test").arrays()[0]
    assert ids.dtype == np.int64 and ids.tolist() == [[1, 2], [5, 3], [9, 4]]
    assert Dataset(frame).arrays()[0].dtype == np.float32
    with pytest.raises(DataError, match=r"whole-number features; row 1 holds 3.5"):
        Dataset(frame.assign(b=[2.0, 3.5, 4.0]), dtype="int64")
    with pytest.raises(DataError, match="dtype must be one of 'float32', 'int64'"):
        Dataset(frame, dtype="float16")


# -- order ----------------------------------------------------------------------------------------


def _row_ids(ds, batch_size=10, **kw):
    return np.concatenate([x[:, 0] for x, _ in ds.batches(batch_size, **kw)]).astype(int)


@pytest.mark.parametrize("chunk_size", [None, 10])
def test_train_shuffle_is_determined_by_seed_and_epoch(files, table, chunk_size):
    ds = Dataset(files["t.csv"], mode="train", chunk_size=chunk_size)
    first = _row_ids(ds, shuffle=True, seed=3, epoch=1)
    assert sorted(first) == list(range(N_ROWS))                      # every row once per epoch
    np.testing.assert_array_equal(first, _row_ids(ds, shuffle=True, seed=3, epoch=1))
    assert not np.array_equal(first, _row_ids(ds, shuffle=True, seed=3, epoch=2))
    assert not np.array_equal(first, _row_ids(ds, shuffle=True, seed=4, epoch=1))
    assert not np.array_equal(first, np.arange(N_ROWS))
    # Labels travel with their rows.
    _, _, y = table
    for x, labels in ds.batches(10, shuffle=True, seed=3, epoch=1):
        np.testing.assert_array_equal(labels, y[x[:, 0].astype(int)])


def test_streamed_shuffle_is_buffered_per_chunk(files):
    """Rows of one chunk stay together: each run of 10 shuffled rows comes from one chunk."""
    ds = Dataset(files["t.csv"], mode="train", chunk_size=10)
    ids = _row_ids(ds, batch_size=N_ROWS, shuffle=True, seed=0, epoch=5)
    chunks = ids // 10
    boundaries = np.flatnonzero(np.diff(chunks)) + 1
    assert len(boundaries) == 10                                     # 11 chunks, each visited once as a run
    assert sorted(chunks[np.concatenate(([0], boundaries))].tolist()) == list(range(11))


@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("chunk_size", [None, 10])
def test_batches_keep_file_order_and_the_last_partial_batch_whatever_the_mode(files, mode, chunk_size):
    """Only the training loop shuffles (it asks with shuffle=True); any other reader gets file order."""
    ds = Dataset(files["t.csv"], mode=mode, chunk_size=chunk_size)
    sizes = [len(x) for x, _ in ds.batches(32, seed=9, epoch=4)]
    assert sizes == [32, 32, 32, 7]                                  # batches span chunk boundaries
    np.testing.assert_array_equal(_row_ids(ds, seed=9, epoch=4), np.arange(N_ROWS))
    np.testing.assert_array_equal(_row_ids(ds), np.arange(N_ROWS))


def test_unknown_mode_is_refused(table):
    with pytest.raises(DataError, match=r"mode must be one of 'train', 'test', got 'eval'"):
        Dataset(table[0], mode="eval")


# -- streaming -------------------------------------------------------------------------------------


def test_streamed_csv_counts_rows_like_pandas(tmp_path):
    """Blank and whitespace-only lines, CRLF endings and a missing final newline."""
    path = tmp_path / "odd.csv"
    path.write_bytes(b"a,b,label\r\n1,2,0\r\n\r\n  \r\n3,4,1\r\n\n5,6,2\r\n7,8,3")
    whole = Dataset(path, mode="test").arrays()
    for chunk_size in (1, 2, 3, 100):
        ds = Dataset(path, mode="test", chunk_size=chunk_size)
        assert len(ds) == 4
        got = ds.arrays()
        np.testing.assert_array_equal(got[0], whole[0])
        np.testing.assert_array_equal(got[1], [0, 1, 2, 3])


def test_streaming_reads_the_same_rows_as_whole_loading(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.integers(0, 100, size=(5_003, 4)) / 4, columns=list("abcd"))
    frame["label"] = rng.normal(size=len(frame)).round(3)            # regression labels
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    whole = Dataset(path, mode="train")
    streamed = Dataset(path, mode="train", chunk_size=256)
    assert streamed.streaming and not whole.streaming
    assert len(streamed) == len(whole) == 5_003
    assert streamed.label_dtype == whole.label_dtype == np.float32
    assert streamed.labels_range() == whole.labels_range()

    def rows(ds):
        batches = list(ds.batches(64, shuffle=True, seed=2, epoch=1))
        table = np.concatenate([np.column_stack([x, y]) for x, y in batches])
        return table[np.lexsort(table.T[::-1])]

    np.testing.assert_array_equal(rows(streamed), rows(whole))


def test_streaming_memory_stays_near_one_chunk(tmp_path):
    """A CSV 50 chunks long: peak traced memory while counting, scanning labels and running a
    shuffled epoch stays far below the size of the whole file as an array."""
    rng = np.random.default_rng(2)
    n_rows, chunk = 100_000, 2_000
    frame = pd.DataFrame(rng.integers(0, 1000, size=(n_rows, 12)) / 8, columns=[f"f{i}" for i in range(12)])
    frame["label"] = rng.integers(0, 10, n_rows)
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    whole_array_bytes = n_rows * 12 * 4                              # the features as float32: 4.8 MB
    del frame

    tracemalloc.start()
    try:
        ds = Dataset(path, mode="train", chunk_size=chunk)
        assert ds.labels_range() == (0, 9)
        seen = sum(len(x) for x, _ in ds.batches(128, shuffle=True, seed=0, epoch=1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == n_rows
    assert peak < whole_array_bytes / 4, f"peak {peak / 2**20:.1f} MiB for a {whole_array_bytes / 2**20:.1f} MiB file"

    tracemalloc.start()
    try:
        Dataset(path, mode="train").arrays()
        whole_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < whole_peak / 10, f"streamed peak {peak}, whole-load peak {whole_peak}"


def test_large_files_stream_by_default(tmp_path, monkeypatch):
    import llmasos.data.base as base

    path = tmp_path / "small.csv"
    pd.DataFrame({"a": np.arange(50.0), "label": np.arange(50) % 2}).to_csv(path, index=False)
    assert not Dataset(path).streaming
    monkeypatch.setattr(base, "STREAM_BYTES", 100)                   # pretend the file is huge
    monkeypatch.setattr(base, "CHUNK_BYTES", 64)
    ds = Dataset(path, mode="test")
    assert ds.streaming and ds._source.chunk_count > 5
    np.testing.assert_array_equal(ds.arrays()[0][:, 0], np.arange(50.0))


# -- bad input -------------------------------------------------------------------------------------


def _csv(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_non_numeric_and_missing_cells_name_column_and_row(tmp_path, chunk_size):
    path = _csv(tmp_path, "a,b,c,label\n1,2,3,0\n4,5,6,1\n7,x,9,0\n1,2,,1\n3,4,NaN,0\n")
    with pytest.raises(DataError) as err:
        ds = Dataset(path, chunk_size=chunk_size)
        ds.labels_range()                                            # a streamed file is checked here
    message = str(err.value)
    if chunk_size is None:
        assert "'b' at row 2 ('x')" in message and "'c' at row 3 (missing or NaN)" in message
        assert "first bad row: 2" in message
    else:                                                            # rows 2-3 form chunk 1: the same report
        assert "'b' at row 2 ('x')" in message and "'c' at row 3" in message
    assert "'a'" not in message


def test_nan_in_arrays_names_the_first_bad_row():
    x = np.ones((6, 3))
    x[4, 1] = np.nan
    x[5, 2] = np.inf
    with pytest.raises(DataError, match=r"X has NaN or infinite values in column\(s\) 1, 2; first bad row: 4"):
        Dataset(x, np.zeros(6))
    with pytest.raises(DataError, match=r"y has NaN or infinite values; first bad row: 1"):
        Dataset(np.ones((3, 2)), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(DataError, match="X must be numeric"):
        Dataset(np.array([["a", "b"]]), np.zeros(1))
    with pytest.raises(DataError, match="X has 3 rows but y has 2"):
        Dataset(np.ones((3, 2)), np.zeros(2))


def test_missing_label_column_lists_the_columns_found(tmp_path):
    path = _csv(tmp_path, "a,b,digit\n1,2,3\n")
    for kwargs in ({}, {"chunk_size": 1}):
        with pytest.raises(DataError, match=r"label column 'label' not found; columns found: 'a', 'b', 'digit'"):
            Dataset(path, **kwargs)
    assert Dataset(path, target="digit").labels_range() == (3, 3)
    assert not Dataset(path, target=None).has_labels
    with pytest.raises(DataError, match=r"feature column\(s\) 'z' not found"):
        Dataset(path, target="digit", features=["a", "z"])


def test_missing_arrays_in_h5_and_npz_list_what_was_found(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle["features"] = np.ones((3, 2))
    with pytest.raises(DataError, match=r"no features array 'x'; arrays found: 'features'"):
        Dataset(tmp_path / "a.h5")
    np.savez(tmp_path / "a.npz", x=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"no label array 'label' or 'y'; arrays found: 'x'"):
        Dataset(tmp_path / "a.npz")
    assert not Dataset(tmp_path / "a.npz", target=None).has_labels


@pytest.mark.parametrize("text", ["", "a,b,label\n"])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_empty_csv_is_refused(tmp_path, text, chunk_size):
    with pytest.raises(DataError, match="empty"):
        Dataset(_csv(tmp_path, text), chunk_size=chunk_size)


def test_empty_arrays_and_frames_are_refused():
    with pytest.raises(DataError, match="empty"):
        Dataset(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(DataError, match="empty"):
        Dataset(pd.DataFrame({"a": [], "label": []}))


def test_bad_paths_and_arguments(tmp_path):
    with pytest.raises(DataError, match=r"unsupported file type '.txt'; supported: .csv, .parquet"):
        Dataset(_csv(tmp_path, "a\n1\n", "data.txt"))
    with pytest.raises(DataError, match="no such file"):
        Dataset(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"shape=\(1, 3, 3\) holds 9 values per sample but each row has 2 features"):
        Dataset(np.ones((4, 2)), shape=(1, 3, 3))
    with pytest.raises(DataError, match="chunk_size must be a positive"):
        Dataset(np.ones((4, 2)), chunk_size=0)
    ds = Dataset(np.ones((4, 2)))
    with pytest.raises(DataError, match="batch_size must be a positive int"):
        next(ds.batches(0))
    with pytest.raises(DataError, match="has no labels"):
        ds.labels_range()
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable numeric .npy"):
        Dataset(tmp_path / "objects.npy")                            # never unpickled
    with pytest.raises(DataError, match="not a readable HDF5"):
        Dataset(_csv(tmp_path, "not hdf5", "fake.h5"))


def test_streamed_csv_with_a_ragged_row_is_refused(tmp_path):
    path = _csv(tmp_path, "a,b,label\n1,2,0\n3,4,5,6\n7,8,1\n")
    with pytest.raises(DataError, match="bad.csv"):
        Dataset(path, chunk_size=1).arrays()
    with pytest.raises(DataError, match="not a readable CSV"):
        Dataset(path)


# -- the demo's data -------------------------------------------------------------------------------


def test_digits_csv_writes_the_bundled_digits(tmp_path, digits):
    train_path, test_path = digits_csv(tmp_path / "d")
    train, test = Dataset(train_path, mode="test"), Dataset(test_path, mode="test")
    assert (len(train), len(test)) == (1437, 360)
    columns = pd.read_csv(train_path, nrows=0).columns.tolist()
    assert columns == [f"p{i}" for i in range(64)] + ["label"]
    x_train, y_train = train.arrays()
    x_test, y_test = test.arrays()
    # The same split as the tests' digits fixture (seeded permutation, first 80% for training).
    np.testing.assert_array_equal(x_train, digits[0])
    np.testing.assert_array_equal(y_train, digits[1])
    np.testing.assert_array_equal(x_test, digits[2])
    np.testing.assert_array_equal(y_test, digits[3])
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    first = open(train_path, "rb").read()
    digits_csv(tmp_path / "d")
    assert open(train_path, "rb").read() == first                    # fixed seed: same bytes
    assert sorted(os.listdir(tmp_path / "d")) == ["digits_test.csv", "digits_train.csv"]   # no temporary files


# -- texts ----------------------------------------------------------------------------------------


def _words():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocabulary = {"[PAD]": 0, "[UNK]": 1, "a": 2, "good": 3, "bad": 4, "film": 5, "very": 6}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


@pytest.mark.parametrize("form", ["csv", "parquet", "frame"])
def test_text_column_is_tokenised_padded_and_labelled(tmp_path, form):
    import pandas as pd

    frame = pd.DataFrame({"id": [7, 8, 9], "review": ["a good film", "bad", "very very good film"],
                          "sentiment": ["pos", "neg", "pos"]})
    source = frame
    if form != "frame":
        source = tmp_path / f"reviews.{form}"
        frame.to_csv(source, index=False) if form == "csv" else frame.to_parquet(source)
    ds = Dataset(source, text="review", target="sentiment", tokenizer=_words(), mode="test")
    assert isinstance(ds, TextDataset) and len(ds) == 3 and ds.classes == ["neg", "pos"]
    (x, y), = ds.batches(8)
    assert x["input_ids"].tolist() == [[2, 3, 5, 0], [4, 0, 0, 0], [6, 6, 3, 5]]
    assert x["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert y.tolist() == [1, 0, 1] and ds.label_dtype == np.int64 and ds.labels_range() == (0, 1)


def test_text_batches_shuffle_rows_and_labels_together():
    texts = [" ".join(["very"] * (i % 4 + 1) + ["film"]) for i in range(20)]
    ds = Dataset(texts, np.arange(20) % 4, text="review", tokenizer=_words())
    seen = []
    for x, y in ds.batches(6, shuffle=True, seed=1):
        assert ((x["input_ids"] == 6).sum(axis=1) == y + 1).all()  # each row still has its own label
        seen += y.tolist()
    assert sorted(seen) == sorted((np.arange(20) % 4).tolist()) and seen != (np.arange(20) % 4).tolist()


@pytest.mark.parametrize("call, message", [
    (lambda t: Dataset(["a film"], [1], text="review"), r"texts need tokenizer="),
    (lambda t: Dataset(np.zeros((2, 3)), tokenizer=t), r"tokenizer= is for texts: name the text column with text="),
    (lambda t: Dataset(["a film", None], [1, 0], text="review", tokenizer=t), r"text 1 is None, not a non-empty"),
    (lambda t: Dataset(["a film", "bad"], [1], text="review", tokenizer=t), r"2 texts but 1 labels"),
    (lambda t: Dataset(["a film"], [1], text="review", tokenizer=t, chunk_size=10), r"chunk_size do\(es\) not apply"),
    (lambda t: Dataset(__import__("pandas").DataFrame({"body": ["a"]}), text="review", tokenizer=t),
     r"no column 'review', 'label'; columns: 'body'"),
    (lambda t: Dataset(["a film"], [1], text="review", tokenizer="missing.json"), r"missing.json: not a tokenizers"),
])
def test_bad_text_datasets_say_what_is_wrong(call, message):
    with pytest.raises(DataError, match=message):
        call(_words())
