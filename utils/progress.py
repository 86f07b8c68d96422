"""Progress where stderr is not a terminal (a log file under nohup or Slurm, `| tee`): a line at a
steady pace and one at the end, since progress bars are for terminals. A thread of its own writes
them, so that a video that takes hours still shows the run is alive."""
import threading
import time
from typing import Callable, Optional

from video_features.utils.console import say


def duration(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


class ProgressLines:
    """``progress: 7 of 46 videos (5 extracted, 1 skipped, 1 failed), 12.3 windows/s, 0:05:10 elapsed,
    about 0:20:00 left``, every ``seconds`` while in a ``with`` block and, after a run that printed
    one, at its end (a run shorter than that has its summary line alone). ``counts()`` gives the
    videos done so far by outcome, ``windows()`` the windows through the network so far; both are
    read from this thread while the run updates them."""

    def __init__(self, total: int, seconds: float, counts: Callable[[], dict[str, int]], windows: Callable[[], int]):
        self.total, self.seconds, self.counts, self.windows = total, seconds, counts, windows
        self.started = time.monotonic()
        self.windows_at_start = windows()
        self.printed = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None  # while in a with block

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        counts = self.counts()
        done = sum(counts.values())
        outcomes = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
        rate = (self.windows() - self.windows_at_start) / max(elapsed, 1e-9)
        line = f"progress: {done} of {self.total} videos ({outcomes or 'none yet'}), {rate:.1f} windows/s, " \
               f"{duration(elapsed)} elapsed"
        read = done - counts.get("skipped", 0) - counts.get("claimed", 0)  # skipped ones took no time
        if read and done < self.total:
            line += f", about {duration(elapsed / read * (self.total - done))} left"
        return line

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="progress lines", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """Stops the thread; after a run that ended normally and printed a line, the last line (a
        stopped run's own line says where it stopped)."""
        self._stop.set()
        self._thread.join()
        if error_type is None and self.printed:
            say(self.line())

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            say(self.line())
            self.printed += 1
