"""Ctrl-C and SIGTERM at any moment: one line, no traceback, nothing partial, the shell's exit code."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, SAMPLE_A, SAMPLE_B
from video_features.utils.store.runlog import read_records


def default_signals() -> None:
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def start(*args, cwd, import_times=False):
    """main.py in a new process whose stderr the test reads as it comes. ``import_times``: Python
    prints a line as each module is imported (-X importtime), which shows where start-up is.
    Ctrl-C and hang-ups are set back to their defaults: a background job (a test run with &)
    inherits Ctrl-C ignored, one under nohup hang-ups."""
    flags = ["-X", "importtime"] if import_times else []
    return subprocess.Popen(
        [sys.executable, *flags, str(ROOT / "main.py"), *args], cwd=cwd, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ), preexec_fn=default_signals,
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
# is imported: numpy.dtypes's while numpy's extension module initialises (a signal handler that
# raised there made numpy's import fail with a traceback, and can make C++ code abort), torch's
# during the imports of main.py, antlr4's while the overrides are parsed, the network's package's
# before the network is built and its weights read.
PHASES = {"extension": r"\| +numpy\.dtypes$", "imports": r"\| +torch\.nn$", "options": r"\| antlr4\.",
          "weights": r"\| +video_features\.models\.r21d\.network$"}


@pytest.mark.parametrize("phase, number", [
    ("extension", signal.SIGINT), ("imports", signal.SIGINT), ("options", signal.SIGINT), ("weights", signal.SIGINT),
    ("imports", signal.SIGTERM), ("extension", signal.SIGHUP), ("options", signal.SIGHUP),
])
def test_a_signal_while_starting_ends_within_2_s_with_one_line(phase, number, tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    process = start(f"video_paths=[{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                    "on_extraction=save_numpy", f"output_path={out}", cwd=tmp_path, import_times=True)
    wait_for_line(process, PHASES[phase])
    seconds, lines = stop(process, number)
    word = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)",
            signal.SIGHUP: "hung up (SIGHUP: the terminal closed)"}[number]
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
    assert [p.name for p in out.iterdir()] == [".runs"]  # the folders its claims made are gone with them


# A shell's pipeline `main.py ... | READER` in a process group of its own, as a terminal runs it: the
# group's leader ignores the signals and reports both exit codes; its children take them as usual.
PIPELINE = """
import json, signal, subprocess, sys
STOPPING = (signal.SIGINT, signal.SIGHUP)
for number in STOPPING:
    signal.signal(number, signal.SIG_IGN)
main, reader, both = json.loads(sys.argv[1])
default = lambda: [signal.signal(number, signal.SIG_DFL) for number in STOPPING]
reading = subprocess.Popen(reader, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, preexec_fn=default)
running = subprocess.Popen(main, stdout=reading.stdin, stderr=reading.stdin if both else None, preexec_fn=default)
reading.stdin.close()
print(json.dumps([running.wait(), reading.wait()]))
"""


def start_piped(args, cwd, reader: list[str], streams: str):
    """``main.py ARGS | READER`` (``2>&1 |`` when ``streams`` is "both"): the group's leader, whose
    pid is the group's; it prints [main's exit code, the reader's] when both have ended."""
    main = [sys.executable, str(ROOT / "main.py"), *args]
    return subprocess.Popen(
        [sys.executable, "-c", PIPELINE, json.dumps([main, reader, streams == "both"])], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ),
    )


def exit_codes(group) -> tuple[int, int, str]:
    """main's and the reader's exit codes, and main's stderr where it was not piped."""
    out, err = group.communicate(timeout=300)
    main_code, reader_code = json.loads(out)
    return main_code, reader_code, err


def wait_for_claim(process, out) -> None:
    deadline = time.monotonic() + 300
    while not list(out.rglob("*.claim")):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it claimed a video"
        time.sleep(0.02)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_or_a_hang_up_of_a_run_piped_into_tee_still_gives_up_its_claims_and_ends_its_log(
        number, tmp_path, r21d_checkpoint):
    """`python main.py ... 2>&1 | tee log`, then Ctrl-C (or the terminal closes): tee goes first, so
    the last line meets a closed pipe; the clean-up must not depend on it."""
    out = tmp_path / "out"
    group = start_piped(
        [f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
         "on_extraction=save_numpy", f"output_path={out}", "stack_size=8", "step_size=8"],
        tmp_path, ["tee", str(tmp_path / "log")], streams="both")
    wait_for_claim(group, out)
    os.killpg(group.pid, number)
    main_code, reader_code, _ = exit_codes(group)
    assert (main_code, reader_code) == (128 + number, -number)  # the reader went with the signal
    assert not list(out.rglob("*.claim")) and not list(out.rglob(".tmp-*"))
    assert [(r["event"], r.get("exit_code")) for r in read_records(str(out))] == [("start", None), ("end", 128 + number)]
    assert "Traceback" not in (tmp_path / "log").read_text()


def test_a_hang_up_stops_a_run_as_sigterm_does_with_exit_129(tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    process = start(f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                    "on_extraction=save_numpy", f"output_path={out}", "stack_size=8", "step_size=8", cwd=tmp_path)
    wait_for_claim(process, out)
    seconds, lines = stop(process, signal.SIGHUP)
    assert process.returncode == 129 and seconds < 10, lines
    assert len(lines) == 1 and lines[0].startswith("hung up (SIGHUP: the terminal closed): 0 extracted"), lines
    assert not list(out.rglob("*.claim"))
    assert [(r["event"], r.get("exit_code")) for r in read_records(str(out))] == [("start", None), ("end", 129)]


def test_printed_features_whose_reader_went_away_stop_the_run_with_exit_141(tmp_path, r21d_checkpoint):
    """`python main.py ... | head -n 1`: the features after the first line have nobody to go to."""
    group = start_piped(
        [f"video_paths=[{SAMPLE_B},{SAMPLE_A}]", f"weights_path={r21d_checkpoint}", "device=cpu", "stack_size=8",
         "step_size=8"], tmp_path, ["head", "-n", "1"], streams="stdout")
    main_code, reader_code, err = exit_codes(group)
    assert (main_code, reader_code) == (141, 0), err
    # head goes after its line, while the first video's lines are written or at the second's
    assert re.match(r"stopped: the reader of the printed features went away; [01] extracted", err.splitlines()[-1]), err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_a_saving_run_whose_log_reader_went_away_finishes_every_video(tmp_path, r21d_checkpoint):
    """`python main.py ... on_extraction=save_numpy 2>&1 | head -n 1`: the messages go nowhere, the
    outputs are the run's work and are all saved."""
    out = tmp_path / "out"
    group = start_piped(
        [f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
         "on_extraction=save_numpy", f"output_path={out}", "stack_size=8", "step_size=8", "progress_seconds=0.2"],
        tmp_path, ["head", "-n", "1"], streams="both")
    assert exit_codes(group)[:2] == (0, 0)
    assert len(list(out.rglob("*_r21d.npy"))) == 2 and not list(out.rglob("*.claim"))
    assert [(r["event"], r.get("exit_code")) for r in read_records(str(out)) if r["event"] != "video"] == [
        ("start", None), ("end", 0)]


def test_under_nohup_a_hang_up_is_ignored_and_the_run_finishes(tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}",
         "device=cpu", "on_extraction=save_numpy", f"output_path={out}", "stack_size=8", "step_size=8"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # what nohup does
    )
    wait_for_claim(process, out)
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0 and err.splitlines()[-1] == "2 extracted, 0 skipped, 0 failed", err
