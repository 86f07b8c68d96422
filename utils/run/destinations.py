"""Where a run saves its videos' outputs, behind one interface the delivery uses: per-video files
(``save_numpy``, ``save_pickle``: a video is saved for good at once), or Parquet shards
(``save_parquet``: a video is saved for good when its shard is committed)."""
import os
from enum import Enum
from typing import Callable

from video_features.utils.errors import ShardWriteError
from video_features.utils.options import OnExtraction, Options
from video_features.utils.pipeline.video_in_flight import VideoResult
from video_features.utils.store.files import remove_stale_temporary_files
from video_features.utils.store.outputs import OutputState, OutputStore
from video_features.utils.store.shard_index import ShardIndex
from video_features.utils.store.shards import ShardWriter

CLAIMS_FOLDER = ".claims"  # beside shards, hidden: readers of the folder's files must not meet them


class Skip(str, Enum):
    """Why a video is not read, or its outputs not saved."""

    DONE = "done"  # its outputs, made with these settings, are saved
    CLAIMED = "claimed"  # a live process elsewhere is extracting it (or took its claim over)


class PerVideoFiles:
    def __init__(self, output_dir: str, on_extraction: OnExtraction, settings: dict, keys: list[str], names):
        self.store, self.settings, self.keys = OutputStore(output_dir, on_extraction.value), settings, keys
        remove_stale_temporary_files({os.path.dirname(self.store.path(name, "")) for name in names})

    def claim_path(self, name: str) -> str:
        return self.store.claim_path(name)

    def state(self, name: str, claimed: bool) -> OutputState:
        return self.store.state(name, self.keys, self.settings)

    def add(self, name: str, result: VideoResult) -> list[VideoResult]:
        """Saves the outputs; returns the videos now saved for good (or failed), this one."""
        try:
            self.store.save(name, result.outputs, self.settings)
        except OSError as error:
            result.error = f"cannot save outputs: {error}"
        return [result]

    def close(self) -> list[VideoResult]:
        return []


class ParquetShards:
    def __init__(self, output_dir: str, options: Options, settings: dict, holds: Callable[[str], bool]):
        """``holds(name)``: whether this process still holds the video's claim (checked at a commit)."""
        self.output_dir, self.settings, self.holds = output_dir, settings, holds
        remove_stale_temporary_files([output_dir])
        self.index = ShardIndex(output_dir)  # the committed shards' footers: what is done
        self.writer = ShardWriter(output_dir, settings, options.shard_videos, shard_seconds=options.shard_seconds)
        self.pending: dict[str, VideoResult] = {}  # name -> its result, until its shard is committed

    def claim_path(self, name: str) -> str:
        return os.path.join(self.output_dir, CLAIMS_FOLDER, f"{name}.claim")

    def state(self, name: str, claimed: bool) -> OutputState:
        """Whether a committed shard holds the video, made with these settings; once it is claimed,
        after reading the shards other processes committed since the start."""
        if claimed:
            self.index.refresh()
        return self.index.status(name, self.settings)

    def add(self, name: str, result: VideoResult) -> list[VideoResult]:
        """Appends the video to the open shard; when the shard is due, commits it and returns its
        videos, now saved for good (see ``commit``)."""
        try:
            self.writer.append(name, result.path, result.outputs, result.logits)
        except ValueError as error:  # arrays that do not fit the shard's columns
            result.error = f"cannot save outputs: {error}"
            return [result]
        self.pending[name] = result
        return self.commit() if self.writer.due else []

    def commit(self) -> list[VideoResult]:
        """Commits the open shard; returns its videos: saved for good, failed (their error says why),
        or left out (skipped: CLAIMED), as another process took their claims over meanwhile."""
        lost = [name for name in self.pending if not self.holds(name)]
        try:
            self.writer.commit(discard=lost)
        except ShardWriteError as error:
            for name in error.names:
                if name in self.pending:
                    self.pending[name].error = f"cannot save outputs: {error}"
        for name in lost:
            self.pending[name].skipped = Skip.CLAIMED
        finished, self.pending = list(self.pending.values()), {}
        return finished

    def close(self) -> list[VideoResult]:
        """Commits what is pending: at the end of a run, and when it is stopped."""
        return self.commit() if self.pending else []
