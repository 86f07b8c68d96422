"""Progress in windows, within a long video and over the run: where stderr is not a terminal (nohup,
Slurm's output, `| tee`), a line at the pace of progress_seconds and one at the end, none with
quiet=true; on a terminal, a bar over the windows."""
import io
import re
import subprocess
import time

from tqdm import tqdm

from tests.conftest import SAMPLE_A, SAMPLE_B, needs_ffmpeg, run_cli
from video_features.utils.progress import Progress, ProgressReport

LINE = re.compile(r"progress: (\d+) of (\d+) videos \((.*)\), (\d+)( of about (\d+))? windows, ([\d.]+) windows/s, "
                  r"(\d+):(\d\d):(\d\d) elapsed(, about (\d+):(\d\d):(\d\d) left)?(; (.*))?")


def progress_lines(stderr: str) -> list[re.Match]:
    return [LINE.fullmatch(line) for line in stderr.splitlines() if line.startswith("progress:")]


def report(counts: dict, progress: Progress, videos: int, seconds_in: float) -> ProgressReport:
    shown = ProgressReport(videos, lambda: dict(counts), lambda: progress, 60)
    shown.started -= seconds_in
    return shown


def test_within_one_long_video_the_line_says_its_windows_and_the_time_left():
    progress = Progress(videos_pulled=1, windows_expected=450, windows_done=120, reading=(("/v/long.mp4", 120, 450),))
    line = report({"extracted": 0}, progress, videos=1, seconds_in=60).line()
    # 120 windows in 60 s: the other 330 take 165 s
    assert line == ("progress: 0 of 1 videos (none yet), 120 of about 450 windows, 2.0 windows/s, 0:01:00 elapsed, "
                    "about 0:02:45 left; long.mp4: 120 of 450 windows")


def test_videos_that_fail_at_once_or_are_skipped_take_no_time_in_the_estimate():
    # 10 videos; of the 5 reached, 3 skipped and 1 failed at once (no windows), one read: 100 windows
    # in 50 s. The 5 left are estimated at the 20 windows per video reached: 100 windows, 50 s.
    progress = Progress(videos_pulled=5, windows_expected=100, windows_done=100)
    line = report({"extracted": 1, "skipped": 3, "failed": 1}, progress, videos=10, seconds_in=50).line()
    assert line == ("progress: 5 of 10 videos (1 extracted, 3 skipped, 1 failed), 100 of about 200 windows, "
                    "2.0 windows/s, 0:00:50 elapsed, about 0:00:50 left")


def test_the_terminals_bar_counts_windows_and_videos():
    bar = tqdm(unit="window", file=io.StringIO())
    progress = Progress(videos_pulled=2, windows_expected=300, windows_done=60, reading=(("b.mp4", 10, 260),))
    shown = ProgressReport(4, lambda: {"extracted": 1, "skipped": 0}, lambda: progress, 60, bar)
    shown._redraw()
    assert (bar.n, bar.total) == (60, 600) and "1/4 videos" in bar.format_meter(**bar.format_dict)


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
    windows = 132 // 4 + 158 // 4
    assert last.group(0).startswith(f"progress: 2 of 2 videos (2 extracted), {windows} windows, ")  # a.mp4 once
    assert last.group(11) is None  # nothing left
    assert [int(m.group(4)) for m in during] == sorted(int(m.group(4)) for m in during)
    assert result.stderr.splitlines()[-1] == "2 extracted, 0 skipped, 0 failed"

    again = run_cli(*args, "progress_seconds=0.5", "quiet=true", cwd=tmp_path)
    assert again.returncode == 0 and not progress_lines(again.stderr)
    assert again.stderr.splitlines() == ["0 extracted, 2 skipped, 0 failed"]


@needs_ffmpeg
def test_a_log_of_one_long_video_shows_its_windows_and_the_time_left(tmp_path):
    video = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "60",
                    "-c:v", "libx264", "-g", "25", str(video)], check=True)
    result = run_cli(f"video_paths=[{video}]", "pretrained=false", "device=cpu", "progress_seconds=0.5",
                     "stack_size=8", "step_size=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    during = [m for m in progress_lines(result.stderr)[:-1] if m and int(m.group(4)) > 0]
    assert during, result.stderr
    for line in during:  # 1500 frames: 187 windows, known from the start
        assert line.group(6) == "187" and line.group(11) and line.group(16) == f"long.mp4: {line.group(4)} of 187 windows"
