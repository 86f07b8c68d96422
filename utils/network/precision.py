"""Which precisions a device runs well: bf16 and fp16 as autocast dtypes, refused where they would
be emulated; the weights autocast would cast on every forward, cast once."""
import torch

from video_features.utils.errors import SettingsError

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 natively. Without the units oneDNN emulates it: 84x slower than
    fp32 on an AVX2-only EPYC, where with AVX512-BF16 it is 2x faster (README, Precision)."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def check_precision(precision: str, device: torch.device) -> None:
    if device.type == "cpu" and precision == "fp16":
        raise SettingsError("precision=fp16 needs a CUDA device (a CPU emulates it: 128x slower); "
                            "on a CPU use bf16 or fp32")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_bf16_units():
        raise SettingsError(
            "precision=bf16: this CPU has no AVX512-BF16 or AMX units, without which bf16 runs dozens of times "
            "slower than fp32; use precision=fp32 or a CUDA device"
        )


# The layers whose weights autocast casts to the lower precision on every forward (its
# lower-precision op lists: convolutions and linear layers, on CPU and CUDA alike).
AUTOCAST_LAYERS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def cast_autocast_weights(network: torch.nn.Module, dtype: torch.dtype) -> None:
    """Casts the weights and biases of the layers autocast runs in ``dtype`` once, to the values
    autocast would give them on every forward (round to nearest); the rest (norms, embeddings) stays
    float32, as autocast leaves it. The features are the same, bit for bit (tests/test_precision.py)."""
    for module in network.modules():
        if isinstance(module, AUTOCAST_LAYERS):
            module.to(dtype)
