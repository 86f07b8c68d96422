"""What the command line does around the pipeline: inputs, output names and store, skipping of
finished videos, progress, show_pred, the summary and the exit code."""
import os
import sys
from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig
from tqdm import tqdm

from utils.config import OnExtraction, video_paths
from utils.extractor import Extractor
from utils.output import OutputStore, describe_outputs, describe_predictions, output_names
from utils.pipeline import VideoResult

EXIT_DONE, EXIT_FAILED, EXIT_BAD_OPTIONS, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunSummary:
    extracted: int = 0
    skipped: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.extracted} extracted, {self.skipped} skipped, {self.failed} failed"

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_DONE


class Run:
    """One process's run over its list of videos."""

    def __init__(self, cfg: DictConfig, extractor: Optional[Extractor] = None):
        """``extractor``: one already built from ``cfg``, to reuse."""
        self.cfg = cfg
        self.paths = video_paths(cfg)
        self.extractor = extractor or Extractor(cfg)
        self.store: Optional[OutputStore] = None
        self.names = {path: path for path in self.paths}
        if cfg.on_extraction != OnExtraction.print:
            self.names = output_names(self.paths)
            output_dir = os.path.join(cfg.output_path, self.extractor.feature_type, self.extractor.model_name)
            self.store = OutputStore(output_dir, cfg.on_extraction.value)

    def is_done(self, path: str) -> bool:
        return self.store is not None and self.store.is_done(self.names[path], self.extractor.output_keys)

    def __call__(self) -> RunSummary:
        """Extracts every video and prints or saves its outputs. A failure is one line on stderr
        naming the file and the cause; the other videos go on."""
        summary = RunSummary()
        with tqdm(total=len(self.paths), unit="video", desc=self.extractor.feature_type) as bar:
            for result in self.extractor.extract_many(self.paths, self.is_done if self.store else None, progress=True):
                bar.update(1)
                if result.skipped:
                    summary.skipped += 1
                    continue
                if result.error is None:
                    try:
                        self._deliver(result)
                        summary.extracted += 1
                        continue
                    except OSError as error:
                        result.error = f"cannot save outputs: {error}"
                summary.failed += 1
                tqdm.write(f"error: {result.path}: {result.error}", file=sys.stderr)
        return summary

    def _deliver(self, result: VideoResult) -> None:
        if self.store is not None:
            self.store.save(self.names[result.path], result.outputs)
        else:
            tqdm.write(describe_outputs(result.path, result.outputs))
        if self.cfg.show_pred:
            predictions = describe_predictions(
                result.logits, result.outputs["timestamps_ms"], self.extractor.class_names()
            )
            tqdm.write(f"{result.path}: top-5 classes per window\n{predictions}")
