"""What the command line does around the pipeline: inputs, output names and store, skipping of
finished videos, progress, show_pred, the summary and the exit code."""
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig
from tqdm import tqdm

from utils.config import ConfigError, OnExtraction, video_paths
from utils.extractor import Extractor
from utils.output import OutputStore, describe_outputs, describe_predictions, output_names, remove_stale_temporary_files
from utils.pipeline import VideoResult

EXIT_DONE, EXIT_FAILED, EXIT_BAD_OPTIONS, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunSummary:
    extracted: int = 0
    skipped: int = 0
    failed: int = 0
    replaced: int = 0  # of the extracted: outputs made with other settings were there

    def __str__(self) -> str:
        line = f"{self.extracted} extracted, {self.skipped} skipped, {self.failed} failed"
        if self.replaced:
            line += f" ({self.replaced} replaced outputs made with other settings)"
        return line

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_DONE


def check_writable(folder: str) -> None:
    """ConfigError, before any video is read, if outputs cannot be written under ``folder``."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"output_path={folder}: cannot write there ({error.strerror or error})") from None


class Run:
    """One process's run over its list of videos."""

    def __init__(self, cfg: DictConfig, extractor: Optional[Extractor] = None):
        """``extractor``: one already built from ``cfg``, to reuse."""
        self.cfg = cfg
        self.paths = video_paths(cfg)
        self.store: Optional[OutputStore] = None
        self.names = {path: path for path in self.paths}
        self.summary = RunSummary()
        self._stale: set[str] = set()  # paths whose outputs were made with other settings
        if cfg.on_extraction != OnExtraction.print:
            self.names = output_names(self.paths)
            check_writable(cfg.output_path)
        self.extractor = extractor or Extractor(cfg)
        self.settings = self.extractor.settings()
        if cfg.on_extraction != OnExtraction.print:
            output_dir = os.path.join(cfg.output_path, self.extractor.feature_type, self.extractor.model_name)
            self.store = OutputStore(output_dir, cfg.on_extraction.value)
            folders = {os.path.dirname(self.store.path(name, "")) for name in self.names.values()}
            remove_stale_temporary_files(folders)

    def is_done(self, path: str) -> bool:
        """Called from the decoding threads before a video is read."""
        status = self.store.status(self.names[path], self.extractor.output_keys, self.settings)
        if status == "stale":
            self._stale.add(path)
        return status == "done"

    def __call__(self) -> RunSummary:
        """Extracts every video and prints or saves its outputs. A failure is one line on stderr
        naming the file and the cause; the other videos go on. ``self.summary`` counts as it goes,
        so an interrupted run can still say what it did."""
        interactive = sys.stderr.isatty()  # a log file gets no progress bars, only lines
        with tqdm(total=len(self.paths), unit="video", desc=self.extractor.feature_type, disable=not interactive) as bar:
            skip = self.is_done if self.store else None
            for result in self.extractor.extract_many(self.paths, skip, progress=interactive):
                bar.update(1)
                self._account(result)
        return self.summary

    def _account(self, result: VideoResult) -> None:
        if result.skipped:
            self.summary.skipped += 1
            return
        if result.error is None:
            try:
                self._deliver(result)
                self.summary.extracted += 1
                self.summary.replaced += result.path in self._stale
                return
            except OSError as error:
                result.error = f"cannot save outputs: {error}"
        self.summary.failed += 1
        tqdm.write(f"error: {result.path}: {result.error}", file=sys.stderr)

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
