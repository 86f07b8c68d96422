"""status=true answers for the feature type, model and settings of its command line, by the rule a
run skips a video by: its outputs load and their settings record equals the run's."""
import shutil

from tests.conftest import SAMPLE_A, SAMPLE_B, cli

R21D = "r21d/r2plus1d_18_16_kinetics"


def test_status_counts_only_the_outputs_a_run_of_its_command_line_would_skip(tmp_path, r21d_checkpoint, capsys):
    for sample in (SAMPLE_A, SAMPLE_B):
        shutil.copy(sample, tmp_path)
    out = tmp_path / "out"
    where = [f"output_path={out}", f"input_root={tmp_path}", "device=cpu", "on_extraction=save_numpy"]
    videos = f"video_paths=[{tmp_path / 'a.mp4'},{tmp_path / 'b.mp4'}]"
    run = [*where, videos, f"weights_path={r21d_checkpoint}", "step_size=200"]
    assert cli(*[*run, "stack_size=8"]) == 0
    capsys.readouterr()

    def status(*args) -> tuple[int, str]:
        code = cli(*["status=true", *args])
        return code, capsys.readouterr().out.splitlines()[0]

    runs = "1 processes, 0 without an end record: running or killed"
    assert status(*run, "stack_size=8") == (0, f"all 2 videos done ({R21D}; {runs})")
    # another feature type: none of its outputs is there (no list: the videos the run logs name)
    assert status(*where, "feature_type=slowfast", "pretrained=false") == (
        1, f"0 done, 0 failed, 2 not done of 2 videos (slowfast/slowfast_r50; {runs})")
    # other settings: a run would extract both again
    assert status(*run, "stack_size=16") == (
        1, f"0 done, 2 done with other settings, 0 failed, 0 not done of 2 videos ({R21D}; {runs})")
    assert status(*where, videos, "pretrained=false", "stack_size=8") == (  # other weights
        1, f"0 done, 2 done with other settings, 0 failed, 0 not done of 2 videos ({R21D}; {runs})")
    # an output gone: that video is not done
    (out / R21D / "a_timestamps_ms.npy").unlink()
    assert status(*run, "stack_size=8") == (1, f"1 done, 0 failed, 1 not done of 2 videos ({R21D}; {runs})")
    # the same outputs asked about without saying their format (on_extraction=print) count too
    printing = [arg for arg in run if arg != "on_extraction=save_numpy"]
    assert status(*printing, "stack_size=8") == (1, f"1 done, 0 failed, 1 not done of 2 videos ({R21D}; {runs})")
