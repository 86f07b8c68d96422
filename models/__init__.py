"""One package per feature type; ``build_extractor`` picks the one a config names."""
import importlib

from omegaconf import DictConfig

from utils.config import ConfigError

# feature_type -> "module:class", imported only when used
EXTRACTORS = {
    "r21d": "models.r21d.extractor:ExtractR21D",
    "slowfast": "models.slowfast.extractor:ExtractSlowFast",
    "timesformer": "models.timesformer.extractor:ExtractTimeSformer",
}


def extractor_class(feature_type: str):
    if feature_type not in EXTRACTORS:
        raise ConfigError(f"unknown feature_type '{feature_type}'; choose one of: {', '.join(EXTRACTORS)}")
    module, name = EXTRACTORS[feature_type].split(":")
    return getattr(importlib.import_module(module), name)


def build_extractor(cfg: DictConfig):
    return extractor_class(cfg.feature_type)(cfg)
