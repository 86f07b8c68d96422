"""Writing a file so that a killed run never leaves a partial one that looks finished: under a
temporary name in the same folder, renamed into place; and removing the temporary files that
killed writers left."""
import contextlib
import os
import tempfile
import time
from typing import Callable

from video_features.utils.store.liveness import HOST, process_has_ended

TMP_PREFIX = ".tmp-"
STALE_FOREIGN_SECONDS = 24 * 3600  # a temporary file of another machine's process is left this long


def _file_mode() -> int:
    """The mode a plain open() would give a new file: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temporary_file(path: str) -> tuple[int, str]:
    """A new empty file beside ``path``, named so that remove_stale_temporary_files knows its writer:
    ``.tmp-{host}-{pid}-{random}-{basename}``; its open handle and its path."""
    folder = os.path.dirname(path) or "."  # a bare file name: the current folder
    os.makedirs(folder, exist_ok=True)
    prefix = f"{TMP_PREFIX}{HOST}-{os.getpid()}-"
    return tempfile.mkstemp(prefix=prefix, suffix="-" + os.path.basename(path), dir=folder)


def temporary_path(path: str) -> str:
    """A new empty file beside ``path`` to write it under (see write_atomically), with the mode a
    plain open() would give it; the caller renames it into place or removes it."""
    handle, tmp = _temporary_file(path)
    os.close(handle)
    os.chmod(tmp, _file_mode())
    return tmp


def write_atomically(path: str, write: Callable) -> None:
    """Writes under a temporary name (naming this host and process) and renames into place."""
    handle, tmp = _temporary_file(path)
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
    rest = name[len(TMP_PREFIX):]
    # the host name may hold '-' itself (node-001): this host's files are recognised by its whole name
    pid = rest[len(HOST) + 1:].partition("-")[0] if rest.startswith(HOST + "-") else ""
    if pid.isdigit():
        return process_has_ended(HOST, pid)
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


def cause(error: OSError) -> str:
    """An OSError's cause in a few words: 'No space left on device', not pyarrow's paragraph."""
    if error.errno:
        return os.strerror(error.errno)
    return error.strerror or str(error)
