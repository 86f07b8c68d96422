"""Claims under takeover: a process whose claim was taken over leaves the video to the new owner."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings

from tests.conftest import ROOT, SAMPLE_A
from video_features.utils.store.claims import Claims, _put_back


def start(*args, cwd):
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def wait_until(condition, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {seconds} s"
        time.sleep(0.02)


def age(path) -> float:
    return time.time() - os.path.getmtime(path)


def make_old(path, seconds: float = 3600) -> None:
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_a_paused_process_whose_claim_was_taken_over_does_not_save_over_the_new_owner(tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    first = start(f"video_paths=[{SAMPLE_A}]", f"weights_path={r21d_checkpoint}", "device=cpu", "on_extraction=save_numpy",
                  f"output_path={out}", "stack_size=8", "step_size=8", "claim_stale_seconds=1", cwd=tmp_path)
    wait_until(lambda: list(out.rglob("*.claim")) or first.poll() is not None, "claimed")
    first.send_signal(signal.SIGSTOP)  # paused (a suspended job, a frozen VM): its claim goes stale
    try:
        (claim,) = out.rglob("*.claim")
        assert not list(out.rglob("*.npy")), "the video was saved before the test could pause its process"
        second = Claims(stale_seconds=1)
        wait_until(lambda: second.take(str(claim)), "taken over")
        third = Claims(stale_seconds=1)
        assert not third.take(str(claim))  # the second process's claim is live
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert err.splitlines()[-1] == "0 extracted, 0 skipped, 0 failed, 1 claimed by other processes"
    assert "another process took its claim over (it judged it stale)" in err
    assert not list(out.rglob("*.npy")) and second.holds(str(claim))  # nothing saved over it, its claim kept
    second.close()
    third.close()
    assert not claim.exists()


def refreshed_twice(path) -> None:
    """Returns once the refresher has gone twice over ``path``: a whole round over every claim."""
    for _ in range(2):
        make_old(path)
        wait_until(lambda: age(path) < 60, "refreshed")


def test_the_refresher_stops_refreshing_a_claim_taken_over(tmp_path):
    mine, taken = str(tmp_path / "mine.claim"), str(tmp_path / "taken.claim")
    claims = Claims(stale_seconds=0.4)  # refreshed every 0.1 s
    assert claims.take(mine) and claims.take(taken)
    other = tmp_path / "other"
    other.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": 0}))
    make_old(other)
    os.replace(other, taken)  # what a takeover leaves: another process's claim, here one since dead
    refreshed_twice(mine)
    assert age(taken) > 60  # not kept alive by this process: it can be taken over in turn
    assert not claims.holds(taken)
    claims.close()
    assert os.path.exists(taken) and not os.path.exists(mine)


def test_a_claim_that_cannot_be_refreshed_is_warned_about_once_and_still_refreshed_after(tmp_path):
    mine, broken = str(tmp_path / "mine.claim"), str(tmp_path / "broken.claim")
    claims = Claims(stale_seconds=0.4)
    assert claims.take(mine) and claims.take(broken)
    os.rename(broken, tmp_path / "saved")
    os.symlink(broken, broken)  # a loop: reading it fails with an OSError that is not "not found"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two rounds: refreshing it failed at least twice
            refreshed_twice(mine)
        os.remove(broken)
        os.rename(tmp_path / "saved", broken)
        refreshed_twice(broken)  # the refresher still tries, and now succeeds
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith(f"cannot refresh the claim {broken} (Too many levels")
    assert claims.holds(broken)
    claims.close()


def test_a_claim_moved_aside_by_a_late_takeover_never_replaces_a_third_process_claim(tmp_path):
    path = str(tmp_path / "v.claim")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open(path, "w") as file:  # the claim of a process killed with -9
        json.dump({"host": socket.gethostname(), "pid": int(dead.stdout), "time": 0}, file)
    with open(path, "rb") as file:
        judged_stale = file.read()
    late, second, third = Claims(60), Claims(60), Claims(60)
    assert second.take(path)  # takes the dead process's claim over
    # A third process had judged the same claim stale and now takes away what it finds: the second's
    # fresh claim, which it moves aside, sees is not the stale one, and puts back.
    assert not late._take_away(path, judged_stale)
    assert second.holds(path) and os.listdir(tmp_path) == ["v.claim"]
    # Once more, but a process claims the video in the instant the claim is aside: it keeps its claim.
    os.rename(path, path + ".aside")
    assert third.take(path)
    _put_back(path + ".aside", path)
    assert third.holds(path) and not second.holds(path) and os.listdir(tmp_path) == ["v.claim"]
    for claims in (late, second, third):
        claims.close()
    assert not os.path.exists(path)
