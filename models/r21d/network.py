"""R(2+1)D networks: torchvision's r2plus1d_18 and the IG-65M R(2+1)D-34 in its release layout.

The IG-65M files (moabitcoin/ig65m-pytorch, converted from Facebook's Caffe2 VMZ models) differ
from what torchvision's VideoResNet would build in two ways, and load strictly only with both:
- VMZ computes the mid-planes of a block's second (2+1)D conv from that conv's own in/out
  planes, while torchvision reuses the first conv's; this matters in the first block of layers
  2-4 (288, 576, 1152 instead of 230, 460, 921);
- Caffe2's BatchNorm epsilon is 1e-3, not 1e-5.
"""
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet


class R2Plus1D(VideoResNet):
    """torchvision's VideoResNet with (2+1)D convs, whose forward gives the features too:
    (B, 3, T, 112, 112) -> (the 512-d input of ``fc``, the Kinetics-400 logits)."""

    def __init__(self, layers: list[int]):
        super().__init__(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=layers, stem=R2Plus1dStem)

    def forward(self, clips):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(clips)))))
        features = self.avgpool(x).flatten(1)
        return features, self.fc(features)


def _midplanes(in_planes: int, out_planes: int) -> int:
    # the (2+1)D factorisation keeps the parameter count of a full 3x3x3 conv
    return in_planes * out_planes * 27 // (in_planes * 9 + 3 * out_planes)


def r2plus1d_34_ig65m() -> R2Plus1D:
    network = R2Plus1D(layers=[3, 4, 6, 3])
    for layer in (network.layer2, network.layer3, network.layer4):
        planes = layer[0].conv2[0][0].in_channels
        layer[0].conv2[0] = Conv2Plus1D(planes, planes, _midplanes(planes, planes))
    for module in network.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.eps = 1e-3
    return network


ARCHITECTURES = {
    "r2plus1d_18": lambda: R2Plus1D(layers=[2, 2, 2, 2]),  # torchvision's r2plus1d_18
    "r2plus1d_34_ig65m": r2plus1d_34_ig65m,
}


def build_network(checkpoint) -> R2Plus1D:
    return ARCHITECTURES[checkpoint.architecture]()
