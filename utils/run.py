"""What the command line does around the pipeline: inputs, output names and store, skipping of
finished videos, progress, show_pred, the summary and the exit code."""
import contextlib
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig
from tqdm import tqdm

from utils.config import URL, OnExtraction, video_paths
from utils.console import say
from utils.errors import OutputError, SettingsError
from utils.extractor import Extractor
from utils.machine import MachineShare
from utils.progress import ProgressLines
from utils.store.claims import Claims
from utils.store.files import remove_stale_temporary_files
from utils.store.names import output_names
from utils.store.outputs import OutputStore
from utils.store.printing import describe_outputs, describe_predictions
from utils.store.runlog import RunLog
from utils.video_in_flight import VideoResult

EXIT_DONE, EXIT_FAILED, EXIT_BAD_OPTIONS = 0, 1, 2  # interrupted: 128 + the signal's number (main.py)
EXIT_READER_GONE = 128 + 13  # the reader of the printed features went away: SIGPIPE's code
DONE, CLAIMED = "done", "claimed"  # why a video need not be read (Run.is_done)


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


def check_writable(folder: str) -> None:
    """SettingsError, before any video is read, if outputs cannot be written under ``folder``. A byte
    is written: on a full disk an empty file can still be made."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as file:
            file.write(b"0")
            file.flush()
    except OSError as error:
        raise SettingsError(f"output_path={folder}: cannot write there ({error.strerror or error})") from None


def unsupported(path: str) -> Optional[str]:
    """Why an input cannot be read at all, or None."""
    if URL.match(path):
        return "URLs are not supported; download the video and give its path"
    return None


def shard(paths: list[str], shard_id: int, num_shards: int) -> list[str]:
    """This shard's part of the list, in the input order: every num_shards-th video in the order of
    their absolute paths, so that the shards are disjoint, cover the list and do not depend on the
    order of the inputs."""
    mine = set(sorted(paths, key=os.path.abspath)[shard_id::num_shards])
    return [path for path in paths if path in mine]


def advance(bar: tqdm, skipped: bool, skipped_so_far: int) -> None:
    """One more video on the terminal's bar. One skipped (done, or claimed elsewhere) took no time:
    it leaves the bar's total and shows in a count beside it, so that the rate and the time left
    are those of the videos read."""
    if skipped:
        bar.total -= 1
        bar.set_postfix(skipped=skipped_so_far)
    else:
        bar.update(1)


class Run:
    """One process's run over its share of the videos."""

    def __init__(self, cfg: DictConfig, extractor: Optional[Extractor] = None, share: Optional[MachineShare] = None):
        """``extractor``: one already built from ``cfg``, to reuse; ``share``: this job's share of its
        machine (utils/machine.py), for a sweep's job."""
        self.cfg = cfg
        listed = video_paths(cfg)
        self.paths = shard(listed, cfg.shard_id, cfg.num_shards)
        self.store: Optional[OutputStore] = None
        self.claims: Optional[Claims] = None
        self.log: Optional[RunLog] = None
        self.names = {path: path for path in listed}
        self.summary = RunSummary()
        self._stale: set[str] = set()  # paths whose outputs were made with other settings
        saving = cfg.on_extraction != OnExtraction.print
        if saving:
            # of the whole list, so that every shard refuses a clash alike
            self.names = output_names([path for path in listed if not unsupported(path)], cfg.input_root)
            check_writable(cfg.output_path)
        self.extractor = extractor or Extractor(cfg, share)
        self.settings = self.extractor.settings()
        if saving:
            output_dir = self.extractor.recipe.output_dir(cfg.output_path)
            self.store = OutputStore(output_dir, cfg.on_extraction.value)
            named = [self.names[path] for path in self.paths if path in self.names]
            remove_stale_temporary_files({os.path.dirname(self.store.path(name, "")) for name in named})
            shard_text = f"{cfg.shard_id}/{cfg.num_shards}"
            try:
                machine = {**self.extractor.share.describe(), "decode_workers": self.extractor.pipeline.decode_workers}
                self.log = RunLog(cfg.output_path, cfg, str(self.extractor.device), shard_text, machine)
            except OSError as error:  # the disk filled up since check_writable, or .runs cannot be made
                where = f": {error.filename}" if error.filename else ""
                raise SettingsError(f"output_path={cfg.output_path}: cannot write the run log "
                                  f"({error.strerror or error}{where})") from None
            self.claims = Claims(cfg.claim_stale_seconds)

    def is_done(self, path: str) -> Optional[str]:
        """Why a video need not be read, or None after claiming it: DONE, or CLAIMED (by a live process
        elsewhere); OutputError when its saved outputs cannot be checked (the video fails with it).
        Called by the pipeline just before the video is opened."""
        name = self.names[path]
        claim = self.store.claim_path(name)
        if not self.claims.take(claim):
            return CLAIMED
        try:
            status = self.store.status(name, self.extractor.output_keys, self.settings)
        except OutputError:
            self.claims.release(claim)
            raise
        if status == "done":
            self.claims.release(claim)
            return DONE
        if status == "stale":
            self._stale.add(path)
        return None

    def __call__(self) -> RunSummary:
        """Extracts every video and prints or saves its outputs. A failure is one line on stderr
        naming the file and the cause; the other videos go on. ``self.summary`` counts as it goes,
        so an interrupted run can still say what it did."""
        interactive = sys.stderr.isatty() and not self.cfg.quiet  # a log file gets lines, not bars
        lines = contextlib.nullcontext()
        if not sys.stderr.isatty() and not self.cfg.quiet:
            lines = ProgressLines(len(self.paths), self.cfg.progress_seconds, self._counts,
                                  lambda: self.extractor.pipeline.windows_through)
        with lines, tqdm(total=len(self.paths), unit="video", desc=self.extractor.feature_type,
                         disable=not interactive) as bar:
            for path in self.paths:
                reason = unsupported(path)
                if reason:
                    bar.update(1)
                    self._account(VideoResult(path, error=reason))
            readable = [path for path in self.paths if not unsupported(path)]
            claim = self.is_done if self.store else None
            # closed on the way out, also when interrupted while saving: the decoding processes stop
            # before close() gives up the claims, so no video is claimed after that
            with contextlib.closing(self.extractor.extract_many(readable, claim, progress=interactive)) as results:
                for result in results:
                    self._account(result)
                    advance(bar, result.skipped is not None, self.summary.skipped + self.summary.claimed)
        return self.summary

    def _counts(self) -> dict[str, int]:
        summary = self.summary
        return {"extracted": summary.extracted, "skipped": summary.skipped, "failed": summary.failed,
                "claimed": summary.claimed}

    def close(self, exit_code: int) -> None:
        """The end of the run, also an interrupted one: the decoding processes stop, then the claims
        of unfinished videos are given up."""
        self.extractor.close()
        if self.claims is not None:
            self.claims.close()
        if self.log is not None:
            self.log.end(str(self.summary), exit_code)

    def _account(self, result: VideoResult) -> None:
        if result.skipped in (DONE, CLAIMED):
            claimed = result.skipped == CLAIMED
            self.summary.claimed += claimed
            self.summary.skipped += not claimed
            self._log(result, "claimed" if claimed else "skipped")
            return
        if result.error is None:
            try:
                if not self._still_claimed(result.path):
                    self._leave_to_new_owner(result)
                    return
                self._deliver(result)
            except BrokenPipeError:  # the printed features' reader has gone: the run stops (main.py)
                raise
            except OSError as error:
                result.error = f"cannot save outputs: {error}"
        self._release(result.path)
        if result.error is None:
            self.summary.extracted += 1
            self.summary.replaced += result.path in self._stale
            self._log(result, "extracted")
            return
        self.summary.failed += 1
        self._log(result, "failed")
        say(f"error: {result.path}: {result.error}")

    def _still_claimed(self, path: str) -> bool:
        return self.claims is None or self.claims.holds(self.store.claim_path(self.names[path]))

    def _leave_to_new_owner(self, result: VideoResult) -> None:
        """A video whose claim another process took over (it judged it stale: this one was paused,
        or could not refresh it) is that process's: nothing is saved over its outputs."""
        warnings.warn(f"{result.path}: another process took its claim over (it judged it stale); "
                      "its outputs are left to that process, not saved")
        self.summary.claimed += 1
        self._log(result, "claimed")

    def _release(self, path: str) -> None:
        if self.claims is not None and path in self.names:  # an unsupported input has no name
            self.claims.release(self.store.claim_path(self.names[path]))

    def _log(self, result: VideoResult, status: str) -> None:
        if self.log is not None:
            windows = len(result.outputs["timestamps_ms"]) if result.outputs else None
            self.log.video(result.path, status, windows, result.seconds, result.error, result.restarted)

    def _deliver(self, result: VideoResult) -> None:
        if self.store is not None:
            self.store.save(self.names[result.path], result.outputs, self.settings)
        else:
            tqdm.write(describe_outputs(result.path, result.outputs))
        if self.cfg.show_pred:
            predictions = describe_predictions(
                result.logits, result.outputs["timestamps_ms"], self.extractor.class_names()
            )
            tqdm.write(f"{result.path}: top-5 classes per window\n{predictions}")
