"""A finished output folder packed into one HDF5 file, for the tools that read HDF5.

Layout: one group per video at its output name, so ``cat/000`` is the group ``/cat/000`` (names
are paths already, and h5py walks them as such); in it a dataset per output (``{feature_type}``,
``timestamps_ms``, ``fps``, and ``logits`` where the shards hold them) and the attribute ``source``
where known (shards record it). The settings record is the root's attribute ``settings`` (JSON):
a folder whose videos were made with different settings is refused, so one record describes every
video, and it is stored once rather than once per video.

The folder holds per-video files (``{name}_{key}.npy`` or ``.pkl`` beside ``{name}_settings.json``),
shards (shards.py: each video's current row), or both; claims, temporary files and hidden
folders (``.runs``) are not read. The file is written under a temporary name and renamed.

``python -m video_features.utils.store.hdf5 OUTPUT_DIR DESTINATION.h5``: exit 0 when written; 2 when refused, 1 when it
cannot be written, with one line.
"""
import contextlib
import json
import os
import pickle
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import h5py
import numpy as np

from video_features.utils.errors import ExportError, OutputError
from video_features.utils.store.files import cause, temporary_path
from video_features.utils.store.shard_index import ShardIndex

SETTINGS_SUFFIX = "_settings.json"
NOT_LOADED = (OSError, ValueError, EOFError, pickle.UnpicklingError)  # a file missing, cut short or not an array


@dataclass
class Video:
    name: str
    settings: dict
    load: Optional[Callable[[], dict[str, np.ndarray]]] = None  # per-video files: read when written


def export_hdf5(output_dir: str, destination: str) -> int:
    """Writes every finished video of ``output_dir`` to ``destination`` (replaced if there); returns
    how many. ExportError (one line) for a folder whose videos were made with different settings
    (naming which and how), a video in both formats, or a file that does not load."""
    if not os.path.isdir(output_dir):
        raise ExportError(f"cannot export {output_dir}: no such folder")
    per_video = {video.name: video for video in _per_video(output_dir)}
    index = _shard_index(output_dir)
    both = sorted(set(per_video) & set(index.names()))
    if both:
        raise ExportError(f"cannot export {output_dir}: {both[0]} (and {len(both) - 1} more) is both in "
                          "per-video files and in a shard; remove one of them")
    settings = _one_settings(output_dir, list(per_video.values()) + _shard_videos(index))
    tmp = temporary_path(destination)
    try:
        with h5py.File(tmp, "w") as file:
            file.attrs["settings"] = json.dumps(settings, sort_keys=True)
            for video in sorted(per_video.values(), key=lambda video: video.name):
                _write(file, video.name, video.load(), None)
            for name, source, arrays, _ in index.videos():
                _write(file, name, arrays, source)
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return len(per_video) + len(index)


def _write(file: h5py.File, name: str, arrays: dict[str, np.ndarray], source: Optional[str]) -> None:
    try:
        group = file.create_group(name)
    except ValueError:  # a video named like another's output (x and x/fps): HDF5 has one place for both
        raise ExportError(f"cannot export the video {name}: its group clashes with another video's") from None
    for key, value in arrays.items():
        group.create_dataset(key, data=value)
    if source:
        group.attrs["source"] = source


def _per_video(output_dir: str) -> Iterator[Video]:
    """The videos with a settings record (written last: the others are unfinished), hidden folders left out."""
    for folder, subfolders, files in os.walk(output_dir):
        subfolders[:] = sorted(sub for sub in subfolders if not sub.startswith("."))
        for file in sorted(files):
            if file.endswith(SETTINGS_SUFFIX) and not file.startswith("."):
                record = os.path.join(folder, file)
                name = os.path.relpath(record, output_dir)[:-len(SETTINGS_SUFFIX)]
                settings = _settings_record(record)
                yield Video(name, settings, lambda name=name, settings=settings: _load(output_dir, name, settings))


def _settings_record(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        why = cause(error) if isinstance(error, OSError) else f"not JSON ({error})"
        raise ExportError(f"cannot export {path}: {why}") from None


def _load(output_dir: str, name: str, settings: dict) -> dict[str, np.ndarray]:
    """A video's per-video files: its feature type's, timestamps_ms and fps, .npy or else .pkl."""
    arrays = {}
    for key in (settings.get("feature_type"), "timestamps_ms", "fps"):
        base = os.path.join(output_dir, f"{name}_{key}")
        path = base + ".pkl" if os.path.exists(base + ".pkl") and not os.path.exists(base + ".npy") else base + ".npy"
        try:
            if path.endswith(".npy"):
                arrays[key] = np.load(path, allow_pickle=False)
            else:
                with open(path, "rb") as file:
                    arrays[key] = np.asarray(pickle.load(file))
        except NOT_LOADED as error:
            why = cause(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
            raise ExportError(f"cannot export {path}: {why}") from None
    return arrays


def _shard_index(output_dir: str) -> ShardIndex:
    try:
        index = ShardIndex(output_dir)
    except OutputError as error:
        raise ExportError(f"cannot export: {error}") from None
    if index.corrupt:
        path, why = next(iter(index.corrupt.items()))
        raise ExportError(f"cannot export {path}: not a shard that reads ({why})")
    return index


def _shard_videos(index: ShardIndex) -> list[Video]:
    return [Video(name, index.where(name)[0].settings) for name in index.names()]


def _one_settings(output_dir: str, videos: list[Video]) -> dict:
    """The settings every video was made with; ExportError naming the groups and what differs."""
    groups: dict[str, list[Video]] = {}
    for video in videos:
        groups.setdefault(json.dumps(video.settings, sort_keys=True), []).append(video)
    if len(groups) == 1:
        return videos[0].settings
    if not groups:
        raise ExportError(f"cannot export {output_dir}: no finished video there (no settings record, no shard)")
    records = [members[0].settings for members in groups.values()]
    differ = sorted({key for record in records for key in record if len({_text(r.get(key)) for r in records}) > 1})
    parts = [f"{len(members)} with {', '.join(f'{key}={_text(members[0].settings.get(key))}' for key in differ)} "
             f"(e.g. {min(video.name for video in members)})"
             for members in sorted(groups.values(), key=len, reverse=True)]
    raise ExportError(f"cannot export {output_dir}: its videos were made with different settings: {'; '.join(parts)}; "
                      "extract them again with one setting")


def _text(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m video_features.utils.store.hdf5 OUTPUT_DIR DESTINATION.h5", file=sys.stderr)
        return 2
    try:
        count = export_hdf5(*argv)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the destination cannot be written (a full disk)
        print(f"error: {error.filename or argv[1]}: cannot write ({cause(error)})", file=sys.stderr)
        return 1
    print(f"{count} videos written to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
