"""What the committed shards of a folder hold, from their footers alone (names, settings, commit
time: shards.py), and one video's arrays read from its row group without the other rows.

Which row is current: a video is in several committed shards when it was extracted again (after a
settings change; or, rarely, by two processes when a paused one's claim was taken over). Its
current row is the one of the shard committed last (``video_features.committed_ns``, then the file
name); ``status`` judges that row alone, as a rerun that replaces per-video files leaves only the
last outputs: 'done' when its shard was made with the settings asked, 'stale' when with others.
Superseded rows stay in their shards: readers of the whole folder (pandas, DuckDB) see them.
"""
import json
import os
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from video_features.utils.errors import OutputError
from video_features.utils.store.arrow_rows import NAME, SOURCE, as_numpy
from video_features.utils.store.files import cause
from video_features.utils.store.outputs import OutputState
from video_features.utils.store.shards import COMMITTED_KEY, NAMES_KEY, SETTINGS_KEY, SUFFIX


@dataclass(frozen=True)
class Shard:
    """A committed shard as its footer describes it."""
    path: str
    settings: dict
    names: list[str]  # in row order
    committed_ns: int

    @property
    def order(self) -> tuple[int, str]:
        """Later shards sort after earlier ones; the name breaks a tie."""
        return self.committed_ns, os.path.basename(self.path)


class ShardIndex:
    """The committed shards of ``folder``: which shard and row holds each video's current row.
    ``refresh`` reads the footers of shards committed since (shards never change once committed)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.shards: dict[str, Shard] = {}  # path -> shard
        self.corrupt: dict[str, str] = {}  # path -> why its footer does not read (not ours, cut short)
        self._current: dict[str, tuple[Shard, int]] = {}  # name -> its current row
        self.refresh()

    def refresh(self) -> None:
        """Reads the shards committed since the last refresh. OutputError (one line, naming the file)
        for a shard that cannot be read (a permission error, an unreachable disk): its videos may be
        done, so they must not be taken for missing and extracted again."""
        try:
            entries = os.listdir(self.folder)
        except FileNotFoundError:
            entries = []
        except OSError as error:
            raise OutputError(f"cannot list the shards in {self.folder}: {cause(error)}") from None
        paths = {os.path.join(self.folder, entry) for entry in entries
                 if entry.endswith(SUFFIX) and not entry.startswith((".", "_"))}
        if set(self.shards) - paths:  # a shard removed (by hand): the current rows are found afresh
            self.shards = {path: shard for path, shard in self.shards.items() if path in paths}
            self._current = {}
            for shard in sorted(self.shards.values(), key=lambda shard: shard.order):
                self._add(shard)
        for path in sorted(paths - set(self.shards) - set(self.corrupt)):
            shard = self._read_footer(path)
            if shard is not None:
                self.shards[path] = shard
                self._add(shard)

    def status(self, name: str, settings: Optional[dict]) -> OutputState:
        """DONE: the video's current row was made with ``settings``; STALE: with other settings;
        MISSING: no committed shard holds it (as OutputStore.state says of per-video files)."""
        found = self._current.get(name)
        if found is None:
            return OutputState.MISSING
        return OutputState.DONE if found[0].settings == settings else OutputState.STALE

    def names(self, settings: Optional[dict] = None) -> list[str]:
        """The videos with a current row (made with ``settings``, where given), sorted."""
        return sorted(name for name, (shard, _) in self._current.items()
                      if settings is None or shard.settings == settings)

    def where(self, name: str) -> Optional[tuple[Shard, int]]:
        """The shard and row (its position in the file) of the video's current row; None if none."""
        return self._current.get(name)

    def read(self, name: str) -> dict[str, np.ndarray]:
        """The current row's arrays (the outputs, and ``logits`` where saved), reading its row group only.
        KeyError when no committed shard holds ``name``; OutputError when its shard does not read."""
        found = self._current.get(name)
        if found is None:
            raise KeyError(f"{name}: in no committed shard of {self.folder}")
        return read_row(*found, name)

    def videos(self) -> Iterator[tuple[str, str, dict[str, np.ndarray], Shard]]:
        """Every video's current row as (name, source, arrays, its shard), reading each shard once,
        row group by row group (memory: one row group): for exports and training loops."""
        current = {(shard.path, row): name for name, (shard, row) in self._current.items()}
        for shard in sorted(self.shards.values(), key=lambda shard: shard.order):
            start = 0
            for table in _row_groups(shard):
                for offset in range(table.num_rows):
                    name = current.get((shard.path, start + offset))
                    if name is not None:
                        row = _checked_row(table.slice(offset, 1), shard, start + offset, name)
                        yield name, row[SOURCE][0].as_py(), _arrays(row), shard
                start += table.num_rows

    def __len__(self) -> int:
        return len(self._current)

    def _add(self, shard: Shard) -> None:
        for row, name in enumerate(shard.names):
            held = self._current.get(name)
            if held is None or held[0].order < shard.order:
                self._current[name] = (shard, row)

    def _read_footer(self, path: str) -> Optional[Shard]:
        try:
            metadata = pq.read_metadata(path).metadata or {}
            shard = Shard(path, json.loads(metadata[SETTINGS_KEY]), json.loads(metadata[NAMES_KEY]),
                          int(metadata[COMMITTED_KEY]))
        except FileNotFoundError:
            return None  # removed meanwhile
        except (pa.ArrowInvalid, KeyError, ValueError) as error:
            self.corrupt[path] = f"{type(error).__name__}: {error}"
            return None
        except OSError as error:
            raise OutputError(f"cannot read the shard {path}: {cause(error)}") from None
        return shard


def read_row(shard: Shard, row: int, name: str) -> dict[str, np.ndarray]:
    """Row ``row`` of ``shard`` (which must hold ``name``) as arrays, reading only its row group."""
    try:
        with pq.ParquetFile(shard.path) as file:
            start = 0
            for group in range(file.num_row_groups):
                rows = file.metadata.row_group(group).num_rows
                if row < start + rows:
                    table = file.read_row_group(group).slice(row - start, 1)
                    break
                start += rows
            else:
                raise ValueError(f"it has {start} rows, its footer names {len(shard.names)}")
    except OSError as error:
        raise OutputError(f"cannot read {name} from the shard {shard.path}: {cause(error)}") from None
    except (pa.ArrowInvalid, ValueError) as error:
        raise OutputError(f"cannot read {name} from the shard {shard.path}: {error}") from None
    return _arrays(_checked_row(table, shard, row, name))


def _row_groups(shard: Shard) -> Iterator[pa.Table]:
    try:
        with pq.ParquetFile(shard.path) as file:
            for group in range(file.num_row_groups):
                yield file.read_row_group(group)
    except OSError as error:
        raise OutputError(f"cannot read the shard {shard.path}: {cause(error)}") from None
    except pa.ArrowInvalid as error:
        raise OutputError(f"cannot read the shard {shard.path}: {error}") from None


def _checked_row(table: pa.Table, shard: Shard, row: int, name: str) -> pa.Table:
    """``table`` (one row), after checking that it is ``name``'s, as the footer says."""
    if table[NAME][0].as_py() != name:
        raise OutputError(f"the shard {shard.path} holds {table[NAME][0].as_py()} in row {row}, not {name}")
    return table


def _arrays(table: pa.Table) -> dict[str, np.ndarray]:
    return {key: as_numpy(table[key].combine_chunks()) for key in table.column_names if key not in (NAME, SOURCE)}


def read_video(folder: str, name: str) -> dict[str, np.ndarray]:
    """One video's arrays from the committed shards of ``folder``: ``{feature_type}`` (N, D) or
    (N, crops, D) float32, ``timestamps_ms`` (N, 2) float64, ``fps`` () float64, and ``logits``
    where saved. It reads every shard's footer, then one row group; to read many videos, keep a
    ``ShardIndex(folder)`` and call its ``read``."""
    return ShardIndex(folder).read(name)
