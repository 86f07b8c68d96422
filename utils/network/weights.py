"""Finding and loading checkpoint files.

Weights come from, in this order: ``weights_path`` (a local file, or ``hf://owner/repo`` for the
Hugging Face hub), the torch hub cache, or a download of the official file into that cache
(checked against its sha256 prefix where the model lists one). Nothing ever falls back to
random weights: that happens only when the user sets ``pretrained=false``.

torch is imported by the functions that read or fetch a file, not with this module: the command
line checks ``weights_path`` before the seconds that importing torch takes.
"""
import os
import re
import urllib.error
import urllib.parse
import warnings
from typing import TYPE_CHECKING, Optional

from video_features.utils.errors import VideoFeaturesWarning, WeightsError

if TYPE_CHECKING:
    import torch

HF_PREFIX = "hf://"


def hub_cache_path(url: str) -> str:
    import torch

    # the URL's path only: a query such as Dropbox's ?dl=1 is not part of the file name
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urllib.parse.urlparse(url).path))


def _download(url: str, destination: str, sha256_prefix: Optional[str]) -> None:
    import torch

    os.makedirs(os.path.dirname(destination), exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, destination, hash_prefix=sha256_prefix)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsError(
            f"cannot download {url} ({reason}). Put the file at {destination}, or pass "
            "weights_path=FILE, or pretrained=false for random weights (the features are then meaningless)"
        ) from error


def _hf_file(repo_id: str, download: bool = True) -> str:
    try:
        import huggingface_hub
    except ImportError as error:
        raise WeightsError(f"weights_path={HF_PREFIX}{repo_id} needs the huggingface_hub package") from error
    last_error = None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            return huggingface_hub.hf_hub_download(repo_id, filename, local_files_only=not download)
        except Exception as error:  # the hub raises many kinds: offline, missing file, bad repo
            last_error = error
    raise WeightsError(f"cannot fetch {HF_PREFIX}{repo_id} from the Hugging Face hub: {last_error}")


def check_weights_path(weights_path: Optional[str]) -> None:
    """WeightsError when ``weights_path`` names a local file that is not there."""
    if weights_path and not weights_path.startswith(HF_PREFIX) and not os.path.isfile(weights_path):
        raise WeightsError(f"weights_path={weights_path}: file not found")


def resolve_checkpoint(
    url: str, weights_path: Optional[str], pretrained: bool, sha256_prefix: Optional[str] = None,
    download: bool = True,
) -> Optional[str]:
    """The local checkpoint file to load, or None when the user asked for random weights. Without
    ``download``, an official file not in the cache is a WeightsError."""
    if weights_path:
        if weights_path.startswith(HF_PREFIX):
            return _hf_file(weights_path[len(HF_PREFIX):], download)
        check_weights_path(weights_path)
        return weights_path
    if not pretrained:
        warnings.warn("pretrained=false: the network has random weights, so its features are meaningless",
                      VideoFeaturesWarning)
        return None
    cached = hub_cache_path(url)
    if not os.path.isfile(cached):
        if not download:
            raise WeightsError(f"{cached} is not there, so no output can have been made with these weights here "
                               f"(a run would download {url})")
        _download(url, cached, sha256_prefix)
    return cached


def load_state_file(path: str) -> dict:
    """Reads a checkpoint (.pth/.pyth/.bin pickles, or .safetensors) without running pickled code."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise _unreadable(path, error) from error


def _unreadable(path: str, error: Exception) -> WeightsError:
    """One line for a checkpoint that does not load. torch's own message spans lines of advice about
    weights_only; its cause is the first sentence after "WeightsUnpickler error:", or of the message."""
    detail = str(error).split("WeightsUnpickler error:")[-1].strip()
    detail = re.split(r"\.\s|\n", detail, maxsplit=1)[0].rstrip(".")
    detail = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    if "Unsupported global" in detail:  # e.g. torch.save(model): a pickled module, not a state dict
        return WeightsError(f"cannot read checkpoint {path}: it holds pickled Python objects, which are not "
                            f"loaded as they could run code ({detail}); save the model's state_dict() instead")
    return WeightsError(f"cannot read checkpoint {path}: not a checkpoint, or a damaged one ({detail})")


def load_strict(module: "torch.nn.Module", state_dict: dict, source: str) -> None:
    """load_state_dict(strict=True), with a short error that names the file and the first mismatches."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in state_dict]
    unexpected = [k for k in state_dict if k not in ours]
    wrong_shape = [k for k in ours if k in state_dict and tuple(state_dict[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                parts.append(f"{len(keys)} {label} keys (e.g. {', '.join(keys[:3])})")
        raise WeightsError(f"{source} does not fit this model: {'; '.join(parts)}")
    module.load_state_dict(state_dict, strict=True)


def build_with_weights(family, checkpoint, weights_path: Optional[str], pretrained: bool):
    """The family's network for ``checkpoint`` with its weights (or random ones on request), the
    checkpoint record that describes them (a file in another layout may bring its own
    preprocessing) and the weights file (None for random weights)."""
    network = family.build_network(checkpoint)
    path = resolve_checkpoint(checkpoint.url, weights_path, pretrained, checkpoint.sha256_prefix)
    if path is not None:
        state, checkpoint = family.read_state(load_state_file(path), checkpoint)
        load_strict(network, state, path)
    return network, checkpoint, path
