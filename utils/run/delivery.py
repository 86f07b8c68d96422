"""Where a run's videos go: with a saving on_extraction, into the store under their output names,
each claimed while it is in work (so that many processes share one list), or else printed."""
import os
import warnings
from enum import Enum
from typing import Optional

from tqdm import tqdm

from video_features.utils.errors import OutputError, VideoFeaturesWarning
from video_features.utils.options import Options
from video_features.utils.pipeline.video_in_flight import VideoResult
from video_features.utils.store.claims import Claims
from video_features.utils.store.files import remove_stale_temporary_files
from video_features.utils.store.outputs import OutputState, OutputStore
from video_features.utils.store.printing import describe_outputs, describe_predictions


class Skip(str, Enum):
    """Why a video is not read."""

    DONE = "done"  # its outputs, made with these settings, are saved
    CLAIMED = "claimed"  # a live process elsewhere is extracting it


class Delivery:
    def __init__(self, options: Options, names: dict[str, str], output_dir: str, settings: dict,
                 output_keys: list[str], class_names):
        """``names``: each saved video's output name; ``settings``: the record saved beside its
        outputs; ``class_names()``: the labels show_pred prints."""
        self.names, self.settings, self.output_keys = names, settings, output_keys
        self.show_pred, self.class_names = options.show_pred, class_names
        self.store: Optional[OutputStore] = None
        self.claims: Optional[Claims] = None
        self.replacing: set[str] = set()  # paths whose saved outputs were made with other settings
        if options.saving:
            self.store = OutputStore(output_dir, options.on_extraction.value)
            remove_stale_temporary_files({os.path.dirname(self.store.path(name, "")) for name in names.values()})
            self.claims = Claims(options.claim_stale_seconds, root=options.output_path)

    def claim_or_skip(self, path: str) -> Optional[Skip]:
        """Claims a video about to be read, or says why it is not to be read: DONE, or CLAIMED by a
        live process elsewhere. OutputError when its saved outputs cannot be checked (the video fails
        with it). Without a store every video is read."""
        if self.store is None:
            return None
        name = self.names[path]
        claim = self.store.claim_path(name)
        if not self.claims.take(claim):
            return Skip.CLAIMED
        try:
            state = self.store.state(name, self.output_keys, self.settings)
        except OutputError:
            self.claims.release(claim)
            raise
        if state == OutputState.DONE:
            self.claims.release(claim)
            return Skip.DONE
        if state == OutputState.STALE:
            self.replacing.add(path)
        return None

    def still_claimed(self, path: str) -> bool:
        """Whether this process still holds the video's claim: another process takes over a claim it
        judged stale (this one was paused, or could not refresh it), and the video is then its own."""
        return self.claims is None or self.claims.holds(self.store.claim_path(self.names[path]))

    def deliver(self, result: VideoResult) -> None:
        """Saves or prints a video's outputs (and its top classes with show_pred); OSError when they
        cannot be saved, BrokenPipeError when nobody reads the printed ones."""
        if self.store is not None:
            self.store.save(self.names[result.path], result.outputs, self.settings)
        else:
            tqdm.write(describe_outputs(result.path, result.outputs))
        if self.show_pred:
            predictions = describe_predictions(result.logits, result.outputs["timestamps_ms"], self.class_names())
            tqdm.write(f"{result.path}: top-5 classes per window\n{predictions}")

    def leave_to_new_owner(self, result: VideoResult) -> None:
        warnings.warn(f"{result.path}: another process took its claim over (it judged it stale); "
                      "its outputs are left to that process, not saved", VideoFeaturesWarning)

    def release(self, path: str) -> None:
        if self.claims is not None and path in self.names:  # an unsupported input has no name
            self.claims.release(self.store.claim_path(self.names[path]))

    def close(self) -> None:
        """Gives up the claims of the videos not finished."""
        if self.claims is not None:
            self.claims.close()
