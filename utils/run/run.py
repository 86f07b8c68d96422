"""A run over a list of videos, as the command line does it: its inputs (utils/run/inputs.py), the
extractor, where each video goes (utils/run/delivery.py) and what is reported (utils/run/report.py)."""
import contextlib
import dataclasses
import os
import tempfile
import threading
import warnings
from typing import Iterator, Optional, Union

from video_features.utils.errors import OutputError, SettingsError, VideoError, VideoFeaturesWarning
from video_features.utils.extractor import Extractor
from video_features.utils.machine import MachineShare
from video_features.utils.options import Options
from video_features.utils.pipeline.video_in_flight import VideoResult
from video_features.utils.run.delivery import Delivery
from video_features.utils.run.destinations import Skip
from video_features.utils.run.inputs import listed_videos, missing_videos, shard, unsupported
from video_features.utils.run.report import Outcome, Report, RunSummary
from video_features.utils.store.names import output_names
from video_features.utils.store.runlog import RunLog
from video_features.utils.video.reader import check_input


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


def start_run_log(options: Options, device: str, machine: dict, settings: dict) -> RunLog:
    try:
        return RunLog(options.output_path, options.as_record(), device, f"{options.shard_id}/{options.num_shards}",
                      machine, settings)
    except OSError as error:  # the disk filled up since check_writable, or .runs cannot be made
        where = f": {error.filename}" if error.filename else ""
        raise SettingsError(f"output_path={options.output_path}: cannot write the run log "
                            f"({error.strerror or error}{where})") from None


class Run:
    """One process's run over its share of the videos."""

    def __init__(self, options: Options, share: Optional[MachineShare] = None):
        """``share``: this job's share of its machine (utils/machine.py), for a sweep's job."""
        self.options = options
        listed, self.sizes = listed_videos(options)
        self.paths = shard(listed, options.shard_id, options.num_shards)
        self._missing_check = threading.Thread(target=self._say_missing, name="missing videos", daemon=True)
        self._missing_check.start()
        names = {}
        if options.saving:
            # of the whole list, so that every shard refuses a clash alike
            names = output_names([path for path in listed if not unsupported(path)], options.input_root)
            check_writable(options.output_path)
        self.extractor = Extractor(machine_share=share, **dataclasses.asdict(options))
        extractor = self.extractor
        self.delivery = Delivery(options, {path: names[path] for path in self.paths if path in names},
                                 extractor.recipe.output_dir(options.output_path), extractor.settings(),
                                 extractor.output_keys, extractor.class_names)
        log = None
        if options.saving:
            log = start_run_log(options, str(extractor.device), extractor.machine(), extractor.settings())
        self.report = Report(log)

    def _say_missing(self) -> None:
        line = missing_videos(self.paths)
        if line:
            warnings.warn(line, VideoFeaturesWarning)

    @property
    def summary(self) -> RunSummary:
        """What the run has done so far (also when it was stopped)."""
        return self.report.summary

    def __call__(self) -> RunSummary:
        """Extracts every video and prints or saves its outputs. A failure is one line on stderr
        naming the file and the cause; the other videos go on."""
        options = self.options
        with self.report.showing_progress(len(self.paths), self.extractor.feature_type, options.quiet,
                                          options.progress_seconds, lambda: self.extractor.progress) as bars:
            # closed on the way out, also when interrupted while saving: the decoding processes stop
            # before close() gives up the claims, so no video is claimed after that
            work = self.extractor.extract_many(self._work(), progress=bars, sizes=self.sizes)
            with contextlib.closing(work) as results:
                for result in results:
                    self._account(result)
            self._finish(self.delivery.flush())  # the last shard: its videos are done once it is committed
        self._missing_check.join()  # its line before the summary's
        return self.summary

    def _work(self) -> Iterator[Union[str, VideoResult]]:
        """The videos to read, each claimed as the pipeline pulls it, or in their place the result of
        a video not to be read: unreadable, done, or claimed by another process."""
        for path in self.paths:
            reason = unsupported(path)
            if reason:
                yield VideoResult(path, error=reason)
                continue
            try:
                check_input(path)  # before a claim: a missing video gets no claim, nor its folder
                skip = self.delivery.claim_or_skip(path)
            except VideoError as error:
                yield VideoResult(path, error=str(error))
                continue
            except OSError as error:  # e.g. a claim that cannot be written: for this video alone
                yield VideoResult(path, error=f"cannot claim it: {error.strerror}: {error.filename}")
                continue
            except OutputError as error:
                yield VideoResult(path, error=f"cannot check its saved outputs: {error}")
                continue
            yield VideoResult(path, skipped=skip) if skip else path

    def _account(self, result: VideoResult) -> None:
        """Delivers a video's result (a shard's videos are finished when it is committed) and reports it."""
        if result.skipped is None and result.error is None:
            if not self.delivery.still_claimed(result.path):
                self.delivery.leave_to_new_owner(result)
                result.skipped = Skip.CLAIMED
            else:  # BrokenPipeError: the printed features' reader has gone, the run stops (utils/cli/app.py)
                self._finish(self.delivery.deliver(result))
                return
        self._finish([result])

    def _finish(self, results: list[VideoResult]) -> None:
        for result in results:
            if result.skipped is not None:
                self.report.video(result, Outcome.CLAIMED if result.skipped == Skip.CLAIMED else Outcome.SKIPPED)
                continue
            self.delivery.release(result.path)
            outcome = Outcome.EXTRACTED if result.error is None else Outcome.FAILED
            self.report.video(result, outcome, replaced=result.path in self.delivery.replacing)

    def close(self, exit_code: int) -> None:
        """The end of the run, also an interrupted one: the decoding processes stop, then the claims
        of unfinished videos are given up."""
        self.extractor.close()
        self._finish(self.delivery.close())
        self.report.end(exit_code)
