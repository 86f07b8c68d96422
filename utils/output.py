"""Where outputs go, how they are written, and whether a video is already done.

Each output key of a video goes to ``{output_dir}/{name}_{key}.npy`` (or ``.pkl``), where
``name`` is the video's path relative to ``input_root`` (default: the current folder), without
extension: ``cat/000.mp4`` and ``dog/000.mp4`` get different names, and a name depends on nothing
but its video's path, so names do not move when the list changes. Every file is written under a
temporary name in the same folder and renamed into place, so a killed run never leaves a partial
file that looks finished.
"""
import contextlib
import json
import os
import pickle
import socket
import tempfile
import time
from typing import Callable, Optional

import numpy as np

SAVERS = ("save_numpy", "save_pickle")
ON_EXTRACTION = ("print",) + SAVERS


class OutputNameClash(ValueError):
    pass


class OutputError(Exception):
    """A video's saved outputs cannot be checked. The message names the file and the cause."""


# What a file that is there but does not load as an array raises: cut short, or not .npy/pickle data
NOT_AN_ARRAY = (ValueError, EOFError, pickle.UnpicklingError)


def output_name(path: str, input_root: Optional[str] = None) -> str:
    """A video's output name: its path relative to ``input_root`` (None: the current folder),
    without extension; for a video outside that folder, its absolute path without the leading '/'."""
    full = os.path.abspath(path)
    root = os.path.abspath(input_root or os.getcwd())
    inside = full != root and os.path.commonpath([full, root]) == root
    return os.path.splitext(os.path.relpath(full, root) if inside else full.lstrip(os.sep))[0]


def output_names(paths: list[str], input_root: Optional[str] = None) -> dict[str, str]:
    """Maps each input path to its output name (``output_name``); two files with one name are refused."""
    names = {}
    owner_of = {}
    for path in paths:
        full, name = os.path.abspath(path), output_name(path, input_root)
        if name in owner_of and owner_of[name] != full:
            raise OutputNameClash(
                f"'{owner_of[name]}' and '{full}' would write the same output files '{name}_*'; "
                "rename one of them, set input_root, or extract them in separate runs"
            )
        owner_of[name] = full
        names[path] = name
    return names


TMP_PREFIX = ".tmp-"
STALE_FOREIGN_SECONDS = 24 * 3600  # a temporary file of another machine's process is left this long


def _file_mode() -> int:
    """The mode a plain open() would give a new file: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomically(path: str, write: Callable) -> None:
    """Writes under a temporary name (naming this host and process) and renames into place."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    prefix = f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"
    handle, tmp = tempfile.mkstemp(prefix=prefix, suffix="-" + os.path.basename(path), dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600: nobody else could read the features
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _is_stale(name: str, folder: str) -> bool:
    """A temporary file whose writer is gone: a process of this host that no longer runs, or a
    file of another host (or of an older version) untouched for STALE_FOREIGN_SECONDS."""
    host, _, rest = name[len(TMP_PREFIX):].partition("-")
    pid = rest.partition("-")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
    try:
        return time.time() - os.path.getmtime(os.path.join(folder, name)) > STALE_FOREIGN_SECONDS
    except OSError:
        return False


def remove_stale_temporary_files(folders) -> int:
    """Removes the temporary files that a killed writer left in ``folders``; returns how many."""
    removed = 0
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith(TMP_PREFIX) and _is_stale(name, folder):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
                    removed += 1
    return removed


class OutputStore:
    """Saves a video's outputs as .npy or .pkl files, one per key, and beside them the settings that
    made them (``{name}_settings.json``, written last), so that only outputs made with the same
    settings count as done."""

    def __init__(self, output_dir: str, on_extraction: str):
        assert on_extraction in SAVERS
        self.output_dir = output_dir
        self.extension = ".npy" if on_extraction == "save_numpy" else ".pkl"

    def path(self, name: str, key: str) -> str:
        return os.path.join(self.output_dir, f"{name}_{key}{self.extension}")

    def claim_path(self, name: str) -> str:
        return os.path.join(self.output_dir, f"{name}.claim")

    def settings_path(self, name: str) -> str:
        return os.path.join(self.output_dir, f"{name}_settings.json")

    def save(self, name: str, outputs: dict[str, np.ndarray], settings: dict) -> None:
        # the old record goes first: a run killed while replacing files leaves none, so it is redone
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.settings_path(name))
        for key, value in outputs.items():
            if self.extension == ".npy":
                _write_atomically(self.path(name, key), lambda file: np.save(file, value))
            else:
                _write_atomically(self.path(name, key), lambda file: pickle.dump(value, file))
        record = json.dumps(settings, indent=1, sort_keys=True).encode()
        _write_atomically(self.settings_path(name), lambda file: file.write(record))

    def status(self, name: str, keys: list[str], settings: dict) -> str:
        """'done': every output file loads and was made with ``settings``; 'stale': they load but
        were made with other settings (or by a version that kept no record); 'missing': a file is
        absent or does not load (e.g. cut short). Anything else (a permission error, a bug) raises
        OutputError: the outputs may be good, so they must not be redone and replaced."""
        for key in keys:
            try:
                self.load(name, key)
            except (FileNotFoundError, *NOT_AN_ARRAY):
                return "missing"
            except Exception as error:
                raise OutputError(f"cannot check its saved outputs: {_cause(error, self.path(name, key))}") from error
        try:
            with open(self.settings_path(name), encoding="utf-8") as file:
                recorded = json.load(file)
        except (FileNotFoundError, ValueError):  # no record, or one cut short
            return "stale"
        except OSError as error:
            raise OutputError(f"cannot check its saved outputs: {_cause(error, self.settings_path(name))}") from error
        return "done" if recorded == settings else "stale"

    def load(self, name: str, key: str) -> np.ndarray:
        path = self.path(name, key)
        if self.extension == ".npy":
            # mmap reads only the header but still fails if the data is cut short
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with open(path, "rb") as file:
            return pickle.load(file)


def _cause(error: Exception, path: str) -> str:
    if isinstance(error, OSError):
        return f"{path}: {error.strerror or error}"
    return f"{path}: {type(error).__name__}: {error}"


def describe_outputs(name: str, outputs: dict[str, np.ndarray]) -> str:
    """The print sink: each key's shape and min/mean/max."""
    lines = [name]
    for key, value in outputs.items():
        value = np.asarray(value)
        lines.append(
            f"  {key}: shape {tuple(value.shape)}  min {value.min():.4g}  mean {value.mean():.4g}  max {value.max():.4g}"
        )
    return "\n".join(lines)


def describe_predictions(logits: np.ndarray, times_ms: np.ndarray, class_names, top: int = 5) -> str:
    """show_pred: the top classes of every window with their softmax probabilities.

    ``logits``: (windows, classes), or (windows, crops, classes), whose crops' probabilities are
    averaged, as the official multi-view tests average softmax scores (not logits)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    if probabilities.ndim == 3:
        probabilities = probabilities.mean(axis=1)
    lines = []
    if class_names is None:
        lines.append("  (class names are not known for this checkpoint; showing class indices)")
    for row, (start, end) in zip(probabilities, times_ms):
        best = np.argsort(-row)[:top]
        labels = [f"{class_names[i] if class_names else i} {row[i]:.3f}" for i in best]
        lines.append(f"  {start / 1000:7.2f}-{end / 1000:7.2f} s  " + " | ".join(labels))
    return "\n".join(lines)
