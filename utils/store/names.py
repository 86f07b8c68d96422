"""Output names: a video's path relative to ``input_root`` (default: the current folder), without
extension. ``cat/000.mp4`` and ``dog/000.mp4`` get different names, and a name depends on nothing
but its video's path, so names do not move when the list changes. A URL's name is its path under
an ``input_root`` URL, or else ``scheme/host/path``; never its query string (a signed URL's)."""
import os
from typing import Optional
from urllib.parse import unquote

from video_features.utils.errors import OutputNameClash, SettingsError
from video_features.utils.video.remote import canonical, protocol_of, redact


def output_name(path: str, input_root: Optional[str] = None) -> str:
    """A video's output name: its path relative to ``input_root`` (None: the current folder),
    without extension; for a video outside that folder, its absolute path without the leading '/'."""
    if protocol_of(path) is not None:
        return _url_name(path, input_root)
    full = os.path.abspath(path)
    root = os.path.abspath(input_root or os.getcwd())
    inside = full != root and os.path.commonpath([full, root]) == root
    return os.path.splitext(os.path.relpath(full, root) if inside else full.lstrip(os.sep))[0]


def _url_name(url: str, input_root: Optional[str]) -> str:
    plain = unquote(redact(url))
    root = unquote(redact(input_root)).rstrip("/") + "/" if input_root and protocol_of(input_root) else None
    relative = plain[len(root):] if root and plain.startswith(root) else plain.replace("://", "/", 1)
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:  # a name must stay under output_path
        raise SettingsError(f"{redact(url)}: a URL with '..' in its path has no output name; give it without")
    return os.path.splitext("/".join(parts))[0]


def output_names(paths: list[str], input_root: Optional[str] = None) -> dict[str, str]:
    """Maps each input path to its output name (``output_name``); two files with one name are refused."""
    names = {}
    owner_of = {}
    for path in paths:
        full = canonical(path)
        name = output_name(path, input_root)
        if name in owner_of and owner_of[name] != full:
            raise OutputNameClash(
                f"'{owner_of[name]}' and '{full}' would write the same output files '{name}_*'; "
                "rename one of them, set input_root, or extract them in separate runs"
            )
        owner_of[name] = full
        names[path] = name
    return names
