"""The output folder: unusable at start, saved outputs that cannot be checked, status of a folder
no run has written to."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SAMPLE_B, cli

OUT = ("r21d", "r2plus1d_18_16_kinetics")

# A full disk at "$0": a small tmpfs, filled, in a mount namespace of its own (it goes with the
# process, nothing to clean up); then the command, its exit code, and the files it left there.
FULL_DISK = ('mount -t tmpfs -o size=256k tmpfs "$0" && { cat /dev/zero > "$0/filler" 2>/dev/null; "$@"; '
             'echo "exit code $?"; find "$0" -type f ! -name filler; }')


def on_a_full_disk(folder, *command) -> subprocess.CompletedProcess:
    unshare = ["unshare", "--user", "--map-root-user", "--mount"]
    if shutil.which("unshare") is None or subprocess.run([*unshare, "true"], capture_output=True).returncode:
        pytest.skip("needs unshare to mount a small file system (user namespaces)")
    folder.mkdir()
    return subprocess.run([*unshare, "sh", "-c", FULL_DISK, str(folder), *command], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ))


def test_a_full_disk_at_start_is_one_line_and_exit_2_and_leaves_no_run_log(tmp_path, r21d_checkpoint):
    disk = tmp_path / "disk"
    result = on_a_full_disk(disk, sys.executable, str(ROOT / "main.py"), f"video_paths=[{SAMPLE_B}]",
                            f"weights_path={r21d_checkpoint}", "device=cpu", "on_extraction=save_numpy",
                            f"output_path={disk / 'out'}")
    assert result.stderr == f"error: output_path={disk / 'out'}: cannot write there (No space left on device)\n"
    assert result.stdout == "exit code 2\n"  # and no file under it


def test_a_run_log_that_cannot_be_written_leaves_no_file(tmp_path):
    disk = tmp_path / "disk"
    script = ("import sys\nfrom video_features.utils.store.runlog import RunLog\n"
              "try:\n    RunLog(sys.argv[1], {'pretrained': False}, 'cpu', '0/1', {})\n"
              "except OSError as error:\n    print(error.strerror)\n")
    result = on_a_full_disk(disk, sys.executable, "-c", script, str(disk / "out"))
    assert result.stdout == "No space left on device\nexit code 0\n", result.stderr  # no empty .jsonl left


def test_a_run_log_that_cannot_be_written_mid_run_is_one_warning_and_the_run_goes_on(tmp_path):
    from video_features.utils.store.runlog import RunLog

    log = RunLog(str(tmp_path), {"pretrained": False}, "cpu", "0/1", {})
    os.remove(log.path)
    os.mkdir(log.path)  # appending to it now fails, as on a disk that filled up
    with pytest.warns(UserWarning, match="cannot write the run log") as warned:
        log.video("a.mp4", "extracted", 8, 1.0)
        log.video("b.mp4", "failed", error="x")
        log.end("2 videos", 1)
    assert len(warned) == 1


def test_a_run_log_folder_that_cannot_be_made_is_one_line_and_exit_2(tmp_path, capsys, r21d_checkpoint):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".runs").write_text("")  # a file where the folder of run logs goes
    code = cli(*[f"video_paths=[{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                 "on_extraction=save_numpy", f"output_path={tmp_path / 'out'}"])
    assert (code, capsys.readouterr().err) == (
        2, f"error: output_path={tmp_path / 'out'}: cannot write the run log (File exists: {tmp_path / 'out' / '.runs'})\n")


@pytest.mark.parametrize("broken, cause", [
    ("b_settings.json", "Is a directory"),  # stands for a permission error, which root does not get
    ("b_r21d.npy", "Too many levels of symbolic links"),
])
def test_saved_outputs_that_cannot_be_checked_fail_the_video_and_stay_as_they_are(broken, cause, tmp_path, capsys,
                                                                                  r21d_checkpoint):
    shutil.copy(SAMPLE_B, tmp_path / "b.mp4")
    args = [f"video_paths=[{tmp_path / 'b.mp4'}]", f"input_root={tmp_path}", f"weights_path={r21d_checkpoint}",
            "device=cpu", "on_extraction=save_numpy", f"output_path={tmp_path / 'out'}", "stack_size=64", "step_size=64"]
    assert cli(*args) == 0
    folder = tmp_path.joinpath("out", *OUT)
    path = folder / broken
    os.remove(path)
    if broken.endswith(".json"):
        path.mkdir()
    else:
        path.symlink_to(path)
    files = {p.name: (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in folder.iterdir()}
    capsys.readouterr()
    assert cli(*args) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'b.mp4'}: cannot check its saved outputs: {path}: {cause}", "0 extracted, 0 skipped, 1 failed"]
    assert {p.name: (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in folder.iterdir()} == files  # nothing replaced


def test_status_of_a_folder_no_run_wrote_to_says_so_and_is_not_done(tmp_path, capsys):
    assert cli(*["status=true", f"output_path={tmp_path}", "pretrained=false"]) == 1
    assert capsys.readouterr().out == f"no run found under {tmp_path}: no run log in {tmp_path / '.runs'}\n"
    assert cli(*["status=true", f"output_path={tmp_path}", "pretrained=false", f"video_paths=[{SAMPLE_B}]"]) == 1
    assert capsys.readouterr().out == ("0 done, 0 failed, 1 not done of 1 videos (r21d/r2plus1d_18_16_kinetics; "
                                       "no run of these settings logged)\n")
