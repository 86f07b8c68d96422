"""Hydra's side of the options: the ``Options`` schema in Hydra's ConfigStore, the composition of
``configs/`` with a command line's overrides, and the one conversion of Hydra's config into
``Options``: below this edge nothing takes a DictConfig."""
import os
from typing import Iterable

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from video_features.utils.errors import SettingsError
from video_features.utils.options import Options, check_options, one_line

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")

ConfigStore.instance().store(name="extraction_schema", node=Options)


def hydra_one_line(error: Exception) -> str:
    """Hydra's and OmegaConf's errors as one line naming the option."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, choice = error.missing_cfg_file.rpartition("/")  # an unknown choice of a config group
        return f"unknown {group} '{choice}'; choose one of: {', '.join(error.options)}"
    if isinstance(error, OmegaConfBaseException) or isinstance(error.__cause__, OmegaConfBaseException):
        return one_line(error)
    return str(error).strip().splitlines()[0]


def load_config(overrides: Iterable[str] = ()) -> DictConfig:
    """The configuration for Hydra overrides ("key=value" strings), composed as the command line
    composes it, and checked."""
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise SettingsError(hydra_one_line(error)) from None
    to_options(cfg)
    return cfg


def to_options(cfg: DictConfig) -> Options:
    """Hydra's config of a job as ``Options``, checked."""
    options = OmegaConf.to_object(cfg)
    check_options(options)
    return options
