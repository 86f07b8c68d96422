"""Awkward inputs: list files from other editors, sweeps with missing files, one file spelled twice,
URLs, videos that are not there, a damaged checkpoint."""
import os
import shutil

import pytest
import torch

from tests.conftest import SAMPLE_A, SAMPLE_B, cli, make_options, run_cli
from video_features.utils.run.inputs import video_paths


def listed(list_file) -> list[str]:
    return video_paths(make_options(file_with_video_paths=str(list_file)))


def test_a_list_file_with_a_byte_order_mark_and_crlf_line_ends_is_read_whole(tmp_path):
    list_file = tmp_path / "list.txt"
    list_file.write_bytes("\ufeff# clips\r\nclips/a.mp4\r\n\r\nclips/b c.mp4\r\n".encode("utf-8"))  # Notepad's way
    assert listed(list_file) == ["clips/a.mp4", "clips/b c.mp4"]
    list_file.write_bytes("\ufeffclips/a.mp4\r\n".encode("utf-8"))
    assert listed(list_file) == ["clips/a.mp4"]


def test_a_list_file_that_is_not_utf8_is_one_line_naming_it_and_exit_2(tmp_path, capsys):
    list_file = tmp_path / "list.txt"
    list_file.write_bytes("a.mp4\nvidéo.mp4\n".encode("latin-1"))
    assert cli(*[f"file_with_video_paths={list_file}", "pretrained=false", "device=cpu"]) == 2
    assert capsys.readouterr().err == (f"error: file_with_video_paths={list_file}: not UTF-8 text (line 2 has the "
                                       "byte 0xe9); save it as UTF-8\n")


@pytest.mark.parametrize("args, message", [
    (["weights_path=/nonexistent.pth"], "error: weights_path=/nonexistent.pth: file not found"),
    (["file_with_video_paths=/nonexistent/list.txt"],
     "error: file_with_video_paths=/nonexistent/list.txt: No such file or directory"),
])
def test_a_sweep_with_a_missing_file_exits_2_before_any_job(args, message, tmp_path, capsys):
    code = cli(*["-m", "stack_size=8,16", f"video_paths=[{SAMPLE_B}]", "device=cpu", f"output_path={tmp_path / 'out'}",
                 *args])
    assert (code, capsys.readouterr().err) == (2, message + "\n")
    assert not (tmp_path / "out").exists()  # no job started


def test_a_missing_weights_file_among_a_sweeps_values_is_found_before_any_job(tmp_path, capsys, r21d_checkpoint):
    code = cli(*["-m", f"weights_path={r21d_checkpoint},/nonexistent.pth", f"video_paths=[{SAMPLE_B}]", "device=cpu",
                 f"output_path={tmp_path / 'out'}"])
    assert (code, capsys.readouterr().err) == (2, "error: weights_path=/nonexistent.pth: file not found\n")


def test_a_file_spelled_twice_is_one_video(tmp_path, monkeypatch):
    (tmp_path / "sample").mkdir()
    shutil.copy(SAMPLE_B, tmp_path / "sample" / "a.mp4")
    os.symlink(tmp_path / "sample" / "a.mp4", tmp_path / "link.mp4")
    monkeypatch.chdir(tmp_path)
    spellings = ["sample/a.mp4", "./sample/a.mp4", str(tmp_path / "sample/a.mp4"), "sample/../sample/a.mp4",
                 "link.mp4"]
    assert video_paths(make_options(video_paths=spellings)) == ["sample/a.mp4"]


def test_unreadable_urls_and_missing_videos_cost_one_line_each_and_leave_nothing_under_output_path(
        tmp_path, monkeypatch, capsys, r21d_checkpoint):
    shutil.copy(SAMPLE_B, tmp_path / "b.mp4")
    monkeypatch.chdir(tmp_path)
    # a video of a list that has gone fails alone; so does a URL of a protocol nothing here reads
    (tmp_path / "list.txt").write_text("foo://host/v.mp4\ngone/v.mp4\nempty.mp4\n")
    (tmp_path / "empty.mp4").touch()
    code = cli(*["video_paths=[b.mp4,./b.mp4]", "file_with_video_paths=list.txt",
                 f"weights_path={r21d_checkpoint}", "device=cpu", "on_extraction=save_numpy", "output_path=out",
                 "stack_size=64", "step_size=64"])
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("warning:")] == [
        "warning: 1 of the 4 videos to read is not there: gone/v.mp4 (each fails in its turn; the others are extracted)"]
    assert [line for line in err if not line.startswith("warning:")] == [
        "error: foo://host/v.mp4: no reader for foo:// URLs",
        "error: gone/v.mp4: file not found",
        "error: empty.mp4: the file is empty (0 bytes)",
        "1 extracted, 0 skipped, 3 failed",
    ]
    folder = tmp_path / "out" / "r21d" / "r2plus1d_18_16_kinetics"
    assert sorted(p.name for p in folder.iterdir()) == ["b_fps.npy", "b_r21d.npy", "b_settings.json",
                                                        "b_timestamps_ms.npy"]  # no empty folder gone/ nor foo/


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_checkpoint_is_one_line_of_ours(damage, tmp_path, capsys, r21d_checkpoint):
    damaged = tmp_path / "damaged.pth"
    whole = open(r21d_checkpoint, "rb").read()
    damaged.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else os.urandom(5000))
    assert cli(*[f"video_paths=[{SAMPLE_B}]", f"weights_path={damaged}", "device=cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: cannot read checkpoint {damaged}: not a checkpoint, or a damaged one (")


def test_a_pickled_module_is_refused_with_what_to_save_instead(tmp_path, capsys):
    module = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), module)
    assert cli(*[f"video_paths=[{SAMPLE_B}]", f"weights_path={module}", "device=cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.rstrip().endswith("save the model's state_dict() instead")


@pytest.mark.parametrize("given", ["nope/", "[b.mp4,nope.mp4]"])
def test_a_mistyped_video_path_is_a_bad_option_before_the_model_loads(given, tmp_path, monkeypatch, capsys):
    shutil.copy(SAMPLE_B, tmp_path / "b.mp4")
    monkeypatch.chdir(tmp_path)
    assert cli(*[f"video_paths={given}", "pretrained=false", "output_path=out"]) == 2
    missing = "nope/" if given == "nope/" else "nope.mp4"
    assert capsys.readouterr().err == f"error: video_paths: {missing}: no such file or folder\n"
    assert not (tmp_path / "out").exists()  # nothing started


def test_videos_are_read_in_the_order_given_a_folders_own_files_before_its_subfolders(tmp_path, monkeypatch, capsys,
                                                                                      r21d_checkpoint):
    (tmp_path / "folder" / "sub").mkdir(parents=True)
    for path in ("folder/z.mp4", "folder/sub/a.mp4", "b.mp4", "a.mp4"):
        shutil.copy(SAMPLE_B, tmp_path / path)
    monkeypatch.chdir(tmp_path)
    code = cli(*["video_paths=[b.mp4,folder,a.mp4]", f"weights_path={r21d_checkpoint}", "device=cpu",
                 "decode_workers=1", "stack_size=64", "step_size=64"])
    assert code == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert printed == ["b.mp4", "folder/z.mp4", "folder/sub/a.mp4", "a.mp4"]


def test_a_list_that_names_no_video_says_so(tmp_path):
    (tmp_path / "list.txt").write_text("# nothing yet\n\n")
    done = run_cli(f"file_with_video_paths={tmp_path / 'list.txt'}", "pretrained=false", "device=cpu")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: file_with_video_paths={tmp_path / 'list.txt'}: the file lists no videos "
                                   "(one path per line; blank lines and # comments are left out)")


def test_missing_videos_of_a_long_list_are_named_at_the_start_not_at_their_turn(tmp_path):
    missing = [f"gone/{number}.mp4" for number in range(5)]
    (tmp_path / "list.txt").write_text("\n".join([SAMPLE_A, SAMPLE_B, *missing]) + "\n")
    done = run_cli("file_with_video_paths=list.txt", "pretrained=false", "device=cpu", cwd=tmp_path)
    assert done.returncode == 1
    err = done.stderr.splitlines()
    warning = ("warning: 5 of the 7 videos to read are not there: gone/0.mp4, gone/1.mp4, gone/2.mp4 and 2 more "
               "(each fails in its turn; the others are extracted)")
    assert warning in err and err.index(warning) < err.index("error: gone/0.mp4: file not found")
    assert done.stdout.count("r21d: shape") == 2  # the others were extracted


def test_a_url_of_video_paths_that_nothing_here_reads_is_a_bad_option():
    done = run_cli("video_paths=[gs://bucket/v.mp4]", "pretrained=false", "device=cpu")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: video_paths: gs://bucket/v.mp4: gs:// URLs need a package: "
                                   "Please install gcsfs to access Google Storage")
