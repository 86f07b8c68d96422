"""The decoding processes of a run (utils/video/worker.py), seen from the pipeline: started, given
tasks, listened to, given their slots back, and stopped.

Each process has a connection (a socket pair) and a buffer of shared memory holding its slots. A
process that dies (a crash in FFmpeg, the out-of-memory killer) is noticed when its connection
closes: its task is reported as failed and a new process takes its place. Closing kills them all at
once: a process stuck in a system call (a dead network mount) never holds up the end of a run.
"""
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection, wait
from typing import Optional

from video_features.utils.frames.slots import SLOTS, SlotLayout
from video_features.utils.video.protocol import (
    ENDS_TASK,
    DecodeSettings,
    Died,
    DropOpenedAhead,
    FromDecoder,
    Released,
    Task,
)


def _shared_buffer(size: int) -> tuple[int, mmap.mmap]:
    """A file descriptor of anonymous memory (passed to a child process) and its mapping here."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("video-features-slots")
    else:  # macOS: an unlinked temporary file
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


def resolve_decode_workers(value, device_type: str, cores: int) -> int:
    """'auto' -> 1 on a CPU, where the network needs every core; on a GPU one per core of this job's
    share but one (the main process's, which feeds the GPU), at most 16: one process cannot keep a
    GPU busy."""
    if value != "auto":
        return value
    return 1 if device_type == "cpu" else max(1, min(16, cores - 1))


def decoding_threads(cores: int, tasks_running: int) -> int:
    """FFmpeg's decoding threads for a task: the cores shared out among the tasks running at once, so
    that a short video alone, or the last videos of a run, use the cores that idle processes leave."""
    return max(1, cores // max(1, tasks_running))


class Decoder:
    """One decoding process."""

    def __init__(self, number: int, settings: DecodeSettings):
        self.number = number
        self.task: Optional[Task] = None  # None while idle
        self.buffer_fd, self.buffer = _shared_buffer(SLOTS * settings.layout.bytes)
        self.settings = settings
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "video_features.utils.video.worker", str(theirs.fileno()), str(self.buffer_fd)],
            pass_fds=(theirs.fileno(), self.buffer_fd),
            start_new_session=True,  # Ctrl-C reaches only the pipeline, which stops this process
        )
        theirs.close()
        self.connection = Connection(ours.detach())
        self.connection.send(self.settings)

    def send(self, message) -> None:
        self.connection.send(message)

    def restart(self) -> None:
        """A new process in place of one that died, with the same slots."""
        self.connection.close()
        self.process.wait()
        self.task = None
        self._start()

    def signal(self, number: int) -> None:
        """Signals the process and what it started (the ffmpeg program of fps_method=reencode)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, number)
            except ProcessLookupError:
                pass

    def close(self, deadline: float) -> None:
        """Ends the process, by ``deadline`` (time.monotonic) or killed, and frees its memory."""
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()
        self.connection.close()
        os.close(self.buffer_fd)
        try:
            self.buffer.close()
        except BufferError:
            pass  # views of it are still referenced (an exception's traceback): unmapped when they go


class DecoderPool:
    def __init__(self, count: int, settings: DecodeSettings):
        self.layout: SlotLayout = settings.layout
        self.decoders: list[Decoder] = []
        try:
            for number in range(count):
                self.decoders.append(Decoder(number, settings))
        except BaseException:
            self.close()
            raise

    def idle(self) -> list[Decoder]:
        return [decoder for decoder in self.decoders if decoder.task is None and not decoder.connection.closed]

    def assign(self, decoder: Decoder, task: Task) -> None:
        decoder.task = task
        decoder.send(task)

    def release(self, worker: int, slot: int) -> None:
        """Gives a slot back to its process."""
        decoder = self.decoders[worker]
        try:
            decoder.send(Released(slot))
        except OSError:
            pass  # it died: its replacement starts with every slot free

    def drop_opened_ahead(self, worker: int) -> None:
        """Tells a process that the video it opens ahead went to another."""
        try:
            self.decoders[worker].send(DropOpenedAhead())
        except OSError:
            pass  # it died: its replacement opened nothing ahead

    def receive(self, timeout: Optional[float] = None) -> list[tuple[int, FromDecoder]]:
        """(worker, message) of every message there is, waiting up to ``timeout`` (None: until one comes).
        A process whose message ends its task is idle again. A process that died gives a ``Died``
        message after its last ones: then ``replace`` it."""
        by_connection = {decoder.connection: decoder for decoder in self.decoders if not decoder.connection.closed}
        received = []
        for connection in wait(list(by_connection), timeout):
            decoder = by_connection[connection]
            try:
                while connection.poll():
                    message = connection.recv()
                    if isinstance(message, ENDS_TASK):
                        decoder.task = None
                    received.append((decoder.number, message))
            except (EOFError, OSError):
                connection.close()
                received.append((decoder.number, Died(decoder.number, decoder.task, decoder.process.wait())))
        return received

    def replace(self, worker: int) -> None:
        """A new process in place of one that died, with the same slots, all of them free."""
        self.decoders[worker].restart()

    def close(self) -> None:
        """Stops every process within a second: asked first (a process removes the temporary file of
        its re-encode), then killed."""
        for decoder in self.decoders:
            decoder.signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        for decoder in self.decoders:
            decoder.close(deadline)
