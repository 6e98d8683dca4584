import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semkt_plugin.adapter import Adapter, HookPoint


class TinyHDR(nn.Module):
    """An AHDR-shaped toy: a conv shared by the three frames, an in-place activation after hooked convs."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(6, width, 3, padding=1)
        self.relu = nn.LeakyReLU(0.2, inplace=True)
        self.body = nn.Conv2d(3 * width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x1, x2, x3):
        f = torch.cat([self.relu(self.conv1(x)) for x in (x1, x2, x3)], 1)
        return torch.sigmoid(self.conv3(self.relu(self.body(f))))


def train_steps(model, skt, opt, data) -> list[dict[str, float]]:
    """One step per ``(frames, gt)`` of ``data``: the user's L1 plus ``skt.loss``; per step, the whole loss
    (``"loss"``) and semkt's components. ``model`` may be any callable (a compiled or DDP-wrapped model)."""
    records = []
    for frames, gt in data:
        out = model(*frames)
        loss = F.l1_loss(out, gt) + skt.loss(out, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        records.append({"loss": loss.item(), **skt.last_losses})
    return records


def grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients of ``loss`` with respect to each of ``tensors``, leaving their ``.grad`` alone."""
    return list(torch.autograd.grad(loss, tensors))


def train_alone(model, data, loss_fn, lr: float = 1e-3) -> None:
    """Train ``model`` on its own loss, one Adam step per ``(*inputs, target)`` of ``data``: the trajectory a probe
    must leave the model on."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for *inputs, target in data:
        opt.zero_grad()
        loss_fn(model(*inputs), target).backward()
        opt.step()


TINY_ADAPTER = Adapter("tiny", [HookPoint("conv1", call=1), HookPoint("body")], description="tests")

# the paper's schedule, every term from the first step (the default starts half way through total_steps)
FROM_STEP_0 = dict(distill_start=0, distill_warmup=0)
# SKAM with its hooks and a narrow teacher, no SKB: a step takes milliseconds
NO_SKB = dict(lambda_color=0.0, use_priors=False, lambda_content=0.0, teacher_dim=8, teacher_heads=1, skam_latent=4,
              **FROM_STEP_0)


class Boom(Exception):
    pass


class FlakyHDR(TinyHDR):
    """Raises after its whole forward ran (every hook has fired first) while ``fail`` is set."""

    fail = False

    def forward(self, x1, x2, x3):
        out = super().forward(x1, x2, x3)
        if self.fail:
            raise Boom("forward")
        return out


@pytest.fixture(scope="session")
def skb():
    from semkt_plugin.skb import load_skb

    torch.manual_seed(0)
    net = load_skb(None, arch="yolov8n-seg.yaml", num_regions=4)
    net.score_threshold = 0.0  # random weights are never confident; take the best anchors anyway
    return net


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    frames = [torch.rand(2, 6, 32, 32, generator=g) for _ in range(3)]
    return frames, torch.rand(2, 3, 32, 32, generator=g)


@pytest.fixture(scope="session")
def vgg19_file(tmp_path_factory):
    """torchvision's VGG19 with random weights, saved as a state_dict under the name of torchvision's ImageNet file
    (the real file cannot be downloaded here)."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg19") / "vgg19-dcbb9e9d.pth"
    torch.save(vgg19(weights=None).state_dict(), path)
    return path


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Offline, whatever the machine: name resolution fails as it does without network, so torch.hub's and
    ultralytics' downloads fail their offline way; torch's hub cache (``TORCH_HOME``), ultralytics' weights dir and the
    working directory are empty folders under the returned one."""
    from semkt_plugin.skb import ultralytics_sandbox

    with ultralytics_sandbox():
        import ultralytics.utils as yolo_utils

    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    root = tmp_path / "offline"
    for sub in ("torch", "ultralytics", "cwd"):
        (root / sub).mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    assert torch.hub.get_dir() == str(root / "torch" / "hub"), "torch.hub.set_dir was called: TORCH_HOME is ignored"
    # a copy: SETTINGS itself writes every change to ultralytics' settings file
    monkeypatch.setattr(yolo_utils, "SETTINGS", {**yolo_utils.SETTINGS, "weights_dir": str(root / "ultralytics")})
    monkeypatch.chdir(root / "cwd")
    return root
