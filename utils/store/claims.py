"""Claims: any number of processes, on any machines that share the output folder, can run the same
command on the same list, and each video is extracted once.

Before a video is decoded, its process creates ``{name}.claim`` next to its outputs with O_EXCL
(atomic, also on NFS v3+), holding host, pid and time. The owner touches its claims while it works
and removes each when the video is done or has failed. A claim is stale, and may be taken over,
when it was not touched for ``stale_seconds`` (a lost node, a job killed past its time limit, a
process paused that long) or when its pid no longer runs on this host (kill -9).

A process whose claim was taken over (it was paused, or could not refresh it) learns so from its
refresher or from ``holds`` and must leave the video to the new owner: it never saves over it and
never removes the new owner's claim.
"""
import json
import os
import threading
import time
import uuid
import warnings
from typing import Optional

from video_features.utils.errors import VideoFeaturesWarning
from video_features.utils.store.liveness import HOST, process_has_ended


class Claims:
    """The claims this process holds, kept fresh by a background thread."""

    def __init__(self, stale_seconds: float, root: Optional[str] = None):
        """``root``: the folder under which claims make folders; those left empty when a claim is
        given up are removed, up to it (a stopped run leaves no empty folder behind)."""
        self.stale_seconds, self.root = stale_seconds, root
        self._held: dict[str, dict] = {}  # path -> the record this process wrote there
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._warned = False  # about a refresh that failed: once, not every few minutes for days
        self._refresher = threading.Thread(target=self._refresh, daemon=True)
        self._refresher.start()

    def take(self, path: str) -> bool:
        """Claims ``path`` (a .claim file); False when a live process elsewhere holds it."""
        for _ in range(3):  # again after taking a stale claim away, or after another process removed the folder
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            try:
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._remove_if_stale(path):
                    return False
                continue
            except FileNotFoundError:  # its folder was empty and removed meanwhile
                continue
            record = {"host": HOST, "pid": os.getpid(), "time": time.time()}
            with os.fdopen(handle, "w") as file:
                json.dump(record, file)
            with self._lock:
                self._held[path] = record
            return True
        return False

    def holds(self, path: str) -> bool:
        """Whether ``path`` still holds this process's claim: False once another process has taken
        it over (it judged it stale) or it is gone. Checked right before saving a video's outputs."""
        with self._lock:
            record = self._held.get(path)
        return record is not None and _record(path) == record

    def release(self, path: str) -> None:
        """Removes this process's claim; a claim another process has taken over stays its own."""
        with self._lock:
            record = self._held.pop(path, None)
        if record is not None and _record(path) == record:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            self._remove_empty_folders(os.path.dirname(path))

    def _remove_empty_folders(self, folder: str) -> None:
        """The folders of a claim given up, up to the root, where nothing else is in them."""
        if self.root is None:
            return
        root = os.path.abspath(self.root)
        folder = os.path.abspath(folder)
        while folder != root and folder.startswith(root + os.sep):
            try:
                os.rmdir(folder)
            except OSError:  # not empty (outputs, another claim) or gone
                return
            folder = os.path.dirname(folder)

    def close(self) -> None:
        """Stops refreshing and removes every claim still held (the videos were not finished)."""
        self._stop.set()
        with self._lock:
            held = list(self._held)
        for path in held:
            self.release(path)

    def _remove_if_stale(self, path: str) -> bool:
        """Takes a stale claim out of the way; False when the claim is live. A claim that does not
        parse (its writer is writing it, or died doing so) is judged by its age alone."""
        try:
            content = _content(path)
            age = time.time() - os.path.getmtime(path)
        except FileNotFoundError:
            return True  # gone meanwhile
        except OSError:
            return False  # unreadable here: it cannot be judged, so it is left to its owner
        record = _parse(content)
        gone = isinstance(record, dict) and process_has_ended(record.get("host"), record.get("pid"))
        if age <= self.stale_seconds and not gone:
            return False
        return self._take_away(path, content)

    def _take_away(self, path: str, stale: bytes) -> bool:
        """Removes the claim at ``path`` if it still holds ``stale``: it is renamed aside first (of
        two processes taking it over, one wins), then checked, since another process may have
        taken it over and claimed the video afresh meanwhile; that claim is put back. False when
        a live claim is there."""
        aside = f"{path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True
        if _content(aside) == stale:
            os.remove(aside)
            return True
        _put_back(aside, path)
        return False

    def _refresh(self) -> None:
        while not self._stop.wait(self.stale_seconds / 4):
            with self._lock:
                held = dict(self._held)
            for path, record in held.items():
                self._touch(path, record)

    def _touch(self, path: str, record: dict) -> None:
        """Refreshes one claim, or forgets it when another process has taken it over."""
        try:
            if _record(path) == record:
                os.utime(path)
                return
        except OSError as error:  # a full disk, a network file system's hiccup: it may pass
            if not self._warned:
                self._warned = True
                warnings.warn(f"cannot refresh the claim {path} ({error.strerror or error}); still trying, but "
                              "other processes take over a claim left unrefreshed for claim_stale_seconds",
                              VideoFeaturesWarning)
            return
        with self._lock:  # gone, or another process's claim now: the video is no longer this one's
            if self._held.get(path) == record:
                del self._held[path]


def _put_back(aside: str, path: str) -> None:
    """Puts a claim moved aside by mistake back at ``path``, unless a third process has claimed
    ``path`` meanwhile: a link fails where a rename would replace that claim. If it fails, the
    claim moved aside is lost, and its owner sees so (``holds``) and leaves the video."""
    try:
        os.link(aside, path)
    except OSError:  # FileExistsError, or a file system without hard links
        pass
    os.remove(aside)


def _content(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _parse(content: bytes):
    try:
        return json.loads(content)
    except ValueError:
        return None


def _record(path: str) -> Optional[dict]:
    """The claim at ``path``, None where there is none; other errors (e.g. an unreachable disk) raise."""
    try:
        return _parse(_content(path))
    except FileNotFoundError:
        return None
