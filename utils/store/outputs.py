"""A run's saved outputs: each output key of a video in ``{output_dir}/{name}_{key}.npy`` (or
``.pkl``), the settings that made them beside, and whether a video is already done."""
import contextlib
import json
import os
import pickle
from enum import Enum

import numpy as np

from video_features.utils.errors import OutputError
from video_features.utils.store.files import write_atomically

# What a file that is there but does not load as an array raises: cut short, or not .npy/pickle data
NOT_AN_ARRAY = (ValueError, EOFError, pickle.UnpicklingError)


class OutputState(str, Enum):
    DONE = "done"  # every output file loads and was made with the run's settings
    STALE = "stale"  # they load, but were made with other settings (or by a version that kept no record)
    MISSING = "missing"  # a file is absent or does not load (e.g. cut short)


class OutputStore:
    """Saves a video's outputs as .npy or .pkl files, one per key, and beside them the settings that
    made them (``{name}_settings.json``, written last), so that only outputs made with the same
    settings count as done."""

    def __init__(self, output_dir: str, on_extraction: str):
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
                write_atomically(self.path(name, key), lambda file: np.save(file, value))
            else:
                write_atomically(self.path(name, key), lambda file: pickle.dump(value, file))
        record = json.dumps(settings, indent=1, sort_keys=True).encode()
        write_atomically(self.settings_path(name), lambda file: file.write(record))

    def state(self, name: str, keys: list[str], settings: dict) -> OutputState:
        """Whether a video's outputs are saved, made with ``settings``. Anything but a file that is
        absent or does not load (a permission error, a bug) raises OutputError: the outputs may be
        good, so they must not be redone and replaced."""
        for key in keys:
            try:
                self.load(name, key)
            except (FileNotFoundError, NotADirectoryError, *NOT_AN_ARRAY):  # not there (a file where a folder would be)
                return OutputState.MISSING
            except Exception as error:
                raise OutputError(_cause(error, self.path(name, key))) from error
        try:
            with open(self.settings_path(name), encoding="utf-8") as file:
                recorded = json.load(file)
        except (FileNotFoundError, NotADirectoryError, ValueError):  # no record, or one cut short
            return OutputState.STALE
        except OSError as error:
            raise OutputError(_cause(error, self.settings_path(name))) from error
        return OutputState.DONE if recorded == settings else OutputState.STALE

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
