"""The reference architectures of tests/test_weights.py in plain torch, written with torchvision's
and timm's module names so that their state_dicts carry the names those libraries' weights do
(torchvision and timm do not load against the CPU torch build here):

    resnet18/34/50     torchvision.models.resnet: conv1, bn1, layerS.B.{convI, bnI, downsample.0/1}, fc
                       (Bottleneck v1.5: the stride on the 3×3 convolution)
    se-resnet50        timm's seresnet50: resnet50 with layerS.B.se.{fc1, fc2}, 1×1 convolutions
                       with bias, C/16 channels between (timm's make_divisible(C/16, 8))
    vggD               torchvision.models.vgg (no BatchNorm): features.I, avgpool (adaptive 7×7),
                       classifier.0/3/6
    alexnet            torchvision.models.alexnet: features.I, avgpool (adaptive 6×6), classifier.1/4/6
    googlenet          torchvision.models.googlenet with aux_logits=True: BasicConv2d (conv, bn
                       ε = 0.001), inceptionNx.branch1..4, aux1/aux2 (in the state_dict, unused
                       in eval), fc; transform_input=False (cnnlab puts it in the preprocessing)
    mobilenet-v2       torchvision.models.mobilenet_v2: features.0 (Conv2dNormActivation: conv,
                       bn, ReLU6), features.1-17 (InvertedResidual .conv), features.18,
                       classifier.0/1 (Dropout, Linear)
    convnext-tiny      torchvision.models.convnext_tiny: features.0 (conv, LayerNorm2d),
                       features.1/3/5/7 (CNBlock: .block.0-6, .layer_scale), features.2/4/6
                       (LayerNorm2d, conv), classifier.0/2 (LayerNorm2d, Linear); stochastic
                       depth is the identity in eval and left out

`randomize(model, x)` gives every weight random values and every BatchNorm non-trivial
statistics (the running statistics of a training-mode pass over x, γ and β drawn away from 1, 0);
LayerNorm's γ, β and ConvNeXt's layer_scale are drawn too (its 1e-6 would hide the blocks).
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False),
                                         nn.BatchNorm2d(width))
                           if stride != 1 or cin != width else None)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class SEModule(nn.Module):
    """timm.layers.SEModule with its defaults: mean, fc1 (1×1 conv), ReLU, fc2, sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // 16, 1)
        self.fc2 = nn.Conv2d(channels // 16, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, se: bool) -> None:
        super().__init__()
        out = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SEModule(out) if se else None
        self.downsample = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                           if stride != 1 or cin != out else None)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = self.se(y)
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, blocks: list[int], bottleneck: bool, num_classes: int, se: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for stage, count in enumerate(blocks):
            width, layer = 64 << stage, []
            for i in range(count):
                stride = 2 if stage and not i else 1
                layer.append(Bottleneck(cin, width, stride, se) if bottleneck
                             else BasicBlock(cin, width, stride))
                cin = 4 * width if bottleneck else width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.fc(x.mean((2, 3)))


VGG = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
       16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


class VGGNet(nn.Module):
    def __init__(self, depth: int, num_classes: int) -> None:
        super().__init__()
        layers, cin = [], 3
        for v in VGG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Dropout(), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096),
            nn.ReLU(), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, 1), BasicConv2d(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, 1), BasicConv2d(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, pool, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = InceptionAux(512, num_classes)
        self.aux2 = InceptionAux(528, num_classes)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, f"inception{name}")(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(x.mean((2, 3)))


def conv_norm_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation as MobileNetV2 uses it: conv (no bias), BN, ReLU6."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = round(cin * t)
        layers = [] if t == 1 else [conv_norm_act(cin, hidden, 1)]
        layers += [conv_norm_act(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers, cin = [conv_norm_act(3, 32, 3, 2)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_norm_act(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class LayerNorm2d(nn.LayerNorm):
    """torchvision's: LayerNorm over the channels of an (N, C, H, W) tensor, channels-last inside."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x):
        return x + self.layer_scale * self.block(x)


class ConvNeXtTiny(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 96, 4, 4), LayerNorm2d(96, eps=1e-6))]
        for stage, (blocks, dim) in enumerate(((3, 96), (3, 192), (9, 384), (3, 768))):
            if stage:
                layers.append(nn.Sequential(LayerNorm2d(dim // 2, eps=1e-6), nn.Conv2d(dim // 2, dim, 2, 2)))
            layers.append(nn.Sequential(*(CNBlock(dim) for _ in range(blocks))))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(768, eps=1e-6), nn.Flatten(1),
                                        nn.Linear(768, num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def build(name: str, num_classes: int = 1000) -> nn.Module:
    """The reference `name` (a cnnlab zoo name), with torch's default initialisation."""
    blocks = {"resnet18": ([2, 2, 2, 2], False), "resnet34": ([3, 4, 6, 3], False),
              "resnet50": ([3, 4, 6, 3], True)}
    if name in blocks:
        return ResNet(*blocks[name], num_classes)
    if name == "se-resnet50":
        return ResNet([3, 4, 6, 3], True, num_classes, se=True)
    if name.startswith("vgg"):
        return VGGNet(int(name[3:]), num_classes)
    return {"alexnet": AlexNet, "googlenet": GoogLeNet, "mobilenet-v2": MobileNetV2,
            "convnext-tiny": ConvNeXtTiny}[name](num_classes)


@torch.no_grad()
def randomize(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Random biases, γ and β; BatchNorm's running statistics those of a training-mode pass over
    x (momentum None: the plain average), so they are far from 0 and 1 yet keep activations in
    range; then eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
            module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
            module.momentum = None
            module.reset_running_stats()
        elif isinstance(module, nn.LayerNorm):
            module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
            module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
        elif isinstance(module, CNBlock):
            module.layer_scale.copy_(0.5 + torch.rand(module.layer_scale.shape, generator=generator))
        if isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None:
            module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    if any(isinstance(module, nn.BatchNorm2d) for module in model.modules()):
        model.train()
        model(x)
    return model.eval()
