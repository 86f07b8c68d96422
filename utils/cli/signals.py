"""The signals that stop a run: Ctrl-C (SIGINT), SIGTERM (Slurm at a time limit, kill) and SIGHUP (the
terminal or ssh connection closed). Each stops a job cleanly (claims given up, an end record, one
line) with the shell's exit code, 128 + the signal's number."""
import contextlib
import os
import signal
import sys
import threading

STOPPED = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)",
           signal.SIGHUP: "hung up (SIGHUP: the terminal closed)"}


def stop_while_starting(signum, frame):
    """A signal while the process starts (its imports take seconds: torch, PyAV, Hydra), checks the
    options, or is between a sweep's jobs: nothing is being written, so the process ends at once
    with one line and the shell's code, no traceback.

    It ends without raising: an exception raised here may land inside an extension module's
    initialisation (numpy's, torch's), which can turn it into an ImportError with a traceback, or,
    in C++ code that may not throw, into abort() (exit 134)."""
    try:
        print(f"{STOPPED[signum]}: no video was in progress", file=sys.stderr, flush=True)
    except OSError:  # nobody reads stderr any more (a closed pipe or terminal)
        pass
    os._exit(128 + signum)


def stop_while_starting_on_signals() -> None:
    for number in STOPPED:
        if signal.getsignal(number) is not signal.SIG_IGN:  # a background job's Ctrl-C stays ignored
            signal.signal(number, stop_while_starting)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that it stops a run the same way."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def signals_stop_the_run():
    """While a job runs, Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP Stopped, so that each
    stops it cleanly; the handlers before are restored after (one ignored, as nohup ignores SIGHUP,
    stays ignored). Around each job rather than once, since a launcher may run jobs in processes of
    its own."""
    if threading.current_thread() is not threading.main_thread():  # where signals do not reach
        yield
        return
    handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_stopped,
                signal.SIGHUP: _raise_stopped}
    previous = {number: signal.getsignal(number) for number in handlers}
    for number, handler in handlers.items():
        if previous[number] is not signal.SIG_IGN:
            signal.signal(number, handler)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
