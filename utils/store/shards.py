"""Packed outputs: each process appends its videos to a Parquet shard of its own and commits it
(temporary name, then rename) every ``shard_videos`` videos, after ``shard_seconds``, at the end
of the run and when stopped; a video is done once its shard is committed. A few hundred files per
million videos instead of four per video, and one file to read per shard to learn what is done.

A shard: ``{folder}/{stem}-{sequence:05d}.parquet``, ``stem`` unique to the process (time, host,
pid, random). One row per video: ``name``, ``source``, the outputs (``{feature_type}``,
``timestamps_ms``, ``fps``) and ``logits`` where asked, as arrow_rows.py lays them out. The
file's key-value metadata holds the settings record (``video_features.settings``), the names in
row order (``video_features.names``) and the commit time (``video_features.committed_ns``), so
that deciding what is done reads footers only (shard_index.py).

Rows go to the temporary file as they come, in row groups of about ROW_GROUP_BYTES: memory stays
at one row group whatever the shard's size. A 2-hour video at 16-frame windows is ~11k x 512
float32 (22 MB; 225 MB with crops=10): held until a commit of 1,000 such videos it would be GBs.
"""
import contextlib
import json
import os
import secrets
import signal
import threading
import time
from typing import Iterable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from video_features.utils.errors import ShardWriteError
from video_features.utils.store.arrow_rows import LOGITS, NAME, SOURCE, check_fits, row_schema, table_row
from video_features.utils.store.files import cause, temporary_path
from video_features.utils.store.liveness import HOST

SUFFIX = ".parquet"
SETTINGS_KEY = b"video_features.settings"
NAMES_KEY = b"video_features.names"
COMMITTED_KEY = b"video_features.committed_ns"
# 1,000 videos: 10 files per 10,000 videos (the aim is under 50), a footer index of ~40 KB names;
# kill -9 loses at most that many videos or shard_seconds of work, whichever comes first.
DEFAULT_SHARD_VIDEOS = 1000
DEFAULT_SHARD_SECONDS = 600.0
# A row group holds ~7 clips of 10 s (37 KB each in r21d). Measured on 1,000 such clips a shard
# (benchmarks/README.md): one row group a video makes a 430 KB footer, which every read of a video
# parses again (6.4 ms a read); 256 KB groups, 78 KB footers and 1.4 ms; 1 MB groups, 41 KB and 2.5 ms.
ROW_GROUP_BYTES = 1 << 18
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def shard_stem() -> str:
    """A file-name stem unique to this process: start time, host, pid and a random part."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{HOST}-{os.getpid()}-{secrets.token_hex(3)}"


class ShardWriter:
    """One process's open shard. ``append`` keeps a video, ``due`` says when to ``commit``; the caller
    holds each video's claim until the commit returns its name. Not thread-safe."""

    def __init__(self, folder: str, settings: dict, shard_videos: int = DEFAULT_SHARD_VIDEOS,
                 stem: Optional[str] = None, shard_seconds: float = DEFAULT_SHARD_SECONDS):
        if shard_videos < 1:
            raise ValueError(f"shard_videos={shard_videos}: a shard holds at least one video")
        self.folder, self.settings = folder, settings
        self.shard_videos, self.shard_seconds = shard_videos, shard_seconds
        self.stem = stem or shard_stem()
        self._settings_json = json.dumps(settings, sort_keys=True)
        self._sequence = 0
        self._schema: Optional[pa.Schema] = None  # fixed by the first video
        self._writer: Optional[pq.ParquetWriter] = None
        self._tmp: Optional[str] = None
        self._written: list[str] = []  # names in the temporary file, in row order
        self._buffer: list[tuple[str, pa.Table]] = []  # rows not yet in it
        self._buffered_bytes = 0
        self._opened_at: Optional[float] = None  # time.monotonic() of the open shard's first video

    @property
    def pending(self) -> list[str]:
        """The videos appended since the last commit, in order."""
        return self._written + [name for name, _ in self._buffer]

    @property
    def due(self) -> bool:
        """Whether the open shard holds shard_videos videos or its first one came shard_seconds ago."""
        count = len(self._written) + len(self._buffer)
        return count >= self.shard_videos or (
            self._opened_at is not None and time.monotonic() - self._opened_at >= self.shard_seconds)

    def append(self, name: str, source: str, outputs: dict[str, np.ndarray], logits=None) -> None:
        """Adds one video to the open shard. ValueError (one line, the shard unchanged) for a name already
        in it or arrays that do not fit its columns; ShardWriteError when its rows cannot be written."""
        if {NAME, SOURCE, LOGITS} & set(outputs):
            raise ValueError(f"{name}: an output may not be called {NAME}, {SOURCE} or {LOGITS}")
        arrays = {key: np.asarray(value) for key, value in outputs.items()}
        if logits is not None:
            arrays[LOGITS] = np.asarray(logits)
        if name in self.pending:
            raise ValueError(f"{name}: already in the open shard")
        schema = self._schema or row_schema(arrays)
        check_fits(schema, arrays)
        row = table_row(schema, name, source, arrays)
        self._schema = schema
        self._buffer.append((name, row))
        self._buffered_bytes += row.nbytes
        if self._opened_at is None:
            self._opened_at = time.monotonic()
        if self._buffered_bytes >= ROW_GROUP_BYTES:
            self._guarded(self._flush, frozenset())

    def commit(self, discard: Iterable[str] = ()) -> list[str]:
        """Writes the open shard under its name and returns the names it holds (none: no file). The
        videos in ``discard`` are left out: those whose claims were taken over by another process,
        whose rows would then be there twice. ShardWriteError when it cannot be written: its
        temporary file is removed and its videos are lost (not done), as the error names."""
        return self._guarded(self._commit, frozenset(discard))

    def close(self, discard: Iterable[str] = ()) -> list[str]:
        """Commits what is pending (see commit): at the end of a run, and when it is stopped."""
        return self.commit(discard)

    def abandon(self) -> list[str]:
        """Forgets the open shard and removes its temporary file; returns the videos it held."""
        lost = self.pending
        writer, tmp = self._writer, self._tmp
        self._writer, self._tmp, self._written, self._buffer = None, None, [], []
        self._buffered_bytes, self._opened_at = 0, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return lost

    def _guarded(self, action, discard: frozenset):
        """``action`` with stop signals held until it is over (they land before or after it, never
        between a write and its bookkeeping); on an OSError the open shard is given up."""
        with _signals_deferred():
            try:
                return action(discard)
            except OSError as error:
                where = error.filename or self._tmp or self.folder
                lost = self.abandon()
                raise ShardWriteError(f"{where}: cannot write the shard ({cause(error)}); "
                                      f"its {len(lost)} videos are not saved", lost) from None

    def _path(self) -> str:
        return os.path.join(self.folder, f"{self.stem}-{self._sequence:05d}{SUFFIX}")

    def _flush(self, discard: frozenset) -> None:
        """The buffered rows, less ``discard``, as one row group of the temporary file."""
        rows = [(name, row) for name, row in self._buffer if name not in discard]
        if rows:
            if self._writer is None:
                self._open()
            self._writer.write_table(pa.concat_tables([row for _, row in rows]), row_group_size=len(rows))
            self._written += [name for name, _ in rows]
        self._buffer, self._buffered_bytes = [], 0

    def _open(self) -> None:
        # not named *.parquet: DuckDB's and Polars' globs read hidden files too
        self._tmp = temporary_path(self._path() + ".partial")
        self._writer = _parquet_writer(self._tmp, self._schema)

    def _commit(self, discard: frozenset) -> list[str]:
        self._flush(discard)
        if discard & set(self._written):
            self._rewrite_without(discard)
        if not self._written:
            self.abandon()
            return []
        self._writer.add_key_value_metadata({
            SETTINGS_KEY: self._settings_json, NAMES_KEY: json.dumps(self._written),
            COMMITTED_KEY: str(time.time_ns())})
        self._writer.close()
        _sync(self._tmp)
        os.replace(self._tmp, self._path())  # the name is this process's alone: nothing is replaced
        _sync(self.folder)
        names = self._written
        self._writer, self._tmp, self._written, self._opened_at = None, None, [], None
        self._sequence += 1
        return names

    def _rewrite_without(self, discard: frozenset) -> None:
        """Copies the temporary file, row group by row group, without the rows of ``discard``."""
        self._writer.close()
        old, self._writer, self._tmp, kept = self._tmp, None, None, []
        dropped = pa.array(sorted(discard), pa.string())
        try:
            with pq.ParquetFile(old) as source:
                for group in range(source.num_row_groups):
                    table = source.read_row_group(group)
                    table = table.filter(pc.invert(pc.is_in(table[NAME], dropped)))
                    if table.num_rows:
                        if self._writer is None:
                            self._open()
                        self._writer.write_table(table, row_group_size=table.num_rows)
                        kept += table[NAME].to_pylist()
        finally:
            os.remove(old)
        self._written = kept


def _parquet_writer(path: str, schema: pa.Schema) -> pq.ParquetWriter:
    # names are unique (no dictionary pays); statistics on the name only: DuckDB, Polars and pyarrow
    # filters skip row groups by it, and the footer stays small
    return pq.ParquetWriter(path, schema, use_dictionary=False, write_statistics=[NAME])


def _sync(path: str) -> None:
    """Flushes a file, or a folder's entries, to the disk: a committed shard stands for up to
    shard_videos videos, so a power loss right after the rename must not leave it empty."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # a folder on a file system that cannot sync one
        pass
    finally:
        os.close(handle)


@contextlib.contextmanager
def _signals_deferred():
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is over, then act as they would have. Their
    Python handlers run in the main thread whichever thread the signal reaches, so swapping the
    handlers there is enough; elsewhere (other threads, handlers not set from Python) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received, previous = [], {}
    try:
        for number in DEFERRED_SIGNALS:
            handler = signal.getsignal(number)
            if callable(handler) or handler == signal.SIG_DFL:
                previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(received):
            signal.raise_signal(number)
