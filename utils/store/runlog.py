"""A record of every run: each process appends JSON lines to its own file under
``{output_path}/.runs/`` (one file per process, so that many processes on many machines never
write to one file).

Records: ``{"event": "start", ...}`` with the resolved config, the settings that decide the
features (utils/recipe.py: status=true counts the logs of its own settings), versions, host, pid, device, shard
and this job's share of the machine (its index among the jobs there, the cores it decodes with and
its decoding processes); ``{"event": "video", "path", "status": extracted|skipped|failed|claimed, "windows",
"seconds", "error", "decoded_whole", "segments", "fewer_segments"}`` (``decoded_whole``: why a
video cut into segments, or read skipping frames, was decoded again in one piece; ``segments``: the
parts decoded at once, and ``fewer_segments`` why fewer than decode_workers asked);
``{"event": "end", "summary", "exit_code"}``.
status=true reads them back (utils/store/status.py).
"""
import contextlib
import glob
import json
import os
import socket
import subprocess
import time
import warnings
from typing import Optional

import av
import torch

from video_features.utils.errors import VideoFeaturesWarning
from video_features.utils.video.remote import canonical

RUNS_FOLDER = ".runs"


def _tool_version() -> Optional[str]:
    """The commit of this checkout, where it is one."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=os.path.dirname(__file__),
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


class RunLog:
    def __init__(self, output_path: str, config: dict, device: str, shard: str, machine: dict,
                 settings: Optional[dict] = None):
        """Starts this process's log with its start record; an OSError (e.g. a full disk) leaves no file."""
        folder = os.path.join(output_path, RUNS_FOLDER)
        os.makedirs(folder, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.path = os.path.join(folder, f"{stamp}-{socket.gethostname()}-{os.getpid()}.jsonl")
        self._warned = False
        try:
            self._write(
                event="start", host=socket.gethostname(), pid=os.getpid(), device=device, shard=shard, machine=machine,
                config=config, settings=settings,
                versions={"tool": _tool_version(), "torch": torch.__version__, "pyav": av.__version__,
                          "ffmpeg": av.library_versions.get("libavcodec")},
            )
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(self.path)  # an empty or cut log would count as a run that never ended
            raise

    def video(self, path: str, status: str, windows: Optional[int] = None, seconds: Optional[float] = None,
              error: Optional[str] = None, decoded_whole: Optional[str] = None, segments: Optional[int] = None,
              fewer_segments: Optional[str] = None) -> None:
        self._write_later(event="video", path=canonical(path), status=status, windows=windows,
                          seconds=None if seconds is None else round(seconds, 3), error=error,
                          decoded_whole=decoded_whole, segments=segments, fewer_segments=fewer_segments)

    def end(self, summary: str, exit_code: int) -> None:
        self._write_later(event="end", summary=summary, exit_code=exit_code)

    def _write_later(self, **record) -> None:
        """A record after the start. One that cannot be written (the disk filled up) is warned about
        once and the run goes on: saved outputs and their settings record, not the log, decide what is
        done, so the next run still skips the videos this one finishes."""
        try:
            self._write(**record)
        except OSError as error:
            if not self._warned:
                self._warned = True
                warnings.warn(f"cannot write the run log {self.path} ({error.strerror or error}); the run goes on, "
                              "but status will not name the processes and failures from here",
                              VideoFeaturesWarning)

    def _write(self, **record) -> None:
        record["time"] = time.time()
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


def read_records(output_path: str) -> list[dict]:
    records = []
    for path in sorted(glob.glob(os.path.join(output_path, RUNS_FOLDER, "*.jsonl"))):
        with open(path, encoding="utf-8") as file:
            for line in file:
                try:
                    records.append({**json.loads(line), "log": path})
                except ValueError:  # a line cut short by a kill
                    continue
    return sorted(records, key=lambda record: record["time"])
