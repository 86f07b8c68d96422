"""A folder of committed shards reads in one line with pandas, Hugging Face datasets, DuckDB and
Polars, every video once and its arrays equal to what was appended; also while a run writes there
(its temporary files and a hidden folder of claims are not read)."""
import numpy as np
import pytest

from tests.test_shards import SETTINGS, outputs
from video_features.utils.store.shards import ShardWriter

NAMES = [f"cat/{i:03d}" for i in range(7)] + ["dog/000"]


@pytest.fixture(params=[1, 3], ids=["N x D", "N x crops x D"])
def folder(request, tmp_path) -> tuple[str, dict]:
    """Two processes' shards (one with a shard still open), with what each video was given."""
    crops, written = request.param, {}
    first, second = (ShardWriter(str(tmp_path), SETTINGS, shard_videos=3) for _ in range(2))
    for seed, name in enumerate(NAMES):
        writer = first if seed % 2 else second
        written[name] = outputs(seed, crops)
        writer.append(name, f"/videos/{name}.mp4", written[name])
        if writer.due:
            writer.commit()
    first.close()
    second.close()
    open_shard = ShardWriter(str(tmp_path), SETTINGS)
    open_shard.append("still/open", "", outputs(99, crops))
    open_shard._guarded(open_shard._flush, frozenset())  # in its temporary file, not committed
    (tmp_path / ".claims").mkdir()
    (tmp_path / ".claims" / "still").mkdir()
    (tmp_path / ".claims" / "still" / "open.claim").write_text("{}")
    assert len(list(tmp_path.glob(".tmp-*"))) == 1
    return str(tmp_path), written


def check(rows: dict[str, dict], written: dict) -> None:
    assert sorted(rows) == sorted(written)
    for name, arrays in rows.items():
        np.testing.assert_array_equal(arrays["r21d"], written[name]["r21d"])
        assert arrays["r21d"].dtype == np.float32
        np.testing.assert_array_equal(arrays["timestamps_ms"], written[name]["timestamps_ms"])
        assert arrays["fps"] == written[name]["fps"]


def stacked(value) -> np.ndarray:
    """pandas' and DuckDB's nested object arrays as one array: np.stack at each level."""
    if isinstance(value, np.ndarray) and value.dtype == object or isinstance(value, list):
        return np.stack([stacked(item) for item in value])
    return np.asarray(value)


def test_pandas_reads_the_folder(folder):
    import pandas as pd

    path, written = folder
    df = pd.read_parquet(path)
    check({row.name: {key: stacked(getattr(row, key)) for key in ("r21d", "timestamps_ms", "fps")}
           for row in df.itertuples()}, written)


def test_hugging_face_datasets_reads_the_shards(folder, tmp_path_factory):
    from datasets import load_dataset

    path, written = folder
    ds = load_dataset("parquet", data_files=f"{path}/*.parquet", split="train",
                      cache_dir=str(tmp_path_factory.mktemp("hf"))).with_format("numpy")
    check({row["name"]: row for row in ds}, written)


def test_duckdb_reads_the_shards(folder):
    import duckdb

    path, written = folder
    table = duckdb.sql(f"SELECT name, r21d, timestamps_ms, fps FROM '{path}/*.parquet'").fetchnumpy()
    check({name: {key: stacked(table[key][i]) for key in ("r21d", "timestamps_ms", "fps")}
           for i, name in enumerate(table["name"])}, written)
    windows = duckdb.sql(f"SELECT name, len(r21d) AS windows FROM '{path}/*.parquet' ORDER BY name").fetchall()
    assert windows == [(name, len(written[name]["r21d"])) for name in sorted(written)]


def test_polars_reads_the_shards(folder):
    import polars as pl

    path, written = folder
    df = pl.read_parquet(f"{path}/*.parquet")
    check({row["name"]: {key: df[key][i].to_numpy() if key != "fps" else row["fps"]
                         for key in ("r21d", "timestamps_ms", "fps")}
           for i, row in enumerate(df.iter_rows(named=True))}, written)
