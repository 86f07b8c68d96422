"""Output names: a video's path relative to input_root, the same whatever else the list holds."""
import os
import shutil

import pytest

from tests.conftest import SAMPLE_B, cli
from video_features.utils.errors import OutputNameClash
from video_features.utils.store.names import output_name, output_names


def test_a_name_is_the_path_under_input_root_or_else_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert output_name("videos/cat/000.mp4") == "videos/cat/000"  # input_root null: the current folder
    assert output_name(str(tmp_path / "videos/cat/000.mp4")) == "videos/cat/000"
    assert output_name("./videos/../videos/dog.mkv", input_root="videos") == "dog"
    assert output_name("videos/cat/000.mp4", input_root=str(tmp_path / "videos")) == "cat/000"
    assert output_name("/data/x.mp4") == "data/x"  # outside the root: its absolute path, without the '/'
    assert output_name("videos/cat/000.mp4", input_root="videos/dog") == f"{str(tmp_path).lstrip('/')}/videos/cat/000"


def test_names_do_not_change_when_the_list_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    alone = output_names(["videos/cat/000.mp4"])
    assert alone == {"videos/cat/000.mp4": "videos/cat/000"}
    grown = output_names(["videos/cat/000.mp4", "/elsewhere/dog/000.mp4", "stray.mp4"])
    assert grown["videos/cat/000.mp4"] == alone["videos/cat/000.mp4"]


def test_two_videos_with_one_name_are_refused_naming_both(tmp_path, monkeypatch):
    inside = tmp_path / "work" / str(tmp_path).lstrip("/") / "x.mp4"  # named like the outside one
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(OutputNameClash, match=f"'{tmp_path / 'x.mp4'}' and '{inside}' would write the same output "
                                              "files .*; rename one of them, set input_root"):
        output_names([str(tmp_path / "x.mp4"), str(inside)])


def test_a_rerun_after_adding_a_video_from_another_folder_skips_the_finished_ones(tmp_path, monkeypatch, capsys,
                                                                                  r21d_checkpoint):
    for path in ("videos/cat/a.mp4", "videos/cat/b.mp4", "more/c.mp4"):
        os.makedirs(tmp_path / os.path.dirname(path), exist_ok=True)
        shutil.copy(SAMPLE_B, tmp_path / path)
    monkeypatch.chdir(tmp_path)

    def run(*videos) -> str:
        code = cli(*[f"video_paths=[{','.join(videos)}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                     "on_extraction=save_numpy", "output_path=out", "stack_size=64", "step_size=64"])
        assert code == 0
        return capsys.readouterr().err.splitlines()[-1]

    assert run("videos/cat/a.mp4", "videos/cat/b.mp4") == "2 extracted, 0 skipped, 0 failed"
    assert run("videos/cat/a.mp4", "videos/cat/b.mp4", "more/c.mp4") == "1 extracted, 2 skipped, 0 failed"
    folder = tmp_path / "out" / "r21d" / "r2plus1d_18_16_kinetics"
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*_r21d.npy"))
    assert names == ["more/c_r21d.npy", "videos/cat/a_r21d.npy", "videos/cat/b_r21d.npy"]
