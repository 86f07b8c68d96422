"""What a run's inputs are: the videos that video_paths and file_with_video_paths name (folders
stand for the videos under them; a URL ending in / for those under it, utils/video/remote.py), and
this process's shard of them."""
import os
from typing import Optional

from video_features.utils.errors import SettingsError, VideoError
from video_features.utils.options import Options
from video_features.utils.video.remote import canonical, list_remote, protocol_of, redact, unsupported_reason
from video_features.utils.video.remote_retry import Policy

# What a folder given as an input contributes: its files with these extensions (any case)
VIDEO_EXTENSIONS = (".3gp", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".mxf",
                    ".ogv", ".ts", ".vob", ".webm", ".wmv")


def given_paths(options: Options) -> list[str]:
    """What video_paths names, as a list."""
    given = options.video_paths
    if given is None:
        return []
    return [str(path) for path in given] if isinstance(given, (list, tuple)) else [str(given)]


def video_paths(options: Options) -> list[str]:
    return listed_videos(options)[0]


def listed_videos(options: Options) -> tuple[list[str], dict[str, int]]:
    """The input videos: video_paths then the lines of file_with_video_paths, each folder among them
    replaced by the videos under it; a file given twice, however spelled (``a.mp4``, ``./a.mp4``, a
    link to it; a URL with another query string), is kept once, as first spelled. With them, the
    bytes of the URLs a listing gave (their readers need not ask)."""
    paths = given_paths(options)
    if options.file_with_video_paths is not None:
        listed = _listed_paths(str(options.file_with_video_paths))
        if not listed and not paths:
            raise SettingsError(f"file_with_video_paths={options.file_with_video_paths}: the file lists no videos "
                                "(one path per line; blank lines and # comments are left out)")
        paths.extend(listed)
    if not paths:
        raise SettingsError("no videos given: set video_paths=... or file_with_video_paths=...")
    unique: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for path in paths:
        if protocol_of(path) is None:
            for video in videos_in(path) if os.path.isdir(path) else [path]:
                unique.setdefault(os.path.realpath(video), video)
            continue
        for url, size in _remote_videos(path, options.remote_policy):
            unique.setdefault(redact(url), url)
            if size is not None:
                sizes[url] = size
    if not unique:
        raise SettingsError(f"no videos in {', '.join(map(redact, paths))} "
                            f"(videos are files ending in {', '.join(VIDEO_EXTENSIONS)})")
    return list(unique.values()), sizes


def _remote_videos(url: str, policy: Policy) -> list[tuple[str, Optional[int]]]:
    """A URL, or the videos under a folder's URL (ending in /) with their sizes where listed."""
    if not url.endswith("/"):
        return [(url, None)]
    try:
        return list(list_remote(url, VIDEO_EXTENSIONS, policy))
    except VideoError as error:  # a folder given that cannot be listed: the option is wrong, or the server
        raise SettingsError(f"{redact(url)}: cannot list it: {error}") from None


def videos_in(folder: str) -> list[str]:
    """The video files under ``folder`` and its subfolders: a folder's own files, then its
    subfolders', each sorted by name; hidden files and folders (an output's .runs, say) are left
    out, and linked folders are not followed."""
    videos = []
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        videos += [os.path.join(parent, name) for name in sorted(files)
                   if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)]
    return videos


def _listed_paths(list_file: str) -> list[str]:
    """The lines of a list file, blank lines and # comments left out. UTF-8, with or without the
    byte-order mark some Windows editors write, and with LF or CRLF line ends."""
    try:
        with open(list_file, "rb") as file:
            data = file.read()
    except OSError as error:
        raise SettingsError(f"file_with_video_paths={list_file}: {error.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SettingsError(f"file_with_video_paths={list_file}: not UTF-8 text (line {line} has the byte "
                            f"0x{data[error.start]:02x}); save it as UTF-8") from None
    lines = (line.strip() for line in text.split("\n"))
    return [line for line in lines if line and not line.startswith("#")]


def check_files(options: Options) -> None:
    """That the files the options name are there; run before a sweep's jobs start, and before the
    model loads. A video or folder that video_paths names and that is not there is a mistyped
    option; a video of a list file that has gone fails alone, and the others are extracted. The list
    is not read here: it may be a pipe (``file_with_video_paths=<(ls *.mp4)``) that reads once."""
    list_file = options.file_with_video_paths
    if list_file is not None and not os.path.exists(list_file):
        raise SettingsError(f"file_with_video_paths={list_file}: No such file or directory")
    for path in given_paths(options):
        if protocol_of(path) is None and not os.path.lexists(path):
            raise SettingsError(f"video_paths: {path}: no such file or folder")
        if protocol_of(path) is not None and unsupported(path):
            raise SettingsError(f"video_paths: {redact(path)}: {unsupported(path)}")


def missing_videos(paths: list[str], shown: int = 3) -> Optional[str]:
    """A line saying which of ``paths`` (local files) are not there, or None. A list of a million is
    checked in a thread while the model loads: each missing video still fails in its turn, but the
    user learns of them at the start, not hours into the run."""
    missing = [path for path in paths if protocol_of(path) is None and not os.path.lexists(path)]
    if not missing:
        return None
    first = ", ".join(missing[:shown]) + (f" and {len(missing) - shown} more" if len(missing) > shown else "")
    verb = "is" if len(missing) == 1 else "are"
    return (f"{len(missing)} of the {len(paths)} videos to read {verb} not there: {first} "
            "(each fails in its turn; the others are extracted)")


def unsupported(path: str) -> Optional[str]:
    """Why an input cannot be read at all (a URL of a protocol with no reader here), or None."""
    if protocol_of(path) is None:
        return None
    return unsupported_reason(path)


def shard(paths: list[str], shard_id: int, num_shards: int) -> list[str]:
    """This shard's part of the list, in the input order: every num_shards-th video in the order of
    their absolute paths, so that the shards are disjoint, cover the list and do not depend on the
    order of the inputs."""
    mine = set(sorted(paths, key=canonical)[shard_id::num_shards])
    return [path for path in paths if path in mine]
