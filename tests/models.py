"""ResNet-18, MobileNetV3-small and EfficientNet-B0, re-typed from torchvision's definitions.

torchvision does not install beside the CPU torch of the test line, so the three networks are
written here, layer for layer as in torchvision 0.2x: ``models/resnet.py`` (BasicBlock,
``resnet18``: [2, 2, 2, 2]), ``models/mobilenetv3.py`` (``_mobilenet_v3_conf("mobilenet_v3_small")``
and ``InvertedResidual``), ``models/efficientnet.py`` (``_efficientnet_conf("efficientnet_b0")``
and ``MBConv``), with ``ops/misc.py`` (``Conv2dNormActivation``: padding (k - 1) // 2 * dilation,
``SqueezeExcitation``) and ``models/_utils.py`` (``_make_divisible``). Random weights; only the
convolutions' geometry matters to the tests.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.ReLU, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 * dilation,
                                         dilation=dilation, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int, act: type[nn.Module],
                 scale: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale = scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * self.scale(self.fc2(self.act(self.fc1(s))))


# --- ResNet-18 ------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride),
                                        BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


# --- MobileNetV3-small ----------------------------------------------------------------------------
#: (input, kernel, expanded, out, use_se, activation, stride, dilation): mobilenet_v3_small
MOBILENET_V3_SMALL = [
    (16, 3, 16, 16, True, "RE", 2, 1), (16, 3, 72, 24, False, "RE", 2, 1),
    (24, 3, 88, 24, False, "RE", 1, 1), (24, 5, 96, 40, True, "HS", 2, 1),
    (40, 5, 240, 40, True, "HS", 1, 1), (40, 5, 240, 40, True, "HS", 1, 1),
    (40, 5, 120, 48, True, "HS", 1, 1), (48, 5, 144, 48, True, "HS", 1, 1),
    (48, 5, 288, 96, True, "HS", 2, 1), (96, 5, 576, 96, True, "HS", 1, 1),
    (96, 5, 576, 96, True, "HS", 1, 1),
]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: str, stride: int,
                 dilation: int) -> None:
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_bn_act(cin, exp, 1, act=a))
        layers.append(conv_bn_act(exp, exp, k, 1 if dilation > 1 else stride, groups=exp, act=a,
                                  dilation=dilation))
        if se:
            layers.append(SqueezeExcitation(exp, make_divisible(exp // 4, 8), nn.ReLU,
                                            nn.Hardsigmoid))
        layers.append(conv_bn_act(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res else y


class MobileNetV3Small(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 16, 3, 2, act=nn.Hardswish)]
        layers += [InvertedResidual(*conf) for conf in MOBILENET_V3_SMALL]
        layers.append(conv_bn_act(96, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(),
                                        nn.Linear(1024, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# --- EfficientNet-B0 ------------------------------------------------------------------------------
#: (expand_ratio, kernel, stride, input, out, num_layers): efficientnet_b0
EFFICIENTNET_B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                   (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                   (6, 3, 1, 192, 320, 1)]


class MBConv(nn.Module):
    def __init__(self, ratio: int, k: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        exp = make_divisible(cin * ratio, 8)
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_bn_act(cin, exp, 1, act=nn.SiLU))
        layers.append(conv_bn_act(exp, exp, k, stride, groups=exp, act=nn.SiLU))
        layers.append(SqueezeExcitation(exp, max(1, cin // 4), nn.SiLU, nn.Sigmoid))
        layers.append(conv_bn_act(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res else y


class EfficientNetB0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 32, 3, 2, act=nn.SiLU)]
        for ratio, k, stride, cin, cout, n in EFFICIENTNET_B0:
            for i in range(n):
                layers.append(MBConv(ratio, k, stride if i == 0 else 1, cin if i == 0 else cout,
                                     cout))
        layers.append(conv_bn_act(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


MODELS: dict[str, type[nn.Module]] = {"resnet18": ResNet18, "mobilenet_v3_small":
                                      MobileNetV3Small, "efficientnet_b0": EfficientNetB0}


def conv_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[Any, ...]]:
    """(batch, C, K, H, W, kernel, stride, padding, dilation, groups) of every Conv2d call,
    seen by forward hooks during one forward pass."""
    seen: list[tuple[Any, ...]] = []

    def hook(m: nn.Conv2d, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        n, c, h, w = args[0].shape
        seen.append((n, c, m.out_channels, h, w, tuple(m.kernel_size), tuple(m.stride),
                     tuple(m.padding), tuple(m.dilation), m.groups))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def export_onnx(model: nn.Module, x: torch.Tensor, path: Any,
                dynamic_batch: bool = False) -> None:
    """torch.onnx.export with the TorchScript exporter (``dynamo=False``): it needs only the
    onnx package (the dynamo exporter also needs onnxscript) and takes about a second per
    model on a CPU. It folds BatchNormalization into the conv (eval mode) as TensorRT would."""
    import warnings

    with warnings.catch_warnings():
        # torch >= 2.9 announces the TorchScript exporter's retirement on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}} if dynamic_batch else None)
