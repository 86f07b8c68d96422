"""status=true answers for the feature type, model and settings of its command line, by the rule a
run skips a video by (its outputs load and their settings record equals the run's), with the
processes and failures of the run logs of those settings alone."""
import json
import shutil

import pytest

from tests.conftest import SAMPLE_A, SAMPLE_B, cli

R21D = "r21d/r2plus1d_18_16_kinetics"
ONE_RUN = "1 processes, 0 without an end record: running or killed"
NO_RUN = "no run of these settings logged"


@pytest.fixture
def done_run(tmp_path, r21d_checkpoint, capsys):
    """Two videos extracted with stack_size=8, and a function answering status=true."""
    for sample in (SAMPLE_A, SAMPLE_B):
        shutil.copy(sample, tmp_path)
    out = tmp_path / "out"
    where = [f"output_path={out}", f"input_root={tmp_path}", "device=cpu", "on_extraction=save_numpy"]
    videos = f"video_paths=[{tmp_path / 'a.mp4'},{tmp_path / 'b.mp4'}]"
    run = [*where, videos, f"weights_path={r21d_checkpoint}", "step_size=200"]
    assert cli(*run, "stack_size=8") == 0
    capsys.readouterr()

    def status(*args) -> tuple[int, list[str]]:
        code = cli(*["status=true", *args])
        return code, capsys.readouterr().out.splitlines()

    return status, where, videos, run, out


def test_status_counts_only_the_outputs_a_run_of_its_command_line_would_skip(done_run):
    status, where, videos, run, out = done_run
    assert status(*run, "stack_size=8") == (0, [f"all 2 videos done ({R21D}; {ONE_RUN})"])
    # another feature type: none of its outputs is there (no list: the videos the run logs name), and
    # the r21d run's process is not one of its own
    assert status(*where, "feature_type=slowfast", "pretrained=false")[1][0] == (
        f"0 done, 0 failed, 2 not done of 2 videos (slowfast/slowfast_r50; {NO_RUN})")
    # other settings: a run would extract both again
    assert status(*run, "stack_size=16")[1][0] == (
        f"0 done, 2 done with other settings, 0 failed, 0 not done of 2 videos ({R21D}; {NO_RUN})")
    assert status(*where, videos, "pretrained=false", "stack_size=8")[1][0] == (  # other weights
        f"0 done, 2 done with other settings, 0 failed, 0 not done of 2 videos ({R21D}; {NO_RUN})")
    # an output gone: that video is not done
    (out / R21D / "a_timestamps_ms.npy").unlink()
    assert status(*run, "stack_size=8")[1][0] == f"1 done, 0 failed, 1 not done of 2 videos ({R21D}; {ONE_RUN})"
    # the same outputs asked about without saying their format (on_extraction=print) count too
    printing = [arg for arg in run if arg != "on_extraction=save_numpy"]
    assert status(*printing, "stack_size=8")[1][0] == f"1 done, 0 failed, 1 not done of 2 videos ({R21D}; {ONE_RUN})"


def test_without_the_weights_in_the_cache_status_still_counts(done_run, tmp_path, monkeypatch):
    status, where, videos, _, _ = done_run
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    code, lines = status(*where, videos, "stack_size=8")  # the official weights, which were never downloaded here
    assert code == 1
    assert lines[0] == f"0 done, 2 done with other settings, 0 failed, 0 not done of 2 videos ({R21D}; {NO_RUN})"
    assert lines[1].startswith(f"note: {tmp_path / 'empty-cache'}") and "a run would download" in lines[1]


def test_failures_come_from_the_logs_of_these_settings_and_a_later_claim_does_not_hide_one(done_run, tmp_path):
    status, where, videos, run, out = done_run
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    listed = f"video_paths=[{tmp_path / 'a.mp4'},{broken}]"
    assert cli(*[arg if arg != videos else listed for arg in run], "stack_size=8") == 1
    assert status(*[arg if arg != videos else listed for arg in run], "stack_size=16")[1][0].endswith(
        f"0 failed, 1 not done of 2 videos ({R21D}; {NO_RUN})")  # the stack-8 failure is not this run's
    (log,) = [p for p in (out / ".runs").iterdir() if '"failed"' in p.read_text()]
    with open(log, "a") as file:  # another process, later, found it claimed
        file.write(json.dumps({"event": "video", "path": str(broken), "status": "claimed", "time": 9e9}) + "\n")
    code, lines = status(*[arg if arg != videos else listed for arg in run], "stack_size=8")
    assert lines[0].startswith("1 done, 1 failed, 0 not done of 2 videos")
    assert lines[1].startswith(f"failed: {broken}: ")


def test_an_output_that_cannot_be_checked_is_one_line_naming_it(done_run):
    status, where, videos, run, out = done_run
    record = out / R21D / "b_settings.json"
    record.unlink()
    record.mkdir()  # opening it fails, as an unreadable disk would
    code, lines = status(*run, "stack_size=8")
    assert lines[1] == f"cannot check: {out.parent / 'b.mp4'}: {record}: Is a directory"
