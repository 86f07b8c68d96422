"""Progress of a run, counted in windows (the work the network does) rather than videos, whose
lengths differ: a bar on a terminal, and where stderr is not a terminal (a log file under nohup or
Slurm, `| tee`) a line at a steady pace and one at the end. A thread of its own shows them, so that a
video that takes hours still shows the run is alive and how much of it is left.

The pipeline publishes a ``Progress`` snapshot as it goes: each video's windows are known once it is
opened (from its duration, before decoding); the videos not yet reached are estimated at the windows
per video seen so far, skipped and failed ones included (they take no time)."""
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from tqdm import tqdm

from video_features.utils.console import say
from video_features.utils.video.remote import redact

BAR_SECONDS = 0.5  # how often the terminal's bar is redrawn


@dataclass(frozen=True)
class Progress:
    """What an extraction call has done so far (the pipeline replaces it as it goes)."""

    videos_pulled: int = 0  # taken from the work: skipped and failed videos included
    windows_expected: int = 0  # of those: the windows of the videos done, the expected ones of those being read
    windows_done: int = 0  # through the network
    reading: tuple[tuple[str, int, int], ...] = ()  # (path, windows done, windows expected) of the videos in work

    def windows_total(self, videos: int) -> Optional[int]:
        """The windows of all ``videos``, the ones not reached estimated; None before any video."""
        if not self.videos_pulled:
            return None
        per_video = self.windows_expected / self.videos_pulled
        return self.windows_expected + round(max(0, videos - self.videos_pulled) * per_video)


def duration(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


class ProgressReport:
    """Used in a ``with`` block around a run: ``counts()`` gives the videos done so far by outcome,
    ``progress()`` the pipeline's latest snapshot; both are read from this thread."""

    def __init__(self, videos: int, counts: Callable[[], dict[str, int]], progress: Callable[[], Progress],
                 seconds: float, bar: Optional[tqdm] = None):
        """``bar``: a terminal's bar, redrawn often; without one, a line every ``seconds``."""
        self.videos, self.counts, self.progress, self.seconds, self.bar = videos, counts, progress, seconds, bar
        self.started = time.monotonic()
        self.printed = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None  # while in a with block

    def line(self) -> str:
        """``progress: 7 of 46 videos (5 extracted, 1 skipped, 1 failed), 1200 of about 5600 windows,
        2.1 windows/s, 0:09:31 elapsed, about 0:34:55 left; long.mp4: 120 of 450 windows``"""
        elapsed = time.monotonic() - self.started
        counts, progress = self.counts(), self.progress()
        done = sum(counts.values())
        outcomes = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
        total = progress.windows_total(self.videos)
        of = f" of about {total}" if total is not None and done < self.videos else ""
        rate = progress.windows_done / max(elapsed, 1e-9)
        line = (f"progress: {done} of {self.videos} videos ({outcomes or 'none yet'}), {progress.windows_done}{of} "
                f"windows, {rate:.1f} windows/s, {duration(elapsed)} elapsed")
        if total is not None and rate > 0 and done < self.videos:
            line += f", about {duration(max(0, total - progress.windows_done) / rate)} left"
        reading = "; ".join(f"{redact(path).rsplit('/', 1)[-1]}: {windows} of {expected} windows"
                            for path, windows, expected in progress.reading)
        return f"{line}; {reading}" if reading else line

    def _redraw(self) -> None:
        counts, progress = self.counts(), self.progress()
        total = progress.windows_total(self.videos)
        if total is not None:
            self.bar.total = max(total, progress.windows_done)
        self.bar.update(progress.windows_done - self.bar.n)
        self.bar.set_postfix_str(f"{sum(counts.values())}/{self.videos} videos"
                                 + (f", {counts['skipped']} skipped" if counts.get("skipped") else ""))

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """Stops the thread; after a run that ended normally and printed a line, the last line (a
        stopped run's own line says where it stopped)."""
        self._stop.set()
        self._thread.join()
        if self.bar is not None:
            with contextlib.suppress(Exception):
                self._redraw()
        elif error_type is None and self.printed:
            say(self.line())

    def _run(self) -> None:
        while not self._stop.wait(BAR_SECONDS if self.bar is not None else self.seconds):
            if self.bar is not None:
                self._redraw()
            else:
                say(self.line())
                self.printed += 1
