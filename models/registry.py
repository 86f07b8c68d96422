"""What a model package declares, and the one registry of feature types.

A feature type is a family of networks. Each pretrained network of it is a ``Checkpoint``: a
record of data (as torchvision's ``Weights`` and timm's pretrained configs are) that says where
its weights are, how windows are cut and sampled by default, how frames are preprocessed and
which classes its logits name. A family adds the code: a builder of the network, whose
``forward(clips)`` returns ``(features, logits)``, and how its checkpoint files are read.

A model package registers its family on import. Which package serves a feature type is said by
``configs/feature_type/<name>.yaml`` (``model_package``), so a new network is one package and one
config file: ``families()`` imports every package the config group names.
"""
import functools
import glob
import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from omegaconf import OmegaConf

from video_features.utils.frames.preprocessing import Preprocessing

if TYPE_CHECKING:
    import torch

CONFIG_GROUP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "feature_type")


@dataclass(frozen=True)
class Checkpoint:
    """One pretrained network."""

    name: str  # the model_name option
    architecture: str  # which network the family builds for it
    url: str  # the official file, downloaded into the torch hub cache
    stack_size: int  # default frames per window
    step_size: int  # default frames from one window's start to the next
    preprocessing: Preprocessing
    classes: str  # the label set of its logits (utils/network/labels.py)
    num_classes: int = 400
    num_frames: Optional[int] = None  # frames the network sees per window; None: every frame
    sampling: str = "linspace"  # how those are picked from a window (utils/frames/windows.py)
    sha256_prefix: Optional[str] = None  # checked on download where the release names it
    key_prefix: str = ""  # prefix of the state dict's keys in the official file


def read_official(state: dict, checkpoint: Checkpoint) -> tuple[dict, Checkpoint]:
    """The state dict of an official file: under ``model_state`` in .pyth files, its keys
    prefixed ``key_prefix``; a bare state dict also loads."""
    state = state.get("model_state", state)
    if checkpoint.key_prefix:
        state = {key.removeprefix(checkpoint.key_prefix): value for key, value in state.items()}
    return state, checkpoint


@dataclass(frozen=True)
class Family:
    """A feature type: its checkpoints (the first is the default) and the code they share."""

    feature_type: str
    checkpoints: tuple[Checkpoint, ...]
    build_network: Callable[[Checkpoint], "torch.nn.Module"]  # random weights; forward -> (features, logits)
    # a state dict as read from a file -> the network's state dict and the checkpoint it implies
    # (a checkpoint in another layout may bring its own preprocessing)
    read_state: Callable[[dict, Checkpoint], tuple[dict, Checkpoint]] = read_official
    channels_last: bool = False  # 3D convnets run faster on channels_last_3d tensors (benchmarks/)

    @property
    def default(self) -> Checkpoint:
        return self.checkpoints[0]

    def checkpoint(self, model_name: Optional[str]) -> Checkpoint:
        """The checkpoint called ``model_name`` (the default for None); KeyError names the choices."""
        if model_name is None:
            return self.default
        for checkpoint in self.checkpoints:
            if checkpoint.name == model_name:
                return checkpoint
        raise KeyError(
            f"unknown model_name '{model_name}' for feature_type={self.feature_type}; "
            f"choose one of: {', '.join(c.name for c in self.checkpoints)}"
        )


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Makes a feature type known; a model package calls this when it is imported."""
    names = [checkpoint.name for checkpoint in family.checkpoints]
    assert names and len(set(names)) == len(names), f"{family.feature_type}: checkpoint names must be unique"
    _FAMILIES[family.feature_type] = family
    return family


def load_family(feature_type: str, package: Optional[str] = None) -> Family:
    """The family of ``feature_type``, importing ``package`` (by default the one its config in
    configs/feature_type/ names), which registers it, if needed."""
    package = package or config_group_packages().get(feature_type)
    if feature_type not in _FAMILIES and package:
        importlib.import_module(package)
    if feature_type not in _FAMILIES:
        raise KeyError(f"unknown feature_type '{feature_type}'; choose one of: {', '.join(families())}")
    return _FAMILIES[feature_type]


@functools.cache
def config_group_packages() -> dict[str, str]:
    """feature_type -> model_package, as configs/feature_type/*.yaml declare them."""
    packages = {}
    for path in sorted(glob.glob(os.path.join(CONFIG_GROUP, "*.yaml"))):
        config = OmegaConf.load(path)
        packages[config.feature_type] = config.model_package
    return packages


def families() -> dict[str, Family]:
    """Every feature type of the config group (and any registered since), in name order."""
    for feature_type, package in config_group_packages().items():
        if feature_type not in _FAMILIES:
            importlib.import_module(package)
    return dict(sorted(_FAMILIES.items()))

