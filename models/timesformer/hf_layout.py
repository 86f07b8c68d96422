"""Hugging Face transformers' TimeSformer checkpoints: their state-dict key names mapped to the
official ones, so that they load into our network strictly (no torch needed to rename keys)."""

# Hugging Face transformers' names -> the official ones (TimesformerForVideoClassification).
_HF_GLOBALS = {
    "timesformer.embeddings.cls_token": "cls_token",
    "timesformer.embeddings.position_embeddings": "pos_embed",
    "timesformer.embeddings.time_embeddings": "time_embed",
    "timesformer.embeddings.patch_embeddings.projection": "patch_embed.proj",
    "timesformer.layernorm": "norm",
    "classifier": "head",
}
_HF_BLOCK = {
    "layernorm_before": "norm1",
    "attention.attention.qkv": "attn.qkv",
    "attention.output.dense": "attn.proj",
    "temporal_layernorm": "temporal_norm1",
    "temporal_attention.attention.qkv": "temporal_attn.qkv",
    "temporal_attention.output.dense": "temporal_attn.proj",
    "temporal_dense": "temporal_fc",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
_HF_LAYER = "timesformer.encoder.layer."


def is_hf_layout(state_dict: dict) -> bool:
    return any(key.startswith("timesformer.") for key in state_dict)


def _official_name(hf_name: str) -> str:
    if hf_name in _HF_GLOBALS:
        return _HF_GLOBALS[hf_name]
    module, _, param = hf_name.rpartition(".")
    if module in _HF_GLOBALS:
        return f"{_HF_GLOBALS[module]}.{param}"
    if module.startswith(_HF_LAYER):
        index, _, block_module = module[len(_HF_LAYER):].partition(".")
        if block_module in _HF_BLOCK:
            return f"blocks.{index}.{_HF_BLOCK[block_module]}.{param}"
    return hf_name  # left as is, so that a strict load names it


def from_hf_layout(state_dict: dict) -> dict:
    """A Hugging Face TimeSformer state dict with the official key names."""
    return {_official_name(key): value for key, value in state_dict.items()}
