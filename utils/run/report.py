"""What a run tells: a record per video in its run log, a line per failure, progress (a bar on a
terminal, lines elsewhere) and the summary it ends with."""
import contextlib
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Iterator, Optional

from tqdm import tqdm

from video_features.utils.console import say
from video_features.utils.pipeline.video_in_flight import VideoResult
from video_features.utils.progress import ProgressLines
from video_features.utils.run.exit_codes import EXIT_DONE, EXIT_FAILED
from video_features.utils.store.runlog import RunLog


class Outcome(str, Enum):
    """What became of a video, as its run-log record says."""

    EXTRACTED = "extracted"
    SKIPPED = "skipped"  # done before, with these settings
    FAILED = "failed"
    CLAIMED = "claimed"  # left to the live process that claimed it


@dataclass
class RunSummary:
    extracted: int = 0
    skipped: int = 0
    failed: int = 0
    replaced: int = 0  # of the extracted: outputs made with other settings were there
    claimed: int = 0  # left to the live processes that had claimed them

    def __str__(self) -> str:
        line = f"{self.extracted} extracted, {self.skipped} skipped, {self.failed} failed"
        if self.claimed:
            line += f", {self.claimed} claimed by other processes"
        if self.replaced:
            line += f" ({self.replaced} replaced outputs made with other settings)"
        return line

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_DONE

    def counts(self) -> dict[str, int]:
        return {"extracted": self.extracted, "skipped": self.skipped, "failed": self.failed, "claimed": self.claimed}


def advance(bar: tqdm, skipped: bool, skipped_so_far: int) -> None:
    """One more video on the terminal's bar. One skipped (done, or claimed elsewhere) took no time:
    it leaves the bar's total and shows in a count beside it, so that the rate and the time left
    are those of the videos read."""
    if skipped:
        bar.total -= 1
        bar.set_postfix(skipped=skipped_so_far)
    else:
        bar.update(1)


class Report:
    def __init__(self, log: Optional[RunLog]):
        self.log = log
        self.summary = RunSummary()
        self._bar: Optional[tqdm] = None

    @contextlib.contextmanager
    def showing_progress(self, videos: int, label: str, quiet: bool, seconds: float,
                         windows: Callable[[], int]) -> Iterator[bool]:
        """A bar over the videos on a terminal, progress lines every ``seconds`` elsewhere (nothing
        with ``quiet``); yields whether the terminal shows bars."""
        terminal = sys.stderr.isatty()
        lines = contextlib.nullcontext()
        if not terminal and not quiet:
            lines = ProgressLines(videos, seconds, self.summary.counts, windows)
        with lines, tqdm(total=videos, unit="video", desc=label, disable=not terminal or quiet) as bar:
            self._bar = bar
            try:
                yield terminal and not quiet
            finally:
                self._bar = None

    def video(self, result: VideoResult, outcome: Outcome, replaced: bool = False) -> None:
        summary = self.summary
        if outcome == Outcome.EXTRACTED:
            summary.extracted += 1
            summary.replaced += replaced
        elif outcome == Outcome.FAILED:
            summary.failed += 1
        elif outcome == Outcome.SKIPPED:
            summary.skipped += 1
        else:
            summary.claimed += 1
        if self.log is not None:
            windows = len(result.outputs["timestamps_ms"]) if result.outputs else None
            self.log.video(result.path, outcome.value, windows, result.seconds, result.error, result.decoded_whole)
        if outcome == Outcome.FAILED:
            say(f"error: {result.path}: {result.error}")
        if self._bar is not None:
            advance(self._bar, result.skipped is not None, summary.skipped + summary.claimed)

    def end(self, exit_code: int) -> None:
        if self.log is not None:
            self.log.end(str(self.summary), exit_code)
