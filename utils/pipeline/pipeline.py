"""The pipeline of an extractor: its decoding processes and the feed to its device, which live as
long as it does, and the extraction calls that use them (utils/pipeline/schedule.py)."""
import contextlib
import dataclasses
from typing import Iterable, Iterator, Mapping, Optional, Union

from video_features.utils.frames.device_feed import DeviceFeed
from video_features.utils.network.runner import Inference
from video_features.utils.pipeline.batches import Batches
from video_features.utils.pipeline.schedule import Schedule
from video_features.utils.pipeline.slot_returns import SlotReturns
from video_features.utils.pipeline.video_in_flight import VideoResult
from video_features.utils.progress import Progress
from video_features.utils.video.pool import DecoderPool
from video_features.utils.video.protocol import DecodeSettings


class Pipeline:
    def __init__(self, inference: Inference, settings: DecodeSettings, feature_type: str, batch_size: int = 1,
                 decode_workers: int = 1, decode_cores: int = 1, crop_reduce: str = "none",
                 keep_logits: bool = False, keep_partial: bool = False):
        """``settings``: what the decoding processes need; ``decode_cores``: the cores their FFmpeg
        threads share; ``crop_reduce``: "mean" averages the features of a window's crops (their logits
        stay per crop); ``keep_logits``: return the network's logits too (show_pred)."""
        self.inference = inference
        self.settings = dataclasses.replace(settings, max_segments=decode_workers)
        self.feature_type = feature_type
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.decode_cores = decode_cores
        self.crop_reduce = crop_reduce
        self.keep_logits = keep_logits
        self.keep_partial = keep_partial
        self.progress = Progress()  # of the extraction call under way, or the last one
        self._decoding: Optional[tuple[DecoderPool, DeviceFeed]] = None

    def extract_many(self, work: Iterable[Union[str, VideoResult]], progress: bool = False,
                     sizes: Optional[Mapping[str, int]] = None) -> Iterator[VideoResult]:
        """Yields one VideoResult per item of ``work`` as each finishes (with several decoding
        processes, in about the input order). An item is a video's path, or the result of a video the
        caller has already decided on (skipped, failed), passed on in its place; the work is pulled
        only as decoding processes become free, so that what the caller does for a video (claiming it)
        happens just before it is read. ``progress`` shows a bar over the windows of long videos;
        ``sizes``: the bytes of URLs where a listing gave them."""
        pool, feed = self._started()
        self.progress = Progress()
        batches = Batches(self.inference, feed, self.batch_size, self.crop_reduce, self.keep_logits)
        try:
            yield from Schedule(self, pool, batches, SlotReturns(pool, feed), work, progress, sizes).run()
        except BaseException:
            # stopped part-way (an error, Ctrl-C, a caller that stopped reading): the processes may still
            # be decoding its videos, so they stop now and the next call starts new ones; an error in
            # closing the feed (a device's sticky error) would only hide the first
            with contextlib.suppress(Exception):
                self.close()
            raise

    def _started(self) -> tuple[DecoderPool, DeviceFeed]:
        """The decoding processes and the feed: started by the first call, kept for the next ones."""
        if self._decoding is None:
            pool = DecoderPool(self.decode_workers, self.settings)
            try:
                p = self.settings.layout.preprocessing
                feed = DeviceFeed(self.inference.device, self.settings.layout, [d.buffer for d in pool.decoders],
                                  p.mean, p.std, p.bgr, self.inference.input_dtype)
            except BaseException:
                pool.close()
                raise
            self._decoding = (pool, feed)
        return self._decoding

    def close(self) -> None:
        """Stops the decoding processes and frees the feed; the next call starts them again."""
        if self._decoding is None:
            return
        pool, feed = self._decoding
        self._decoding = None
        try:
            feed.close()
        finally:
            pool.close()
