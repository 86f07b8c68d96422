"""Windows on their way through the network: cut windows wait for a full batch of ``batch_size``
(which may span videos), batches run on the device without the main thread waiting for them, and
features come back to their videos as the device finishes them."""
import collections

from video_features.utils.frames.device_feed import DeviceFeed
from video_features.utils.frames.windows import Window
from video_features.utils.network.runner import Inference
from video_features.utils.pipeline.video_in_flight import VideoInFlight


class Batches:
    def __init__(self, inference: Inference, feed: DeviceFeed, batch_size: int, crop_reduce: str, keep_logits: bool):
        """``crop_reduce``: "mean" averages the features of a window's crops (their logits stay per
        crop); ``keep_logits``: bring the network's logits back too (show_pred)."""
        self.inference, self.feed = inference, feed
        self.batch_size, self.crop_reduce, self.keep_logits = batch_size, crop_reduce, keep_logits
        self.waiting: list[tuple[VideoInFlight, Window]] = []
        self.running: collections.deque = collections.deque()  # (batch, Pending) of batches run on the device

    def add(self, video: VideoInFlight, windows: list[Window]) -> None:
        self.waiting += [(video, window) for window in windows]

    def drop(self, video: VideoInFlight) -> None:
        """Forgets the windows of a video given up that have not run yet."""
        self.waiting = [(v, w) for v, w in self.waiting if v is not video]

    def holds(self, video: VideoInFlight) -> bool:
        """Whether some of the video's windows are still on the device."""
        return any(v is video for batch, _ in self.running for v, _ in batch)

    def run_full(self) -> None:
        while len(self.waiting) >= self.batch_size:
            self._run(self.waiting[:self.batch_size])
            self.waiting = self.waiting[self.batch_size:]

    def run_rest(self) -> None:
        """The last batch, however short: nothing more is coming."""
        if self.waiting:
            self._run(self.waiting)
            self.waiting = []

    def finish(self, wait: bool) -> int:
        """Hands the features of the batches the device has finished (with ``wait``: of all of them)
        to their videos; returns how many windows that was."""
        windows = 0
        while self.running and (wait or self.running[0][1].ready()):
            batch, pending = self.running.popleft()
            features, logits = pending.arrays()
            for row, (video, window) in enumerate(batch):
                if video.error is None:
                    video.record(window, features[row], None if logits is None else logits[row])
            windows += len(batch)
        return windows

    def _run(self, batch: list[tuple[VideoInFlight, Window]]) -> None:
        self.inference.run(lambda: self._run_on_device(batch), self.batch_size)

    def _run_on_device(self, batch: list[tuple[VideoInFlight, Window]]) -> None:
        inference = self.inference
        rows = self.batch_size if inference.compiled else len(batch)
        clips = inference.batch([frame for _, window in batch for frame in window.frames], len(batch), rows)
        multi_crop = clips.dim() == 6  # (B, crops, C, T, h, w): B windows run as B x crops clips
        features, logits = inference(clips.flatten(0, 1) if multi_crop else clips)
        if multi_crop:  # back to one row per window: (B, crops, D) and (B, crops, classes)
            features, logits = (output.unflatten(0, clips.shape[:2]) for output in (features, logits))
            if self.crop_reduce == "mean":
                features = features.float().mean(dim=1)
        logits = logits[: len(batch)] if self.keep_logits else None
        self.running.append((batch, self.feed.to_host(features[: len(batch)], logits)))
