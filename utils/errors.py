"""The errors the library raises for what its caller must change or know; the command line turns
each into one line and an exit code (utils/cli/app.py). Every message is one line."""


class SettingsError(ValueError):
    """A setting that cannot be used (a device this machine lacks, a window too short for the
    network, an output_path that cannot be written). The message names the setting."""


class WeightsError(Exception):
    """Weights cannot be had. The message says where they were looked for and what to do."""


class OutputNameClash(ValueError):
    """Two inputs would write the same output files."""


class OutputError(Exception):
    """A video's saved outputs cannot be checked. The message names the file and the cause, as in
    ``out/a_r21d.npy: Permission denied``."""


class DeviceError(Exception):
    """The device failed (out of memory, a CUDA error): the run stops."""


class ExtractionError(Exception):
    """A video could not be extracted. The message names the cause."""


class VideoError(Exception):
    """A video cannot be read. The message is one line that names the cause."""


class VideoFeaturesWarning(UserWarning):
    """What the library warns of, in one line; shown as ``warning: ...``, as the command line shows
    it (utils/console.py), not with the file and source line of the call that warned."""


class PartialVideo(VideoFeaturesWarning):
    """With ``keep_partial``: the video was read only in part (truncated, or corrupt data)."""


class ShardWriteError(Exception):
    """An open shard of packed outputs could not be written (e.g. a full disk): its videos were not
    saved. ``names``: those videos, whose claims the caller gives up so that a later run extracts them."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


class ExportError(Exception):
    """An output folder cannot be exported (its videos were made with different settings, a file does
    not load). The message names the folder or file and the cause."""
