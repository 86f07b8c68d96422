"""Output names: a video's path relative to ``input_root`` (default: the current folder), without
extension. ``cat/000.mp4`` and ``dog/000.mp4`` get different names, and a name depends on nothing
but its video's path, so names do not move when the list changes."""
import os
from typing import Optional

from video_features.utils.errors import OutputNameClash


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
