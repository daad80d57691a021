"""SphereFace loads the checkpoints researchers have; the foreign networks are rebuilt here from their docs."""

import pytest
import torch
from torch import nn

from lrbench import registry
from lrbench.errors import DataError
from lrbench.eval.models import build_backbone
from lrbench.options import parse_options


class Sphere20aPort(nn.Module):
    """clcarwin/sphereface_pytorch's ``sphere20a``, written out as that port names it."""

    def __init__(self, classes=10):
        super().__init__()
        plan = {1: (3, 64, 3), 2: (64, 128, 5), 3: (128, 256, 9), 4: (256, 512, 3)}
        for stage, (cin, cout, convs) in plan.items():
            for k in range(1, convs + 1):
                setattr(self, f"conv{stage}_{k}", nn.Conv2d(cin if k == 1 else cout, cout, 3, 2 if k == 1 else 1, 1))
                setattr(self, f"relu{stage}_{k}", nn.PReLU(cout))
        self.plan = plan
        self.fc5 = nn.Linear(512 * 7 * 6, 512)
        self.fc6 = nn.Module()
        self.fc6.weight = nn.Parameter(torch.randn(512, classes))  # AngleLinear stores [in, classes]

    def forward(self, x):
        for stage, (_, _, convs) in self.plan.items():
            x = getattr(self, f"relu{stage}_1")(getattr(self, f"conv{stage}_1")(x))
            for k in range(2, convs, 2):
                branch = getattr(self, f"relu{stage}_{k}")(getattr(self, f"conv{stage}_{k}")(x))
                x = x + getattr(self, f"relu{stage}_{k + 1}")(getattr(self, f"conv{stage}_{k + 1}")(branch))
        return self.fc5(x.flatten(1))


class ResBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.resblock = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.PReLU(channels),
        )

    def forward(self, x):
        return x + self.resblock(x)


def seed_sequential():
    """The seed project's layout: per stage [conv, PReLU, Sequential(blocks)], then Flatten, Linear (index 13)."""
    layers, cin = [], 3
    for cout, blocks in zip((64, 128, 256, 512), (1, 2, 4, 1)):
        layers += [
            nn.Conv2d(cin, cout, 3, 2, 1),
            nn.PReLU(cout),
            nn.Sequential(*(ResBlock(cout) for _ in range(blocks))),
        ]
        cin = cout
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512 * 7 * 6, 512))


def randomise(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return model


def embed(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture
def spec():
    return registry.backbone("sphereface")


def test_three_layouts_give_identical_embeddings(spec, tmp_path):
    x = torch.randn(3, 3, 112, 96)
    port = randomise(Sphere20aPort())
    torch.save(port.state_dict(), tmp_path / "port.pth")
    from_port = build_backbone(spec, str(tmp_path / "port.pth"))
    torch.testing.assert_close(embed(from_port, x), embed(port, x))

    seed = seed_sequential()
    seed.load_state_dict({k: v for k, v in zip(seed.state_dict(), port.state_dict().values())})  # same order
    torch.save({"state_dict": {f"module.{k}": v for k, v in seed.state_dict().items()}}, tmp_path / "seed.pth")
    from_seed = build_backbone(spec, str(tmp_path / "seed.pth"))
    torch.testing.assert_close(embed(from_seed, x), embed(port, x))

    torch.save(
        {"model": {f"_orig_mod.backbone.{k}": v for k, v in from_port.state_dict().items()}}, tmp_path / "own.pth"
    )
    from_own = build_backbone(spec, str(tmp_path / "own.pth"))
    torch.testing.assert_close(embed(from_own, x), embed(port, x))


def test_a_checkpoint_that_fits_no_layout_explains_itself(spec, tmp_path):
    state = randomise(Sphere20aPort()).state_dict()
    state["conv4_3.weight"] = torch.zeros(512, 512, 5, 5)
    del state["fc5.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="fits none of the layouts") as caught:
        build_backbone(spec, str(tmp_path / "bad.pth"))
    assert "sphere20a-port" in str(caught.value)
    assert "mis-shaped" in caught.value.details and "missing" in caught.value.details


@pytest.mark.parametrize("depth", [4, 10, 20, 36, 64])
def test_every_depth_builds_and_embeds(spec, depth):
    model = build_backbone(spec, "random", parse_options(spec, [f"depth={depth}"]))
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert convs == depth
    assert embed(model, torch.randn(2, 3, 112, 96)).shape == (2, 512)


def test_depth_checkpoints_do_not_cross(spec, tmp_path):
    deep = build_backbone(spec, "random", {"depth": 36})
    torch.save(deep.state_dict(), tmp_path / "s36.pth")
    with pytest.raises(DataError, match="unexpected"):
        build_backbone(spec, str(tmp_path / "s36.pth"), {"depth": 20})
