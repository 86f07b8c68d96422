"""video_features: per-window video features with R(2+1)D, SlowFast and TimeSformer.

    from video_features import Extractor

    with Extractor("r21d", device="cpu") as extractor:
        outputs = extractor.extract("video.mp4")  # {'r21d': (N, 512), 'timestamps_ms': (N, 2), 'fps': ()}

This folder is the package: models/ holds the networks, utils/ the rest (README, Layout).
"""
import importlib

# What ``from video_features import X`` gives, imported on first use: the command line imports
# this package too, and checks its options before torch (seconds) is imported.
_PUBLIC = {
    "Extractor": "video_features.utils.extractor",
    "VideoResult": "video_features.utils.pipeline.video_in_flight",
    "ExtractionError": "video_features.utils.errors",
    "SettingsError": "video_features.utils.errors",
    "WeightsError": "video_features.utils.errors",
    "DeviceError": "video_features.utils.errors",
    "read_video": "video_features.utils.store.shard_index",
    "export_hdf5": "video_features.utils.store.hdf5",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'video_features' has no attribute '{name}'")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
