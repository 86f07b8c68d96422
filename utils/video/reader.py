"""Streaming video decoding with PyAV: the whole video, or a segment of it, at its own rate or resampled.

Frames come out one at a time, so memory does not grow with the video's length. Resampling to
``extraction_fps`` pushes the decoded frames through FFmpeg's own ``fps`` filter in this process,
so the frames kept are exactly those ``ffmpeg -filter:v fps=fps=X`` keeps. With ``only_used`` the
H.264/HEVC frames no window uses and no other frame references are not decoded (numbering.py). A
segment (segments.py) starts at a key frame and numbers its frames as a decode of the whole video
does. What a read owned is counted, so that truncation and damage can be told (completeness.py).
"""
import os
import stat
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator, Optional

import av

from video_features.utils.errors import VideoError, VideoFeaturesWarning
from video_features.utils.video.completeness import Completeness, DecodeStats
from video_features.utils.video.frame_index import FrameIndex, Source, packets_from, read_index
from video_features.utils.video.numbering import NONREF_CODECS, IndexedDecoder, NumberingMismatch
from video_features.utils.video.remote import RemoteFile, is_remote, open_remote, protocol_of, redact
from video_features.utils.video.remote_retry import DEFAULT_POLICY, Policy
from video_features.utils.video.segments import Segment, whole


@dataclass
class Decoded:
    """A frame as decoding gives it, before any conversion."""

    index: int
    time: float
    frame: Optional[av.VideoFrame]  # None: skipped, never decoded
    wanted: bool  # a window uses it, or it is the video's last frame (which pads a short video)


def check_input(path: str) -> None:
    """VideoError, before anything opens it, for a path that is not a readable regular file (a FIFO
    or a device would block the reading process forever), or an empty one. A URL's faults are found
    when it is opened (utils/video/remote.py)."""
    if protocol_of(path) is not None:
        return
    try:
        status = os.stat(path)
        mode = status.st_mode
    except FileNotFoundError:
        raise VideoError("file not found") from None
    except OSError as error:
        raise VideoError(f"cannot read: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise VideoError("is a directory, not a video file")
    if not stat.S_ISREG(mode):
        raise VideoError("not a regular file (a FIFO, socket or device), so it is not read")
    if status.st_size == 0:
        raise VideoError("the file is empty (0 bytes)")


def _describe(error: Exception) -> str:
    """PyAV errors carry the path and an errno prefix; keep only the cause."""
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


def _rescale_nearest(pts: int, source: Fraction, target: Fraction) -> int:
    """``pts`` from one time base to another, rounded to nearest, halves away from zero (FFmpeg's
    AV_ROUND_NEAR_INF, which the fps filter uses)."""
    exact = pts * source / target
    rounded = int(abs(exact) + Fraction(1, 2))
    return rounded if exact >= 0 else -rounded


class VideoReader:
    """Decodes the first video stream of a file, optionally resampled to ``extraction_fps``."""

    def __init__(self, path: str, extraction_fps: Optional[float] = None, codec_threads: int = 0,
                 size: Optional[int] = None, policy: Policy = DEFAULT_POLICY, file: Optional[RemoteFile] = None):
        """``codec_threads``: FFmpeg's decoding threads for this file; 0 lets FFmpeg pick (one per core).
        A URL (``is_remote``) is read through a file object in ranged requests; ``size``: its bytes
        where known, which saves asking for them; ``policy``: how hard its reads try; ``file``: the
        URL's file already opened (utils/video/open_ahead.py), which the reader then owns."""
        self.path, self.name = path, redact(path)  # name: what messages may show of it
        check_input(path)
        self._file = file or (open_remote(path, size, policy) if is_remote(path) else None)
        self.size = self._file.size if self._file is not None else None
        try:
            self._container = av.open(self._file if self._file is not None else path)
        except av.error.FFmpegError as error:
            self._close_file()
            if self._file is not None and self._file.failure is not None:  # the network's fault, not the file's
                raise self._file.failure from None
            raise VideoError(f"cannot open: {_describe(error)}") from error
        if not self._container.streams.video:
            self._container.close()
            raise VideoError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = codec_threads
        self._extraction_fps = extraction_fps
        self.undecoded_frames = 0
        native = self._stream.average_rate or self._stream.guessed_rate
        self._frame_seconds = 1 / float(native) if native else 0.0
        if extraction_fps:
            self.fps = float(Fraction(str(extraction_fps)))
        elif native:
            self.fps = float(native)
        else:
            self.close()
            raise VideoError("the stream declares no frame rate; set extraction_fps")
        self.time_base = Fraction(self._stream.time_base)
        # The ffmpeg CLI shifts timestamps so the file starts at 0; do the same.
        start = self._container.start_time
        self._start_seconds = start / av.time_base if start is not None else 0.0
        self.shift = round(self._start_seconds / self.time_base)
        self.completeness = Completeness(self._declared_video_end(), self._frame_seconds)
        duration = self._container.duration
        # the video's own where the file gives it: an audio track can outlast the video
        self.duration = self.completeness.video_end or (duration / av.time_base if duration else None)
        self.stats = DecodeStats()  # of the last read
        self._index: Optional[FrameIndex] = None
        self._indexed = False

    def _declared_video_end(self) -> Optional[float]:
        """Where the file says its video stream ends, in seconds from its start; None if it does not say.

        The stream's own duration where the demuxer gives one (MP4/MOV and AVI headers; MPEG-TS
        estimates it from the last timestamps); for Matroska/WebM, the DURATION tag ffmpeg and
        mkvmerge write for each track, read as an end time (ffmpeg writes one; where a writer gives
        the track's length instead, this reads an earlier end, so no false alarm); the container's
        duration, read likewise, only for a file with no other stream: audio may outlast the video.
        """
        stream, start = self._stream, self._start_seconds
        if stream.duration:
            begin = stream.start_time * stream.time_base - start if stream.start_time is not None else 0
            return float(begin + stream.duration * stream.time_base)
        tag = next((value for key, value in stream.metadata.items() if key.upper() == "DURATION"), None)
        if tag:
            try:
                hours, minutes, seconds = tag.split(":")
                end = int(hours) * 3600 + int(minutes) * 60 + float(seconds) - start
            except ValueError:
                end = 0
            if end > 0:
                return end
        if len(self._container.streams) == 1 and self._container.duration:
            end = self._container.duration / av.time_base - start
            return end if end > 0 else None
        return None

    @property
    def estimated_frames(self) -> Optional[int]:
        return round(self.duration * self.fps) if self.duration else None

    @property
    def skippable(self) -> bool:
        """Whether frames no window uses can be left undecoded (H.264 and HEVC at the native rate)."""
        return not self._extraction_fps and self._stream.codec_context.name in NONREF_CODECS

    def index(self) -> Optional[FrameIndex]:
        """The stream's frame index (read once: a pass over the file's packets); None when its
        timestamps cannot number the frames."""
        if not self._indexed:
            self._index, self._indexed = read_index(self.source, 0), True
        return self._index

    @property
    def source(self) -> Source:
        """The file again, for a second reader of its packets in this thread: its path, or an opener of
        a second file object over the URL's blocks this reader keeps."""
        return self._file.another if self._file is not None else self.path

    def close(self) -> None:
        self._container.close()
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def decoded(self, wanted: Callable[[int], bool] = lambda index: True, only_used: bool = False,
                segment: Optional[Segment] = None) -> Iterator[Decoded]:
        """The frames of ``segment`` (default: the whole video) in order, not converted; ``wanted`` is
        true where a window uses the frame (the last frame is always wanted: it pads a video shorter
        than one window). ``self.stats`` then holds what the read owned, for the truncation and damage
        checks (``Completeness.problems``, after the video's last segment).

        ``only_used``: frames not wanted that no other frame references are not decoded at all
        (H.264 and HEVC at the native rate; ``undecoded_frames`` counts them). Their index and time
        are the same as when every frame is decoded; where the stream does not allow that,
        ``NumberingMismatch`` is raised, possibly after some frames have been given."""
        self.stats = DecodeStats()
        if segment is None and only_used and self.skippable and self.index() is not None:
            segment = whole(self.index())
        if self._extraction_fps:
            source = self._resampled(segment)
        elif segment is not None and segment.pts is not None:
            source = self._numbered(segment, wanted, only_used)
        else:
            source = self._in_decoder_order()
        keep_last = segment is None or segment.last
        previous = None
        try:
            for index, seconds, frame in source:
                if previous is not None:
                    yield Decoded(*previous, wanted(previous[0]))
                previous = (index, seconds, frame)
        except av.error.FFmpegError as error:
            at = previous[0] + 1 if previous else 0
            message = f"decoding failed at frame {at}: {_describe(error)}"
            if not keep_last or previous is None:
                raise VideoError(message) from error
            # the end of what can be read, as a cut-off file's last packet is (whether the decoder says
            # so depends on its thread count): the completeness check tells truncation from damage
            self.stats.decode_error = message
        if self._file is not None and self._file.failure is not None:  # the network failed, not the file
            raise self._file.failure
        if previous is None:
            raise VideoError("no video frames could be decoded")
        if keep_last and previous[2] is None:
            raise NumberingMismatch("the last frame was skipped")
        yield Decoded(*previous, keep_last or wanted(previous[0]))

    def _owned(self, segment: Optional[Segment], seconds: Optional[float]) -> bool:
        if segment is None or seconds is None:
            return True
        return segment.owned_from <= seconds and (segment.owned_until is None or seconds < segment.owned_until)

    def _count(self, segment: Optional[Segment], seconds: Optional[float], duration: float, corrupt: bool) -> None:
        """Notes a source frame (decoded or skipped) for the truncation and damage checks, if the read owns it."""
        if self._owned(segment, seconds):
            self.stats.add(seconds, duration or self._frame_seconds, corrupt)

    def _in_decoder_order(self):
        """(index, seconds, frame) of every frame, numbered in the order the decoder gives them.
        Timestamps that go back (a stream whose clock restarts, e.g. concatenated MPEG-TS) are made to
        increase from the frame order, with a warning."""
        tick = float(self.time_base)  # a Fraction per frame costs 3 us
        last_seconds, warned = None, False
        for index, frame in enumerate(self._container.decode(self._stream)):
            if frame.pts is not None:
                frame.pts -= self.shift
            seconds = None if frame.pts is None else frame.pts * tick
            self._count(None, seconds, frame.duration * tick, frame.is_corrupt)
            time = float(frame.pts * frame.time_base) if frame.pts is not None else index / self.fps
            if last_seconds is not None and time <= last_seconds:
                if not warned:
                    warnings.warn(f"{self.name}: timestamps go back at frame {index}; "
                                  "times from there on follow the frame order", VideoFeaturesWarning)
                    warned = True
                time = last_seconds + (self._frame_seconds or 1 / self.fps)
            last_seconds = time
            yield index, time, frame

    def _numbered(self, segment: Segment, wanted: Callable[[int], bool], only_used: bool):
        """(position, seconds, frame or None) of the segment's frames, numbered by the index."""
        decoder = IndexedDecoder(self._container, self._stream, segment.pts, segment.cut.position,
                                 segment.first_frame, segment.until, self.shift, wanted, only_used,
                                 keep_last=segment.last)
        tick = float(self.time_base)
        try:
            for position, seconds, frame in decoder.frames(packets_from(self._container, self._stream, segment.cut)):
                if frame is None:
                    self._count(segment, seconds, 0.0, False)
                else:
                    self._count(segment, seconds, frame.duration * tick, frame.is_corrupt)
                yield position, seconds, frame
        finally:
            self.undecoded_frames += decoder.skipped

    def _resampled(self, segment: Optional[Segment]):
        """(index, seconds, frame) of FFmpeg's fps filter's output frames (of the segment's, if given)."""
        graph = av.filter.Graph()
        source = graph.add_buffer(template=self._stream)
        fps = graph.add("fps", f"fps={self._extraction_fps}")
        sink = graph.add("buffersink")
        source.link_to(fps)
        fps.link_to(sink)
        graph.configure()
        cut = segment.cut if segment is not None and not segment.cut.at_start else None
        first, until = (segment.first_frame, segment.until) if segment is not None else (0, None)
        owned_until = segment.owned_until if segment is not None else None
        tick = float(self.time_base)
        outputs = 0  # output frames pulled so far, the skipped ones before ``first`` included

        def drain():
            nonlocal outputs
            while True:
                try:
                    frame = graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    return
                if outputs == first and cut is not None:  # the cut's frame must be this frame's source or before it
                    if _rescale_nearest(cut.pts - self.shift, self.time_base, Fraction(frame.time_base)) > frame.pts:
                        raise NumberingMismatch("the segment's key frame is after its first resampled frame")
                if first <= outputs and (until is None or outputs < until):
                    yield outputs, float(frame.pts * frame.time_base), frame
                outputs += 1

        for index, frame in enumerate(self._source_frames(segment) if cut is not None else self._decoded()):
            if frame.pts is None:  # raw streams without timestamps: assume a constant rate
                frame.pts = round(index / self._stream.average_rate / self._stream.time_base)
            seconds = frame.pts * tick
            self._count(segment, seconds, frame.duration * tick, frame.is_corrupt)
            if index == 0 and cut is not None:
                # The fps filter's grid starts at its first frame's time: give it the whole video's first
                # time, on this frame (the output frames before the segment's first are not kept).
                own_pts, frame.pts = frame.pts, segment.origin_pts - self.shift
                graph.push(frame)
                frame.pts = own_pts
            graph.push(frame)
            yield from drain()
            # a segment stops once it has its frames and has counted the source frames it owns
            if until is not None and outputs >= until and owned_until is not None and seconds >= owned_until:
                return
        if until is not None:  # the filter would repeat the last frame it has up to the segment's end
            raise NumberingMismatch("the segment's source frames ended before its last resampled frame")
        graph.push(None)
        yield from drain()

    def _source_frames(self, segment: Segment):
        """A later segment's decoded frames from its key frame on, timestamps shifted; each must be the
        index's next frame (NumberingMismatch otherwise: the decoder dropped or added one)."""
        decoder = IndexedDecoder(self._container, self._stream, segment.pts, segment.cut.position,
                                 segment.cut.position, None, self.shift, lambda position: True, only_used=False,
                                 keep_last=segment.last)
        for _, _, frame in decoder.frames(packets_from(self._container, self._stream, segment.cut)):
            frame.pts -= self.shift
            yield frame

    def _decoded(self):
        """Every decoded frame of the whole video, timestamps shifted as the ffmpeg program shifts them."""
        codec = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            if not packet.size:
                continue
            for frame in codec.decode(packet):
                if frame.pts is not None:
                    frame.pts -= self.shift
                yield frame
        for frame in codec.decode(None):
            if frame.pts is not None:
                frame.pts -= self.shift
            yield frame
