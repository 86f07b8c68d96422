"""Packed output shards: committed atomically, judged from their footers, read back equal, one video
or the whole folder in one line with the tools users have."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

import video_features.utils.store.files as files
import video_features.utils.store.liveness as liveness
import video_features.utils.store.shards as shards
from tests.conftest import ROOT
from video_features.utils.errors import OutputError, ShardWriteError
from video_features.utils.store.files import remove_stale_temporary_files
from video_features.utils.store.shard_index import ShardIndex, read_video
from video_features.utils.store.shards import ShardWriter

SETTINGS = {"feature_type": "r21d", "stack_size": 16, "step_size": 16, "preprocessing": {"mean": [0.43, 0.39]}}
OTHER = {**SETTINGS, "stack_size": 32}


def outputs(seed: int, crops: int = 1, dim: int = 8) -> dict[str, np.ndarray]:
    """A video's outputs as a run gives them, with 1 to 30 windows."""
    rng = np.random.default_rng(seed)
    windows = int(rng.integers(1, 31))
    features = rng.standard_normal((windows, crops, dim) if crops > 1 else (windows, dim)).astype(np.float32)
    starts = np.arange(windows) * 640.0
    return {"r21d": features, "timestamps_ms": np.stack([starts, starts + 640.0], axis=1), "fps": np.float64(25 + seed)}


def write(folder, names, settings=SETTINGS, crops=1, shard_videos=1000, logits=False, seed=0) -> dict[str, dict]:
    """The videos ``names`` in shards of ``shard_videos``, committed; their outputs (from ``seed`` on) by name."""
    written = {}
    writer = ShardWriter(str(folder), settings, shard_videos=shard_videos)
    for seed, name in enumerate(names, seed):
        written[name] = outputs(seed, crops)
        extra = None
        if logits:
            extra = np.random.default_rng(seed).standard_normal((len(written[name]["r21d"]), 5)).astype(np.float32)
        writer.append(name, f"/videos/{name}.mp4", written[name], extra)
        if extra is not None:
            written[name] = {**written[name], "logits": extra}
        if writer.due:
            writer.commit()
    writer.close()
    return written


def assert_equal_arrays(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        value = np.asarray(value)
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value)


@pytest.mark.parametrize("crops, logits", [(1, False), (3, True)])
def test_each_video_reads_back_equal_to_what_was_appended(tmp_path, crops, logits):
    written = write(tmp_path, [f"cat/{i:03d}" for i in range(12)], crops=crops, shard_videos=5, logits=logits)
    index = ShardIndex(str(tmp_path))
    for name, expected in written.items():
        assert_equal_arrays(index.read(name), expected)
    assert_equal_arrays(read_video(str(tmp_path), "cat/007"), written["cat/007"])


def test_a_shard_is_committed_every_shard_videos_and_the_rest_at_close(tmp_path):
    writer = ShardWriter(str(tmp_path), SETTINGS, shard_videos=3)
    committed = []
    for seed in range(7):
        writer.append(f"v{seed}", "", outputs(seed))
        assert writer.due == (len(writer.pending) == 3)
        if writer.due:
            committed.append(writer.commit())
    committed.append(writer.close())
    assert committed == [["v0", "v1", "v2"], ["v3", "v4", "v5"], ["v6"]]
    assert len(list(tmp_path.glob("*.parquet"))) == 3 and not list(tmp_path.glob(".tmp-*"))
    assert writer.close() == [] and len(list(tmp_path.iterdir())) == 3  # nothing pending: no empty shard


def test_a_shard_is_due_once_its_first_video_is_shard_seconds_old(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(shards.time, "monotonic", lambda: now[0])
    writer = ShardWriter(str(tmp_path), SETTINGS, shard_videos=100, shard_seconds=600)
    assert not writer.due
    writer.append("a", "", outputs(0))
    now[0] += 599
    writer.append("b", "", outputs(1))
    assert not writer.due
    now[0] += 1
    assert writer.due
    writer.commit()
    assert not writer.due


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import video_features.utils.store.shards as shards
    from tests.test_shards import SETTINGS, outputs
    shards.ROW_GROUP_BYTES = 1  # every video goes to the temporary file at once
    writer = shards.ShardWriter(sys.argv[1], SETTINGS, shard_videos=3)
    for seed in range(5):  # one shard of 3 committed, 2 videos in the open one
        writer.append(f"v{seed}", "", outputs(seed))
        if writer.due:
            writer.commit()
    print("appended", flush=True)
    time.sleep(600)
""")


def test_a_writer_killed_before_its_commit_leaves_only_a_temporary_file_that_is_removed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline() == "appended\n"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    temporary = list(tmp_path.glob(".tmp-*"))
    assert len(temporary) == 1 and temporary[0].stat().st_size > 0  # the open shard, as it was
    index = ShardIndex(str(tmp_path))
    assert index.names() == ["v0", "v1", "v2"] and index.status("v3", SETTINGS) == "missing"
    assert index.corrupt == {}
    assert remove_stale_temporary_files([str(tmp_path)]) == 1
    assert [path.suffix for path in tmp_path.iterdir()] == [".parquet"]


def test_the_temporary_files_of_a_killed_writer_on_a_host_named_with_a_dash_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "HOST", "node-001")
    monkeypatch.setattr(liveness, "HOST", "node-001")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".tmp-node-001-{dead.stdout.strip()}-abc-x.parquet"
    live = tmp_path / f".tmp-node-001-{os.getpid()}-def-x.parquet"
    for path in (stale, live):
        path.write_bytes(b"partial")
    assert remove_stale_temporary_files([str(tmp_path)]) == 1
    assert not stale.exists() and live.exists()


def test_status_is_done_for_equal_settings_stale_for_others_and_missing_elsewhere(tmp_path):
    write(tmp_path, ["a", "b/c"])
    index = ShardIndex(str(tmp_path))
    assert [index.status(name, SETTINGS) for name in ("a", "b/c", "d")] == ["done", "done", "missing"]
    assert index.status("a", OTHER) == "stale"
    assert index.status("a", json.loads(json.dumps(SETTINGS))) == "done"  # as a run's record reads back


def test_a_video_extracted_again_is_current_in_the_shard_committed_last(tmp_path):
    write(tmp_path, ["a", "b"], settings=SETTINGS)
    again = write(tmp_path, ["b"], settings=OTHER, seed=10)  # other arrays than b's first ones
    index = ShardIndex(str(tmp_path))
    assert [index.status("b", OTHER), index.status("b", SETTINGS), index.status("a", SETTINGS)] == [
        "done", "stale", "done"]
    assert_equal_arrays(index.read("b"), again["b"])
    assert index.names(SETTINGS) == ["a"] and index.names(OTHER) == ["b"]
    # and once more with the first settings: that row is current again
    third = write(tmp_path, ["c", "b"], settings=SETTINGS, seed=20)
    index.refresh()
    assert index.status("b", SETTINGS) == "done"
    assert_equal_arrays(index.read("b"), third["b"])


def test_a_refresh_reads_the_shards_committed_since_and_forgets_removed_ones(tmp_path):
    index = ShardIndex(str(tmp_path / "not yet"))
    assert len(index) == 0
    write(tmp_path / "not yet", ["a"])
    index.refresh()
    assert index.status("a", SETTINGS) == "done"
    for shard in (tmp_path / "not yet").glob("*.parquet"):
        shard.unlink()
    index.refresh()
    assert index.status("a", SETTINGS) == "missing"


def test_discarded_videos_are_left_out_also_once_in_the_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 1)  # each video is written at once
    writer = ShardWriter(str(tmp_path), SETTINGS)
    for seed in range(4):
        writer.append(f"v{seed}", "", outputs(seed))
    assert writer.commit(discard=["v1", "v3", "elsewhere"]) == ["v0", "v2"]
    (shard,) = tmp_path.glob("*.parquet")
    assert pq.read_table(shard, columns=["name"])["name"].to_pylist() == ["v0", "v2"]
    assert ShardIndex(str(tmp_path)).names() == ["v0", "v2"]
    assert_equal_arrays(read_video(str(tmp_path), "v2"), outputs(2))
    assert writer.commit(discard=["v4"]) == [] and len(list(tmp_path.iterdir())) == 1


def test_all_videos_discarded_leave_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 1)
    writer = ShardWriter(str(tmp_path), SETTINGS)
    writer.append("v0", "", outputs(0))
    assert writer.commit(discard=["v0"]) == [] and list(tmp_path.iterdir()) == []


def test_arrays_that_do_not_fit_the_open_shard_are_refused_and_it_stays_as_it_was(tmp_path):
    writer = ShardWriter(str(tmp_path), SETTINGS)
    writer.append("a", "", outputs(0, dim=8))
    with pytest.raises(ValueError, match="^r21d of shape .* does not fit the shard's column"):
        writer.append("b", "", outputs(1, dim=16))
    with pytest.raises(ValueError, match="^a: already in the open shard$"):
        writer.append("a", "", outputs(0))
    with pytest.raises(ValueError, match=r"^the shard holds \['r21d', 'timestamps_ms', 'fps'\]"):
        writer.append("c", "", {"r21d": outputs(2)["r21d"]})
    assert writer.commit() == ["a"]


def test_a_shard_that_cannot_be_written_loses_its_videos_in_one_error_and_leaves_no_file(tmp_path, monkeypatch):
    writer = ShardWriter(str(tmp_path), SETTINGS)
    for seed in range(3):
        writer.append(f"v{seed}", "", outputs(seed))

    def full_disk(source, destination):
        raise OSError(28, "No space left on device", source)

    monkeypatch.setattr(shards.os, "replace", full_disk)
    with pytest.raises(ShardWriteError, match=r"^.*\.tmp-.*: cannot write the shard \(No space left on device\); "
                                              r"its 3 videos are not saved$") as error:
        writer.commit()
    assert error.value.names == ["v0", "v1", "v2"]
    assert list(tmp_path.iterdir()) == [] and writer.pending == []


def test_a_stop_signal_during_a_commit_lands_once_the_shard_is_committed(tmp_path, monkeypatch):
    sync = shards._sync

    def interrupted_sync(path):
        # Ctrl-C between the footer and the rename, sent to this thread: os.kill to the process may
        # reach another thread (servers' and clients' threads of earlier tests), whose handler can
        # run after the commit is over
        signal.raise_signal(signal.SIGINT)
        sync(path)

    monkeypatch.setattr(shards, "_sync", interrupted_sync)
    writer = ShardWriter(str(tmp_path), SETTINGS)
    writer.append("a", "", outputs(0))
    # Python's own Ctrl-C handler, whatever an earlier test in this process left in its place
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            writer.commit()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert writer.pending == [] and ShardIndex(str(tmp_path)).names() == ["a"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_file_that_is_no_shard_of_ours_is_set_aside_and_the_others_are_read(tmp_path):
    write(tmp_path, ["a"])
    (tmp_path / "cut.parquet").write_bytes(b"PAR1 cut short")
    plain = pq.read_table(next(tmp_path.glob("2*.parquet"))).replace_schema_metadata()
    pq.write_table(plain, tmp_path / "plain.parquet")  # a Parquet file without our footer
    index = ShardIndex(str(tmp_path))
    assert index.names() == ["a"]
    assert set(index.corrupt) == {str(tmp_path / "cut.parquet"), str(tmp_path / "plain.parquet")}


def test_a_shard_that_cannot_be_read_is_an_error_not_missing_videos(tmp_path):
    write(tmp_path, ["a"])
    (shard,) = tmp_path.glob("*.parquet")
    shard.unlink()
    os.symlink(shard.name, shard)  # a link to itself: reading fails with ELOOP, as a permission error would
    with pytest.raises(OutputError, match=f"^cannot read the shard {shard}: Too many levels of symbolic links$"):
        ShardIndex(str(tmp_path))


def test_a_missing_video_is_a_one_line_key_error(tmp_path):
    write(tmp_path, ["a"])
    with pytest.raises(KeyError, match=f"b: in no committed shard of {tmp_path}"):
        read_video(str(tmp_path), "b")


def test_the_footer_names_the_settings_and_videos_of_its_shard(tmp_path):
    write(tmp_path, ["a", "b"])
    (shard,) = tmp_path.glob("*.parquet")
    metadata = pq.read_metadata(shard).metadata
    assert json.loads(metadata[b"video_features.settings"]) == SETTINGS
    assert json.loads(metadata[b"video_features.names"]) == ["a", "b"]


def test_every_current_row_is_read_once_shard_by_shard(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 4000)  # a few videos per row group
    write(tmp_path, ["a", "b", "c", "d", "e"], shard_videos=2)
    again = write(tmp_path, ["b", "e"], settings=OTHER, seed=10)
    index = ShardIndex(str(tmp_path))
    rows = {name: (source, arrays, shard.settings) for name, source, arrays, shard in index.videos()}
    assert sorted(rows) == ["a", "b", "c", "d", "e"]
    assert rows["c"][0] == "/videos/c.mp4" and rows["c"][2] == SETTINGS and rows["e"][2] == OTHER
    assert_equal_arrays(rows["c"][1], outputs(2))
    assert_equal_arrays(rows["e"][1], again["e"])


def test_writers_never_share_a_file_name(tmp_path):
    first, second = ShardWriter(str(tmp_path), SETTINGS), ShardWriter(str(tmp_path), SETTINGS)
    for writer in (first, second, first):
        writer.append(f"v{len(list(tmp_path.iterdir()))}", "", outputs(0))
        writer.commit()
    assert len(list(tmp_path.glob("*.parquet"))) == 3 and first.stem != second.stem
