"""SlowFast networks in pytorchvideo's module layout, so its Kinetics checkpoints load strictly.

Our own compact implementation of pytorchvideo 0.1.5's ``create_slowfast`` (as built by its hub
functions ``slowfast_r50``, ``slowfast_r101`` and ``slowfast_16x8_r101_50_50``): the same module
names and shapes, the same order of operations, and nothing a feature extractor does not use
(head dropout, detection heads, builder options).

``blocks.0`` holds the two stems and ``blocks.1``-``blocks.4`` the residual stages res2-res5, each
as ``multipathway_blocks.{0: slow, 1: fast}`` followed by a fast-to-slow fusion (none after res5);
``blocks.5`` average-pools each pathway and concatenates them (2048 + 256 = 2304 channels) and
``blocks.6.proj`` is the Kinetics-400 classifier.
"""
from typing import Optional

import torch
from torch import nn

from video_features.models.slowfast.architectures import CONFIGS, SlowFastConfig, TemporalKernels

ALPHA = 4  # the slow pathway sees one frame in ALPHA of the fast pathway's
BETA = 8  # the fast pathway has 1/BETA of the slow pathway's channels
FUSION_CHANNELS = 2  # a fusion conv doubles the fast channels it sends to the slow pathway
STEM_CHANNELS = 64  # slow stem output; stage outputs are 256, 512, 1024, 2048
HEAD_SPATIAL_POOL = 7  # the head's pooling kernel: res5 is 7x7 for a 224 crop
NUM_CLASSES = 400

def slow_pathway_indices(num_frames: int, device=None) -> torch.Tensor:
    """The fast frames the slow pathway sees: linspace(0, T-1, T // ALPHA), floored."""
    return torch.linspace(0, num_frames - 1, num_frames // ALPHA, device=device).long()


class Stem(nn.Module):
    def __init__(self, out_channels: int, temporal_kernel: int):
        super().__init__()
        self.conv = nn.Conv3d(
            3, out_channels, (temporal_kernel, 7, 7), stride=(1, 2, 2), padding=(temporal_kernel // 2, 3, 3), bias=False
        )
        self.norm = nn.BatchNorm3d(out_channels)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.norm(self.conv(x))))


class Bottleneck(nn.Module):
    """Tx1x1 conv_a, 1x3x3 conv_b (carries the spatial stride), 1x1x1 conv_c; BN after each."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                                bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                                bias=False)
        self.norm_b = nn.BatchNorm3d(dim_inner)
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm_a(self.conv_a(x)))
        x = torch.relu(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.branch1_conv: Optional[nn.Conv3d] = None
        self.branch1_norm: Optional[nn.BatchNorm3d] = None
        if dim_in != dim_out or stride != 1:  # a projection shortcut, as in every stage's first block
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_norm = nn.BatchNorm3d(dim_out)
        self.branch2 = Bottleneck(dim_in, dim_inner, dim_out, temporal_kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return torch.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, depth: int, temporal_kernels: TemporalKernels,
                 stride: int):
        super().__init__()
        kernels = (temporal_kernels,) * depth if isinstance(temporal_kernels, int) else temporal_kernels
        assert len(kernels) == depth
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, kernels[i], stride if i == 0 else 1)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class FastToSlowFusion(nn.Module):
    """A strided temporal conv brings the fast pathway to the slow frame rate; its output is
    concatenated after the slow channels."""

    def __init__(self, fast_channels: int, temporal_kernel: int):
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(
            fast_channels,
            fast_channels * FUSION_CHANNELS,
            (temporal_kernel, 1, 1),
            stride=(ALPHA, 1, 1),
            padding=(temporal_kernel // 2, 0, 0),
            bias=False,
        )
        self.norm = nn.BatchNorm3d(fast_channels * FUSION_CHANNELS)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = torch.relu(self.norm(self.conv_fast_to_slow(fast)))
        return torch.cat([slow, fused], 1), fast


class TwoPathwayBlock(nn.Module):
    """One stage of both pathways, then the fusion (pytorchvideo's MultiPathWayWithFuse)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: Optional[FastToSlowFusion]):
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, pathways: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        slow, fast = (block(x) for block, x in zip(self.multipathway_blocks, pathways))
        if self.multipathway_fusion is None:
            return slow, fast
        return self.multipathway_fusion(slow, fast)


class PathwayPooling(nn.Module):
    """Average-pools each pathway over its whole clip and a 7x7 area, then concatenates them."""

    def __init__(self, num_frames: int):
        super().__init__()
        self.pool = nn.ModuleList(
            nn.AvgPool3d((frames, HEAD_SPATIAL_POOL, HEAD_SPATIAL_POOL), stride=1)
            for frames in (num_frames // ALPHA, num_frames)
        )

    def forward(self, pathways: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.cat([pool(x) for pool, x in zip(self.pool, pathways)], 1)


class Head(nn.Module):
    """Holds the Kinetics classifier ``proj``; SlowFast.forward applies it to the features."""

    def __init__(self, in_features: int):
        super().__init__()
        self.proj = nn.Linear(in_features, NUM_CLASSES)


class SlowFast(nn.Module):
    """(B, 3, T, H, W) fast clip -> (2304-d features, Kinetics-400 logits). T must be the
    config's ``num_frames``: the head's temporal pooling spans exactly that many frames."""

    def __init__(self, config: SlowFastConfig):
        super().__init__()
        self.num_frames = config.num_frames
        blocks = [
            TwoPathwayBlock(
                Stem(STEM_CHANNELS, temporal_kernel=1),
                Stem(STEM_CHANNELS // BETA, temporal_kernel=5),
                FastToSlowFusion(STEM_CHANNELS // BETA, config.fusion_kernel),
            )
        ]
        dim_in, dim_out = STEM_CHANNELS, STEM_CHANNELS * 4
        for stage, depth in enumerate(config.depths):
            fused_in = dim_in + dim_in * FUSION_CHANNELS // BETA  # slow channels plus the fusion's
            stride = 1 if stage == 0 else 2
            slow = ResStage(fused_in, dim_out // 4, dim_out, depth, config.slow_conv_a[stage], stride)
            fast = ResStage(dim_in // BETA, dim_out // 4 // BETA, dim_out // BETA, depth, config.fast_conv_a[stage],
                            stride)
            fusion = FastToSlowFusion(dim_out // BETA, config.fusion_kernel) if stage < 3 else None
            blocks.append(TwoPathwayBlock(slow, fast, fusion))
            dim_in, dim_out = dim_out, dim_out * 2
        blocks.append(PathwayPooling(config.num_frames))
        blocks.append(Head(dim_in + dim_in // BETA))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # a new tensor for the slow pathway: the caller's clips are never modified
        slow = clips.index_select(2, slow_pathway_indices(clips.shape[2], clips.device))
        pathways = (slow, clips)
        for block in self.blocks[:5]:
            pathways = block(pathways)
        pooled = self.blocks[5](pathways)  # (B, 2304, t, h, w): 1x2x2 positions for a 256 crop
        features = pooled.mean((2, 3, 4))
        # pytorchvideo applies proj at every position and then averages: the same, proj being affine
        return features, self.blocks[6].proj(features)


def build_network(checkpoint) -> SlowFast:
    return SlowFast(CONFIGS[checkpoint.architecture])
