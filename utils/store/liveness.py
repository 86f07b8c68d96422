"""Whether the process that wrote a claim or a temporary file has ended."""
import os
import socket

HOST = socket.gethostname()


def process_has_ended(host, pid) -> bool:
    """True only when that is known: ``host`` is this machine and no process ``pid`` runs on it. A
    process of another machine, or of another user (which this one may not signal), counts as running."""
    if host != HOST:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        return False
    return False
