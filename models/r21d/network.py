"""R(2+1)D networks: torchvision's r2plus1d_18 and the IG-65M R(2+1)D-34 in its release layout.

The IG-65M files (moabitcoin/ig65m-pytorch, converted from Facebook's Caffe2 VMZ models) differ
from what torchvision's VideoResNet would build in two ways, and load strictly only with both:
- VMZ computes the mid-planes of a block's second (2+1)D conv from that conv's own in/out
  planes, while torchvision reuses the first conv's; this matters in the first block of layers
  2-4 (288, 576, 1152 instead of 230, 460, 921);
- Caffe2's BatchNorm epsilon is 1e-3, not 1e-5.
"""
import torch
from torch import nn
from torchvision.models.video import r2plus1d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet


def _midplanes(in_planes: int, out_planes: int) -> int:
    # the (2+1)D factorisation keeps the parameter count of a full 3x3x3 conv
    return in_planes * out_planes * 27 // (in_planes * 9 + 3 * out_planes)


def r2plus1d_34_ig65m(num_classes: int = 400) -> VideoResNet:
    network = VideoResNet(
        block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3], stem=R2Plus1dStem, num_classes=num_classes
    )
    for layer in (network.layer2, network.layer3, network.layer4):
        planes = layer[0].conv2[0][0].in_channels
        layer[0].conv2[0] = Conv2Plus1D(planes, planes, _midplanes(planes, planes))
    for module in network.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.eps = 1e-3
    return network


def build_network(model_name: str) -> VideoResNet:
    if model_name.startswith("r2plus1d_18"):
        return r2plus1d_18(weights=None)
    return r2plus1d_34_ig65m()


def features_and_logits(network: VideoResNet, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, T, 112, 112) -> the 512-d input of ``fc`` and the Kinetics-400 logits."""
    x = network.stem(clips)
    x = network.layer4(network.layer3(network.layer2(network.layer1(x))))
    features = network.avgpool(x).flatten(1)
    return features, network.fc(features)
