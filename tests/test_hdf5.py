"""A finished output folder (per-video files or shards) packed into one HDF5 file: every video's
arrays equal, the settings recorded, a folder of mixed settings refused in one line."""
import json

import h5py
import numpy as np
import pytest

from tests.test_shards import OTHER, SETTINGS, outputs, write
from video_features.utils.errors import ExportError
from video_features.utils.store.hdf5 import export_hdf5, main
from video_features.utils.store.outputs import OutputStore

NAMES = ["a", "cat/000", "cat/001"]


def per_video(folder, names=NAMES, settings=SETTINGS, on_extraction="save_numpy") -> dict[str, dict]:
    store, written = OutputStore(str(folder), on_extraction), {}
    for seed, name in enumerate(names):
        written[name] = outputs(seed)
        store.save(name, written[name], settings)
    return written


def assert_exported(path, written: dict, settings: dict, sources: bool = False) -> None:
    with h5py.File(path, "r") as file:
        assert json.loads(file.attrs["settings"]) == settings
        for name, arrays in written.items():
            group = file[name]
            assert set(group) == set(arrays)
            for key, value in arrays.items():
                assert group[key].dtype == np.asarray(value).dtype
                np.testing.assert_array_equal(group[key][()], value)
            assert group.attrs.get("source") == (f"/videos/{name}.mp4" if sources else None)
        groups = []
        file.visititems(lambda name, item: groups.append(name) if isinstance(item, h5py.Group) else None)
        assert sorted(group for group in groups if "fps" in file[group]) == sorted(written)


@pytest.mark.parametrize("on_extraction", ["save_numpy", "save_pickle"])
def test_per_video_files_export_equal_and_claims_runs_and_unfinished_videos_are_left_out(tmp_path, on_extraction):
    out = tmp_path / "out"
    written = per_video(out, on_extraction=on_extraction)
    (out / "cat" / "002.claim").write_text("{}")
    (out / ".runs").mkdir()
    (out / ".runs" / "run.jsonl").write_text("{}\n")
    (out / ".tmp-host-1-abc-a_r21d.npy").write_bytes(b"partial")
    np.save(out / "cat" / "003_r21d.npy", outputs(3)["r21d"])  # killed before its settings record: unfinished
    assert export_hdf5(str(out), str(tmp_path / "features.h5")) == 3
    assert_exported(tmp_path / "features.h5", written, SETTINGS)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["features.h5", "out"]  # no temporary file left


def test_shards_export_each_videos_current_row(tmp_path):
    out = tmp_path / "out"
    write(out, NAMES + ["dog/000"], shard_videos=2, logits=True)
    written = write(out, NAMES + ["dog/000"], settings=OTHER, shard_videos=3, logits=True, seed=10)  # all again
    assert export_hdf5(str(out), str(tmp_path / "features.h5")) == 4
    assert_exported(tmp_path / "features.h5", written, OTHER, sources=True)


def test_a_folder_of_mixed_settings_is_refused_naming_them_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    per_video(out, ["a", "b"])
    per_video(out, ["c"], settings=OTHER)
    (tmp_path / "features.h5").write_bytes(b"an earlier export")
    with pytest.raises(ExportError) as error:
        export_hdf5(str(out), str(tmp_path / "features.h5"))
    assert str(error.value) == (f"cannot export {out}: its videos were made with different settings: "
                                "2 with stack_size=16 (e.g. a); 1 with stack_size=32 (e.g. c); "
                                "extract them again with one setting")
    assert (tmp_path / "features.h5").read_bytes() == b"an earlier export"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["features.h5", "out"]


def test_shards_and_per_video_files_of_other_settings_are_refused(tmp_path):
    per_video(tmp_path, ["a"])
    write(tmp_path, ["b", "c"], settings=OTHER)
    with pytest.raises(ExportError, match=r"different settings: 2 with stack_size=32 \(e.g. b\); 1 with stack_size=16"):
        export_hdf5(str(tmp_path), str(tmp_path / "features.h5"))


def test_a_video_in_both_formats_is_refused(tmp_path):
    per_video(tmp_path, ["a", "b"])
    write(tmp_path, ["b"])
    with pytest.raises(ExportError, match=f"^cannot export {tmp_path}: b \\(and 0 more\\) is both in per-video files"):
        export_hdf5(str(tmp_path), str(tmp_path / "features.h5"))


def test_an_output_file_cut_short_is_refused_naming_it(tmp_path):
    per_video(tmp_path / "out")
    cut = tmp_path / "out" / "cat" / "001_r21d.npy"
    cut.write_bytes(cut.read_bytes()[:100])
    with pytest.raises(ExportError, match=f"^cannot export {cut}: ValueError: "):
        export_hdf5(str(tmp_path / "out"), str(tmp_path / "features.h5"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_a_missing_output_file_is_refused_naming_it(tmp_path):
    per_video(tmp_path)
    (tmp_path / "a_fps.npy").unlink()
    with pytest.raises(ExportError, match=f"^cannot export {tmp_path / 'a_fps.npy'}: No such file or directory$"):
        export_hdf5(str(tmp_path), str(tmp_path / "features.h5"))


def test_the_command_writes_the_file_or_says_why_not_in_one_line(tmp_path, capsys):
    per_video(tmp_path / "out")
    assert main([str(tmp_path / "out"), str(tmp_path / "features.h5")]) == 0
    assert capsys.readouterr().out == f"3 videos written to {tmp_path / 'features.h5'}\n"
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "none.h5")]) == 2
    assert capsys.readouterr().err == (f"error: cannot export {tmp_path / 'empty'}: no finished video there "
                                       "(no settings record, no shard)\n")
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "none.h5")]) == 2
    assert capsys.readouterr().err == f"error: cannot export {tmp_path / 'nowhere'}: no such folder\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty", "features.h5", "out"]
