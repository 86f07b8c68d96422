"""One extraction call's schedule: which decoding process does what, and what each message means.

The main thread hands each idle decoding process a segment of a video already opened, or else the
next video it pulls from the caller's work (so that a caller's claim on a video is taken only when
the video is about to be read; after a URL, one more: the process opens its URL ahead). A long video
is cut into segments of whole windows that several processes decode at once; their windows are put
back in order (utils/pipeline/video_in_flight.py). Each slot of frames is preprocessed on the device
in one go and cut into windows; full batches run through the network (utils/pipeline/batches.py). A
failure is reported for its video alone.
"""
import dataclasses
import os
import warnings
from collections import deque
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Optional, Union

from tqdm import tqdm

from video_features.utils.errors import VideoError, VideoFeaturesWarning
from video_features.utils.frames.windows import WindowAssembler
from video_features.utils.pipeline.batches import Batches
from video_features.utils.pipeline.slot_returns import SlotReturns
from video_features.utils.pipeline.video_in_flight import VideoInFlight, VideoResult
from video_features.utils.progress import Progress
from video_features.utils.video.pool import DecoderPool, decoding_threads
from video_features.utils.video.protocol import (
    DecodeSegment,
    DecodeWhole,
    Died,
    Failed,
    FromDecoder,
    Opened,
    OpenVideo,
    SegmentDone,
    SlotFilled,
    Task,
    Warned,
)
from video_features.utils.video.reader import check_input
from video_features.utils.video.remote import is_remote, redact

if TYPE_CHECKING:
    from video_features.utils.pipeline.pipeline import Pipeline

LONG_VIDEO_WINDOWS = 20  # videos with more windows get their own progress bar


class Schedule:
    def __init__(self, pipeline: "Pipeline", pool: DecoderPool, batches: Batches, slots: SlotReturns,
                 work: Iterable[Union[str, VideoResult]], progress: bool, sizes: Optional[Mapping[str, int]] = None):
        self.pipeline, self.pool, self.batches, self.slots = pipeline, pool, batches, slots
        self.work = iter(work)
        self.sizes = sizes or {}  # bytes of the URLs a listing gave: their readers need not ask
        self.progress = progress
        self.pulled = 0  # videos pulled from the work so far: the next one's number
        self.paths: dict[int, str] = {}
        self.ready: deque[Task] = deque()  # segments and videos to decode whole, served first
        self.reserved: dict[int, OpenVideo] = {}  # process -> the video it is given next (see _with_next)
        self.attempts: dict[int, int] = {}  # video -> its current attempt, while it is in work
        self.decoded_whole: dict[int, str] = {}  # video -> why it is decoded again in one piece
        self.videos: dict[int, VideoInFlight] = {}
        self.results: list[VideoResult] = []
        self.windows_done = 0  # through the network in this call
        self.windows_of_videos_done = 0

    def run(self) -> Iterator[VideoResult]:
        while True:
            self._hand_out()
            yield from self._take_results()
            if len(self.pool.idle()) == len(self.pool.decoders):  # nothing left to decode
                self.batches.run_rest()
                self._count(self.batches.finish(wait=True))
                self.slots.copied(wait=True)  # every slot free for the next call
                yield from self._take_results()
                self._publish_progress()
                return
            self.slots.copied(wait=True)  # no process waits for a slot while we wait for messages
            for worker, message in self.pool.receive(timeout=0.01 if self.batches.running else None):
                self._handle(worker, message)
            self.batches.run_full()
            self.slots.copied()
            self._count(self.batches.finish(wait=False))
            self._publish_progress()

    def _count(self, windows: int) -> None:
        self.windows_done += windows

    def _publish_progress(self) -> None:
        """A new snapshot of the progress, for a thread that reports it (utils/progress.py)."""
        reading = tuple((video.path, video.windows_done, max(video.windows_done, video.expected_windows or 0))
                        for video in self.videos.values())
        expected = self.windows_of_videos_done + sum(windows for _, _, windows in reading)
        self.pipeline.progress = Progress(self.pulled, expected, self.windows_done, reading)

    def _hand_out(self) -> None:
        """Gives every idle process a task: a segment or a video to decode whole first, else the next
        video; each task gets FFmpeg threads for its share of the cores among the tasks that then run."""
        idle = self.pool.idle()
        tasks = []
        for decoder in idle:
            task = (self._next_ready() or self.reserved.pop(decoder.number, None) or self._next_video()
                    or self._reserved_elsewhere(handed={given.number for given, _ in tasks}))
            if task is None:
                break
            tasks.append((decoder, self._with_next(decoder.number, task)))
        threads = decoding_threads(self.pipeline.decode_cores, len(self.pool.decoders) - len(idle) + len(tasks))
        for decoder, task in tasks:
            self.pool.assign(decoder, dataclasses.replace(task, threads=threads))

    def _next_ready(self) -> Optional[Task]:
        """The next segment or video to decode whole, unless its video was given up meanwhile."""
        while self.ready:
            task = self.ready.popleft()
            if self.attempts.get(task.video) == task.attempt:
                return task
        return None

    def _next_video(self) -> Optional[OpenVideo]:
        """The next video to read; results the work already holds (skipped or failed videos) and
        unreadable paths are reported at once."""
        for item in self.work:
            number, self.pulled = self.pulled, self.pulled + 1
            if isinstance(item, VideoResult):
                self.results.append(item)
                continue
            try:
                check_input(item)
            except VideoError as error:
                self.results.append(VideoResult(item, error=str(error)))
                continue
            self.paths[number], self.attempts[number] = item, 0
            return OpenVideo(number, 0, item, size=self.sizes.get(item))
        return None

    def _with_next(self, decoder: int, task: Task) -> Task:
        """After a URL, the next video is pulled ahead and reserved for the same process, which opens
        it while it decodes this one (utils/video/open_ahead.py): a request's latency does not stall it."""
        if not isinstance(task, OpenVideo) or decoder in self.reserved or not is_remote(task.path):
            return task
        following = self._next_video()
        if following is None:
            return task
        self.reserved[decoder] = following
        if not is_remote(following.path):
            return task
        return dataclasses.replace(task, next_url=following.path, next_size=following.size)

    def _reserved_elsewhere(self, handed: set[int]) -> Optional[OpenVideo]:
        """With no other work left, the first video reserved for a busy process: idle ones take it.
        Not one reserved in this hand-out (``handed``): the process would be told to drop its opening
        ahead before it is sent the task that starts it."""
        busy = [number for number in self.reserved if number not in handed]
        if not busy:
            return None
        decoder = min(busy, key=lambda number: self.reserved[number].video)
        self.pool.drop_opened_ahead(decoder)
        return self.reserved.pop(decoder)

    def _current(self, message) -> Optional[VideoInFlight]:
        """The video a message is about, unless the message is from an attempt given up since."""
        return self.videos.get(message.video) if self._live(message) else None

    def _live(self, message) -> bool:
        return self.attempts.get(message.video) == message.attempt

    def _handle(self, worker: int, message: FromDecoder) -> None:
        match message:
            case SlotFilled():
                self._slot_filled(worker, message)
            case Opened() if self._live(message):
                self._opened(message)
            case SegmentDone():
                self._segment_done(message)
            case Failed() if self._live(message):
                self._fail(message.video, message.error)
            case DecodeWhole() if self._live(message):
                self._decode_whole(message.video, message.reason)
            case Warned():
                warnings.warn(message.message, VideoFeaturesWarning)
            case Died():
                self.slots.forget(worker)
                self.pool.replace(worker)
                task = message.task
                if task is not None and self._live(task):
                    self._fail(task.video, f"the decoding process died (exit code {message.exit_code})")

    def _opened(self, message: Opened) -> None:
        path = self.paths[message.video]
        plan = self.pipeline.settings.plan
        assemblers = {s.number: WindowAssembler(plan, 1.0 / message.fps, s.first_window, s.end_window)
                      for s in message.segments}
        bar = None
        expected = plan.count(message.estimated_frames) if message.estimated_frames else None
        if self.progress and expected and expected >= LONG_VIDEO_WINDOWS:
            bar = tqdm(total=expected, desc=os.path.basename(redact(path)), unit="window", leave=False)
        boundaries = frozenset(s.next_first for s in message.segments if s.next_first is not None)
        self.videos[message.video] = VideoInFlight(
            path, message.attempt, message.fps, message.completeness, assemblers, bar, segments=len(message.segments),
            boundaries=boundaries, decoded_whole=self.decoded_whole.get(message.video), expected_windows=expected,
            fewer_segments=message.fewer_segments)
        for segment in message.segments[1:]:
            self.ready.append(DecodeSegment(message.video, message.attempt, path, segment, size=message.size))

    def _slot_filled(self, worker: int, message: SlotFilled) -> None:
        video = self._current(message)
        if video is None or video.error is not None:
            self.slots.unused(worker, message.slot)
            return
        preprocessed = None
        if message.images:
            feed = self.batches.feed
            try:
                preprocessed = self.pipeline.inference.run(
                    lambda: feed.preprocess_slot(worker, message.slot, message.images), self.pipeline.batch_size)
            finally:
                self.slots.preprocessed(worker, message.slot)
        else:
            self.slots.unused(worker, message.slot)
        self.batches.add(video, video.add(message, preprocessed))

    def _segment_done(self, message: SegmentDone) -> None:
        video = self._current(message)
        if video is None:
            return
        mismatch = video.mismatch(message.digests)
        if mismatch is not None:
            self._decode_whole(message.video, mismatch)
            return
        padded = video.segment_done(message.segment, message.stats, self.pipeline.keep_partial)
        if padded is not None:
            self.batches.add(video, [padded])
        if video.error is not None:
            self.batches.drop(video)

    def _fail(self, number: int, error: str) -> None:
        video = self.videos.get(number)
        if video is None:  # failed before it was opened
            del self.attempts[number]
            self.results.append(VideoResult(self.paths[number], error=error,
                                            decoded_whole=self.decoded_whole.pop(number, None)))
            return
        video.error = error
        self.batches.drop(video)

    def _decode_whole(self, number: int, reason: str) -> None:
        """Decode the video again in one piece, every frame: its frames could not be numbered first,
        or its segments did not give the frames of one decode."""
        self.decoded_whole[number] = reason
        video = self.videos.pop(number, None)
        if video is not None:
            video.close()
            self.batches.drop(video)
        self.attempts[number] += 1
        path = self.paths[number]
        self.ready.appendleft(OpenVideo(number, self.attempts[number], path, size=self.sizes.get(path)))

    def _take_results(self) -> Iterator[VideoResult]:
        """The results of skipped or failed videos, and of the videos whose every window is through."""
        for number, video in list(self.videos.items()):
            if video.done and not self.batches.holds(video):
                del self.videos[number], self.attempts[number]
                self.decoded_whole.pop(number, None)
                self.windows_of_videos_done += video.windows_done
                self.results.append(video.result(self.pipeline.feature_type))
        results, self.results = self.results, []
        yield from results
