"""Progress in log files: where stderr is not a terminal (nohup, Slurm's output, `| tee`), a line at
the pace of progress_seconds and one at the end; none with quiet=true."""
import io
import re
import time

from tqdm import tqdm

from tests.conftest import SAMPLE_A, SAMPLE_B, run_cli
from video_features.utils.progress import ProgressLines
from video_features.utils.run.report import advance

LINE = re.compile(r"progress: (\d+) of (\d+) videos \((.*)\), ([\d.]+) windows/s, (\d+):(\d\d):(\d\d) elapsed(, about .* left)?")


def progress_lines(stderr: str) -> list[re.Match]:
    return [LINE.fullmatch(line) for line in stderr.splitlines() if line.startswith("progress:")]


def test_a_run_logging_to_a_file_prints_progress_at_its_pace_and_at_the_end(tmp_path, r21d_checkpoint):
    args = [f"video_paths=[{SAMPLE_A},{SAMPLE_B},{SAMPLE_A}]", f"weights_path={r21d_checkpoint}", "device=cpu",
            "on_extraction=save_numpy", f"output_path={tmp_path / 'out'}", "stack_size=4", "step_size=4"]
    start = time.monotonic()
    result = run_cli(*args, "progress_seconds=0.5", cwd=tmp_path)  # stderr is a pipe here, as to a log file
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    lines = progress_lines(result.stderr)
    assert all(lines), result.stderr
    assert len(lines) >= seconds / 0.5 / 3  # the run's start-up (imports, the model) prints none
    *during, last = lines
    assert last.group(0).startswith("progress: 2 of 2 videos (2 extracted), ")  # a.mp4 given twice is read once
    assert last.group(8) is None  # nothing left
    assert [int(m.group(1)) for m in during] == sorted(int(m.group(1)) for m in during)
    assert result.stderr.splitlines()[-1] == "2 extracted, 0 skipped, 0 failed"

    again = run_cli(*args, "progress_seconds=0.5", "quiet=true", cwd=tmp_path)
    assert again.returncode == 0 and not progress_lines(again.stderr)
    assert again.stderr.splitlines() == ["0 extracted, 2 skipped, 0 failed"]


def test_the_time_left_counts_only_the_videos_read_and_the_rate_only_this_run():
    counts = {"extracted": 0, "skipped": 0, "failed": 0}
    windows = [500]  # windows through the pipeline before this run
    lines = ProgressLines(10, 60, lambda: dict(counts), lambda: windows[0])
    lines.started -= 100  # 100 s into the run
    counts.update(skipped=4, extracted=2)
    windows[0] = 700
    line = lines.line()
    assert re.fullmatch(r"progress: 6 of 10 videos \(2 extracted, 4 skipped\), 2\.0 windows/s, 0:01:40 elapsed, "
                        r"about 0:03:20 left", line), line  # 2 videos read in 100 s: 4 more take 200 s


def test_the_bars_rate_after_many_skipped_videos_is_that_of_the_videos_read():
    bar = tqdm(total=50, file=io.StringIO(), unit="video")
    for skipped in range(1, 44):
        advance(bar, True, skipped)
    time.sleep(0.5)
    advance(bar, False, 43)
    shown = bar.format_meter(**bar.format_dict)
    assert bar.format_dict["rate"] < 3 and "1/7 " in shown and "skipped=43" in shown, shown
