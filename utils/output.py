"""Where outputs go, how they are written, and whether a video is already done.

Each output key of a video goes to ``{output_dir}/{name}_{key}.npy`` (or ``.pkl``), where
``name`` is the video's path relative to the common folder of all inputs, without extension:
``cat/000.mp4`` and ``dog/000.mp4`` get different names. Every file is written under a temporary
name in the same folder and renamed into place, so a killed run never leaves a partial file that
looks finished.
"""
import os
import pickle
import tempfile
from typing import Callable

import numpy as np

SAVERS = ("save_numpy", "save_pickle")
ON_EXTRACTION = ("print",) + SAVERS


class OutputNameClash(ValueError):
    pass


def output_names(paths: list[str]) -> dict[str, str]:
    """Maps each input path to its output name (relative to the inputs' common folder, no extension)."""
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    names = {}
    owner_of = {}
    for path, full in zip(paths, absolute):
        name = os.path.splitext(os.path.relpath(full, root))[0]
        if name in owner_of and owner_of[name] != full:
            raise OutputNameClash(
                f"'{owner_of[name]}' and '{full}' would write the same output files '{name}_*'; "
                "rename one of them or extract them in separate runs"
            )
        owner_of[name] = full
        names[path] = name
    return names


def _write_atomically(path: str, write: Callable) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class OutputStore:
    """Saves a video's outputs as .npy or .pkl files, one per key."""

    def __init__(self, output_dir: str, on_extraction: str):
        assert on_extraction in SAVERS
        self.output_dir = output_dir
        self.extension = ".npy" if on_extraction == "save_numpy" else ".pkl"

    def path(self, name: str, key: str) -> str:
        return os.path.join(self.output_dir, f"{name}_{key}{self.extension}")

    def save(self, name: str, outputs: dict[str, np.ndarray]) -> None:
        for key, value in outputs.items():
            if self.extension == ".npy":
                _write_atomically(self.path(name, key), lambda file: np.save(file, value))
            else:
                _write_atomically(self.path(name, key), lambda file: pickle.dump(value, file))

    def is_done(self, name: str, keys: list[str]) -> bool:
        """True when every output file exists and loads (a truncated one does not)."""
        for key in keys:
            try:
                self.load(name, key)
            except Exception:
                return False
        return True

    def load(self, name: str, key: str) -> np.ndarray:
        path = self.path(name, key)
        if self.extension == ".npy":
            # mmap reads only the header but still fails if the data is cut short
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with open(path, "rb") as file:
            return pickle.load(file)


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
    """show_pred: the top classes of every window with their softmax probabilities."""
    z = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    lines = []
    if class_names is None:
        lines.append("  (class names are not known for this checkpoint; showing class indices)")
    for row, (start, end) in zip(probabilities, times_ms):
        best = np.argsort(-row)[:top]
        labels = [f"{class_names[i] if class_names else i} {row[i]:.3f}" for i in best]
        lines.append(f"  {start / 1000:7.2f}-{end / 1000:7.2f} s  " + " | ".join(labels))
    return "\n".join(lines)
