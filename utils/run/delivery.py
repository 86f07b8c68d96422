"""Where a run's videos go: with a saving on_extraction, to their destination under their output
names (utils/run/destinations.py), each claimed while it is in work (so that many processes share
one list), or else printed."""
import warnings
from typing import Optional, Union

from tqdm import tqdm

from video_features.utils.errors import OutputError, VideoFeaturesWarning
from video_features.utils.options import OnExtraction, Options
from video_features.utils.pipeline.video_in_flight import VideoResult
from video_features.utils.run.destinations import ParquetShards, PerVideoFiles, Skip
from video_features.utils.store.claims import Claims
from video_features.utils.store.outputs import OutputState
from video_features.utils.store.printing import describe_outputs, describe_predictions
from video_features.utils.video.remote import redact


class Delivery:
    def __init__(self, options: Options, names: dict[str, str], output_dir: str, settings: dict,
                 output_keys: list[str], class_names):
        """``names``: each saved video's output name; ``settings``: the record saved with its outputs;
        ``class_names()``: the labels show_pred prints."""
        self.names = names
        self.show_pred, self.class_names = options.show_pred, class_names
        self.destination: Optional[Union[PerVideoFiles, ParquetShards]] = None
        self.claims: Optional[Claims] = None
        self.replacing: set[str] = set()  # paths whose saved outputs were made with other settings
        if options.on_extraction == OnExtraction.save_parquet:
            self.destination = ParquetShards(output_dir, options, settings, self._holds)
        elif options.saving:
            self.destination = PerVideoFiles(output_dir, options.on_extraction, settings, output_keys, names.values())
        if self.destination is not None:
            self.claims = Claims(options.claim_stale_seconds, root=options.output_path)

    def claim_or_skip(self, path: str) -> Optional[Skip]:
        """Claims a video about to be read, or says why it is not to be read: DONE, or CLAIMED by a
        live process elsewhere. A video done is skipped without a claim (saved outputs never go
        away); one not done is checked again once claimed, as another process may have just finished
        it. OutputError when its saved outputs cannot be checked (the video fails with it). Without a
        destination every video is read."""
        if self.destination is None:
            return None
        name = self.names[path]
        if self.destination.state(name, claimed=False) == OutputState.DONE:
            return Skip.DONE
        claim = self.destination.claim_path(name)
        if not self.claims.take(claim):
            return Skip.CLAIMED
        try:
            state = self.destination.state(name, claimed=True)
        except OutputError:
            self.claims.release(claim)
            raise
        if state == OutputState.DONE:
            self.claims.release(claim)
            return Skip.DONE
        if state == OutputState.STALE:
            self.replacing.add(path)
        return None

    def _holds(self, name: str) -> bool:
        return self.claims.holds(self.destination.claim_path(name))

    def still_claimed(self, path: str) -> bool:
        """Whether this process still holds the video's claim: another process takes over a claim it
        judged stale (this one was paused, or could not refresh it), and the video is then its own."""
        return self.claims is None or self._holds(self.names[path])

    def deliver(self, result: VideoResult) -> list[VideoResult]:
        """Saves or prints a video's outputs (and its top classes with show_pred); returns the videos
        now saved for good, each failed (its error) or left to another process (skipped: CLAIMED)
        where so: this one, or with Parquet shards those of a shard just committed (none until then).
        BrokenPipeError when nobody reads the printed ones."""
        if self.destination is None:
            tqdm.write(describe_outputs(redact(result.path), result.outputs))
            finished = [result]
        else:
            finished = self.destination.add(self.names[result.path], result)
        if self.show_pred:
            predictions = describe_predictions(result.logits, result.outputs["timestamps_ms"], self.class_names())
            tqdm.write(f"{redact(result.path)}: top-5 classes per window\n{predictions}")
        return finished

    def leave_to_new_owner(self, result: VideoResult) -> None:
        warnings.warn(f"{redact(result.path)}: another process took its claim over (it judged it stale); "
                      "its outputs are left to that process, not saved", VideoFeaturesWarning)

    def release(self, path: str) -> None:
        if self.claims is not None and path in self.names:  # an unsupported input has no name
            self.claims.release(self.destination.claim_path(self.names[path]))

    def flush(self) -> list[VideoResult]:
        """Saves what is pending (commits the open shard) and returns those videos (see deliver)."""
        return self.destination.close() if self.destination is not None else []

    def close(self) -> list[VideoResult]:
        """At the end of a run, also a stopped one: what is pending is saved and returned (flush), then
        the claims of the videos not finished are given up."""
        finished = self.flush()
        for result in finished:
            if result.skipped is None:
                self.release(result.path)
        if self.claims is not None:
            self.claims.close()
        return finished
