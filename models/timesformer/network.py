"""TimeSformer with divided space-time attention, in facebookresearch/TimeSformer's key layout.

A compact re-implementation of the official ``vit.py`` forward on
``torch.nn.functional.scaled_dot_product_attention`` (flash or memory-efficient kernels on GPU).
Its state dict has the official key names, so the released ``.pyth`` files load strictly once
their ``model.`` prefix is stripped; ``from_hf_layout`` renames the Hugging Face checkpoints'
keys to the same names.

Tokens are laid out as in the official code: the CLS token first, then the patches space-major,
time-minor (patch s of frame t at 1 + s * T + t).
"""
import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # default scale head_dim ** -0.5, as the official
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    """Temporal attention, then spatial attention, then the MLP (official divided space-time)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        batch, _, dim = x.shape
        cls, patches = x[:, :1], x[:, 1:]
        space = patches.shape[1] // frames
        # temporal: each patch position attends over its T frames (time-minor layout: a plain reshape)
        temporal = self.temporal_attn(self.temporal_norm1(patches.reshape(batch * space, frames, dim)))
        patches = patches + self.temporal_fc(temporal.reshape(batch, space * frames, dim))
        # spatial: each frame attends over its patches plus its own copy of the CLS token
        per_frame = patches.reshape(batch, space, frames, dim).transpose(1, 2).reshape(batch * frames, space, dim)
        cls_per_frame = cls.expand(batch, frames, dim).reshape(batch * frames, 1, dim)
        spatial = self.attn(self.norm1(torch.cat([cls_per_frame, per_frame], dim=1)))
        cls_update = spatial[:, 0].reshape(batch, frames, dim).mean(dim=1, keepdim=True)  # averaged over frames
        patch_update = spatial[:, 1:].reshape(batch, frames, space, dim).transpose(1, 2)
        patch_update = patch_update.reshape(batch, space * frames, dim)
        x = torch.cat([cls, patches], dim=1) + torch.cat([cls_update, patch_update], dim=1)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)


class TimeSformer(nn.Module):
    """Built for ``num_frames`` frames of ``img_size`` squares; other sizes interpolate the
    position and time embeddings (nearest), as the official forward does."""

    def __init__(
        self,
        num_classes: int = 400,
        img_size: int = 224,
        num_frames: int = 8,
        patch_size: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def patch_position_embedding(self, height: int, width: int) -> torch.Tensor:
        """(height * width, D): the patch position embeddings, nearest-resized to a height x width grid."""
        embedding = self.pos_embed[0, 1:]
        if height * width == embedding.shape[0]:  # the official code resizes only when the count differs
            return embedding
        grid = embedding.T.reshape(1, -1, self.grid, self.grid)
        return F.interpolate(grid, size=(height, width), mode="nearest").flatten(2)[0].T

    def time_embedding(self, frames: int) -> torch.Tensor:
        """(frames, D): the time embeddings, nearest-resized to ``frames``."""
        embedding = self.time_embed
        if frames != embedding.shape[1]:
            embedding = F.interpolate(embedding.transpose(1, 2), size=frames, mode="nearest").transpose(1, 2)
        return embedding[0]

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> the normed CLS token (B, D)."""
        batch, channels, frames, height, width = clips.shape
        patches = self.patch_embed.proj(clips.transpose(1, 2).reshape(batch * frames, channels, height, width))
        grid_h, grid_w = patches.shape[-2:]
        patches = patches.flatten(2).transpose(1, 2) + self.patch_position_embedding(grid_h, grid_w)
        dim = patches.shape[-1]
        patches = patches.reshape(batch, frames, grid_h * grid_w, dim).transpose(1, 2) + self.time_embedding(frames)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(batch, 1, dim)
        x = torch.cat([cls, patches.reshape(batch, grid_h * grid_w * frames, dim)], dim=1)
        for block in self.blocks:
            x = block(x, frames)
        return self.norm(x[:, 0])  # LayerNorm is per token: norming the CLS token alone is the same

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(clips)
        return features, self.head(features)
