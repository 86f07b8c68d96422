"""Claims: any number of processes, on any machines that share the output folder, can run the same
command on the same list, and each video is extracted once.

Before a video is decoded, its process creates ``{name}.claim`` next to its outputs with O_EXCL
(atomic, also on NFS v3+), holding host, pid and time. The owner touches its claims while it works
and removes each when the video is done or has failed. A claim is stale, and may be taken over,
when it was not touched for ``stale_seconds`` (a lost node, a job killed past its time limit) or
when its pid no longer runs on this host (kill -9).
"""
import json
import os
import socket
import threading
import time
import uuid
from typing import Optional

HOST = socket.gethostname()


def _owner_is_gone(record: dict) -> bool:
    if record.get("host") != HOST:
        return False
    try:
        os.kill(int(record["pid"]), 0)
        return False
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False


class Claims:
    """The claims this process holds, kept fresh by a background thread."""

    def __init__(self, stale_seconds: float):
        self.stale_seconds = stale_seconds
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh, daemon=True)
        self._refresher.start()

    def take(self, path: str) -> bool:
        """Claims ``path`` (a .claim file); False when a live process elsewhere holds it."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        for _ in range(2):  # a second try after taking a stale claim away
            try:
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._remove_if_stale(path):
                    return False
                continue
            with os.fdopen(handle, "w") as file:
                json.dump({"host": HOST, "pid": os.getpid(), "time": time.time()}, file)
            with self._lock:
                self._held.add(path)
            return True
        return False

    def release(self, path: str) -> None:
        with self._lock:
            if path not in self._held:
                return
            self._held.discard(path)
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Stops refreshing and removes every claim still held (the videos were not finished)."""
        self._stop.set()
        for path in list(self._held):
            self.release(path)

    def _remove_if_stale(self, path: str) -> bool:
        """Takes a stale claim out of the way: renamed aside, then checked to be the one judged stale
        (another process may have taken it over in between, then it is put back)."""
        record = _read(path)
        if record is None:
            return True  # gone meanwhile, or half-written by a writer that died at once
        try:
            age = time.time() - os.path.getmtime(path)
        except FileNotFoundError:
            return True
        if age <= self.stale_seconds and not _owner_is_gone(record):
            return False
        aside = f"{path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True
        if _read(aside) != record:  # it was a fresh claim of a process that took it over first
            os.rename(aside, path)
            return False
        os.remove(aside)
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(self.stale_seconds / 4):
            with self._lock:
                held = list(self._held)
            for path in held:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass


def _read(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None
