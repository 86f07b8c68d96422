"""A decoding process's next video from a URL, opened in a thread while it decodes the current one.

A process decodes its videos one after another; without this, each URL's first requests (its size
where no listing gave it, its first block) wait for the previous video to end, and over a network
with 20-100 ms per request that stalls a process on every short clip. The pipeline tells a process
which URL it gives it next (``OpenVideo.next_url``); the process opens it here and fetches its first
block (the background cache then reads the second), and hands the file to that video's reader.
"""
import threading
from typing import Optional

from video_features.utils.video.remote import RemoteFile, open_remote
from video_features.utils.video.remote_retry import Policy


class OpenedAhead:
    def __init__(self, url: str, size: Optional[int], policy: Policy):
        self.url = url
        self._file: Optional[RemoteFile] = None
        self._error: Optional[Exception] = None
        self._thread = threading.Thread(target=self._open, args=(size, policy), name="open-ahead", daemon=True)
        self._thread.start()

    def _open(self, size: Optional[int], policy: Policy) -> None:
        try:
            file = open_remote(self.url, size, policy)
            file.read(1)  # the first block, with its retries
            file.seek(0)
            self._file = file
        except Exception as error:  # raised again by take(), where the video is opened
            self._error = error

    def take(self) -> RemoteFile:
        """The file, once its first block is in (waiting for it if need be); the error its opening
        met, if any, which is the one the video's own opening would have met."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._file

    def discard(self) -> None:
        """Closes the file without waiting for its requests in flight: the process goes on at once."""
        threading.Thread(target=self._close, name="open-ahead-close", daemon=True).start()

    def _close(self) -> None:
        self._thread.join()
        if self._file is not None:
            self._file.close()
