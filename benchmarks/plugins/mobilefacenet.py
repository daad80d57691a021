"""A MobileFaceNet (Chen et al., 2018) for the speed benchmark: a depthwise-separable face network, the kind
whose cost is memory traffic rather than arithmetic, so lrbench's overhead shows most. Random weights only;
loaded by benchmarks/bench_speed.py from this folder, exactly as `lrbench --plugins-dir` loads a plugin file."""

from torch import nn

from lrbench import ARCFACE_112x112, BackboneSpec, InputSpec, hookimpl

# (expansion, output channels, repeats, first stride) of the bottleneck stages, as in the paper's Table 1
STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.PReLU(cout)) if act else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn(cin, hidden, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, cout, 1, act=False),
        )

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileFaceNet(nn.Module):
    def __init__(self, embedding: int = 128):
        super().__init__()
        layers, cin = [conv_bn(3, 64, 3, 2), conv_bn(64, 64, 3, groups=64)], 64
        for expansion, cout, repeats, stride in STAGES:
            for i in range(repeats):
                layers.append(Bottleneck(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        global_depthwise = [nn.Conv2d(512, 512, 7, groups=512, bias=False), nn.BatchNorm2d(512)]  # 7×7 → 1×1
        linear = [nn.Conv2d(512, embedding, 1, bias=False), nn.BatchNorm2d(embedding), nn.Flatten()]
        self.features = nn.Sequential(*layers, conv_bn(cin, 512, 1), *global_depthwise, *linear)

    def forward(self, x):
        return self.features(x)


def build(weights, embedding: int = 128):
    if weights not in (None, "random"):
        raise ValueError("the benchmark's MobileFaceNet has random weights only")
    return MobileFaceNet(embedding)


@hookimpl
def register_backbones(register):
    register(BackboneSpec("mobilefacenet", build, InputSpec(ARCFACE_112x112, "RGB", std=(127.5,) * 3),
                          embedding_dim=128, options={"embedding": 128},
                          description="MobileFaceNet (depthwise-separable), random weights: benchmark only"))
