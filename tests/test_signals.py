"""Ctrl-C and SIGTERM at any moment: one line, no traceback, nothing partial, the shell's exit code."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, SAMPLE_A, SAMPLE_B
from utils.store.runlog import read_records


def start(*args, cwd, import_times=False):
    """main.py in a new process whose stderr the test reads as it comes. ``import_times``: Python
    prints a line as each module is imported (-X importtime), which shows where start-up is.
    Ctrl-C is set back to its default: a background job (a test run with &) inherits it ignored."""
    flags = ["-X", "importtime"] if import_times else []
    return subprocess.Popen(
        [sys.executable, *flags, str(ROOT / "main.py"), *args], cwd=cwd, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_line(process, pattern: str) -> None:
    for line in process.stderr:
        if re.search(pattern, line):
            return
    pytest.fail(f"the process ended (exit code {process.wait()}) before a line matched {pattern!r}")


def stop(process, number) -> tuple[float, list[str]]:
    """Sends the signal; the seconds until the process ended, and its later stderr lines but Python's
    import times."""
    process.send_signal(number)
    sent = time.monotonic()
    _, err = process.communicate(timeout=60)
    return time.monotonic() - sent, [line for line in err.splitlines() if not line.startswith("import time:")]


# Lines -X importtime prints in each phase before any video is read. Each is printed once its module
# is imported: torch's during the imports of main.py, antlr4's while the overrides are parsed, the
# network's package's before the network is built and its weights read.
PHASES = {"imports": r"\| +torch\.nn$", "options": r"\| antlr4\.", "weights": r"\| models\.r21d\.network$"}


@pytest.mark.parametrize("phase, number", [
    ("imports", signal.SIGINT), ("options", signal.SIGINT), ("weights", signal.SIGINT), ("imports", signal.SIGTERM),
])
def test_a_signal_while_starting_ends_within_2_s_with_one_line(phase, number, tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    process = start(f"video_paths=[{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                    "on_extraction=save_numpy", f"output_path={out}", cwd=tmp_path, import_times=True)
    wait_for_line(process, PHASES[phase])
    seconds, lines = stop(process, number)
    word = "interrupted" if number == signal.SIGINT else "terminated (SIGTERM)"
    assert (process.returncode, lines) == (128 + number, [f"{word}: no video was in progress"])
    assert seconds < 2
    assert not out.exists() or [p for p in out.rglob("*") if not p.is_dir()] == []  # no run log, claim or output


def test_sigterm_stops_a_run_as_ctrl_c_does_with_exit_143(tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    process = start(f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                    "on_extraction=save_numpy", f"output_path={out}", "stack_size=8", "step_size=8", cwd=tmp_path)
    deadline = time.monotonic() + 300
    while not list(out.rglob("*.claim")):  # a.mp4 is being extracted
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.02)
    seconds, lines = stop(process, signal.SIGTERM)
    assert process.returncode == 143, lines
    assert seconds < 10  # "within seconds": the batch in the network ends first
    assert len(lines) == 1 and re.fullmatch(
        r"terminated \(SIGTERM\): 0 extracted, 0 skipped, 0 failed; videos in progress were not saved "
        r"\(run the same command again to finish\)", lines[0]), lines
    assert not list(out.rglob("*.claim")) and not list(out.rglob(".tmp-*"))
    assert [(r["event"], r.get("exit_code")) for r in read_records(str(out))] == [("start", None), ("end", 143)]
