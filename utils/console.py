"""Lines for the user on stderr, which outlive whoever reads them: a pipe whose reader has gone
(`| tee log` after Ctrl-C, `| head`) or a terminal that was closed (SIGHUP) drops the lines from
there on, and the run goes on or stops cleanly as its own rules say. Saved outputs and the run log,
not these lines, are what a run leaves."""
import os
import sys
import warnings

from tqdm import tqdm

from video_features.utils.errors import VideoFeaturesWarning


def drop_output(stream) -> None:
    """From now on, what is written to ``stream`` (sys.stdout or sys.stderr) goes nowhere: its reader
    has gone. Its file descriptor is pointed at /dev/null, so that neither a later line nor Python's
    flush at exit fails again."""
    with open(os.devnull, "w") as devnull:
        try:
            stream.flush()
        except OSError:
            pass  # what is buffered was for the reader that has gone
        os.dup2(devnull.fileno(), stream.fileno())


def say(line: str) -> None:
    """One line on stderr (above any progress bar); dropped, with those after it, when nobody reads."""
    try:
        tqdm.write(line, file=sys.stderr)
        sys.stderr.flush()
    except OSError:  # BrokenPipeError, or EIO from a terminal that was closed
        drop_output(sys.stderr)


def library_warnings_as_lines() -> None:
    """From now on the library's warnings show as the command line shows them, ``warning: ...`` on
    a line of their own, without the file and source line of the call that warned; others as
    before. Only their text changes (``warnings.formatwarning``): a caller that records warnings
    (``warnings.catch_warnings(record=True)``, ``pytest.warns``) still gets them."""
    previous = warnings.formatwarning
    if getattr(previous, "one_line", False):
        return

    def format_warning(message, category, filename, lineno, line=None):
        if issubclass(category, VideoFeaturesWarning):
            return f"warning: {message}\n"
        return previous(message, category, filename, lineno, line)

    format_warning.one_line = True
    warnings.formatwarning = format_warning
