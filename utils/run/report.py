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
from video_features.utils.progress import Progress, ProgressReport
from video_features.utils.run.exit_codes import EXIT_DONE, EXIT_FAILED
from video_features.utils.store.runlog import RunLog
from video_features.utils.video.protocol import FewerSegments
from video_features.utils.video.remote import redact


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
    not_cut: int = 0  # of the extracted: fewer segments than asked for a reason other than their length

    def __str__(self) -> str:
        line = f"{self.extracted} extracted, {self.skipped} skipped, {self.failed} failed"
        if self.claimed:
            line += f", {self.claimed} claimed by other processes"
        if self.replaced:
            line += f" ({self.replaced} replaced outputs made with other settings)"
        if self.not_cut:
            line += (f"; {self.not_cut} long enough to cut into segments decoded in fewer than asked "
                     "(the run log says why)")
        return line

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_DONE

    def counts(self) -> dict[str, int]:
        return {"extracted": self.extracted, "skipped": self.skipped, "failed": self.failed, "claimed": self.claimed}


class Report:
    def __init__(self, log: Optional[RunLog]):
        self.log = log
        self.summary = RunSummary()

    @contextlib.contextmanager
    def showing_progress(self, videos: int, label: str, quiet: bool, seconds: float,
                         progress: Callable[[], Progress]) -> Iterator[bool]:
        """A bar on a terminal, progress lines every ``seconds`` elsewhere (nothing with ``quiet``), in
        windows (utils/progress.py); yields whether the terminal shows bars."""
        if quiet:
            yield False
            return
        terminal = sys.stderr.isatty()
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(tqdm(unit="window", desc=label)) if terminal else None
            stack.enter_context(ProgressReport(videos, self.summary.counts, progress, seconds, bar))
            yield terminal

    def video(self, result: VideoResult, outcome: Outcome, replaced: bool = False) -> None:
        summary = self.summary
        if outcome == Outcome.EXTRACTED:
            summary.extracted += 1
            summary.replaced += replaced
            summary.not_cut += bool(result.decoded_whole) or (
                result.fewer_segments is not None and result.fewer_segments != FewerSegments.SHORT)
        elif outcome == Outcome.FAILED:
            summary.failed += 1
        elif outcome == Outcome.SKIPPED:
            summary.skipped += 1
        else:
            summary.claimed += 1
        if self.log is not None:
            windows = len(result.outputs["timestamps_ms"]) if result.outputs else None
            fewer = result.fewer_segments.value if result.fewer_segments else None
            self.log.video(result.path, outcome.value, windows, result.seconds, result.error, result.decoded_whole,
                           result.segments, fewer)
        if outcome == Outcome.FAILED:
            say(f"error: {redact(result.path)}: {result.error}")

    def end(self, exit_code: int) -> None:
        if self.log is not None:
            self.log.end(str(self.summary), exit_code)
