import pytest
import torch
from torch import nn

from semkt_plugin.adapter import HookPoint
from semkt_plugin.feature_hooks import FeatureHooks, infer_channels, to_map, tokens_to_map
from semkt_plugin.strategies.skt.skam import SKAM, draw_mask, spread


def test_capture_survives_an_in_place_activation():
    conv = nn.Conv2d(2, 3, 1)
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    hooks = FeatureHooks(model, [HookPoint("0")])
    x = torch.randn(1, 2, 4, 4)
    model(x)
    (captured,) = hooks.maps(aspect=1.0)
    assert torch.equal(captured, conv(x))  # negative values kept although ReLU ran in place afterwards
    assert (captured < 0).any()
    hooks.remove()


def test_call_index_and_pre_hook_and_frames():
    shared = nn.Conv2d(1, 2, 1)
    head = nn.Conv2d(6, 1, 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared, self.head = shared, head

        def forward(self, a, b, c):
            return self.head(torch.cat([self.shared(x) for x in (a, b, c)], 1))

    net = Net()
    xs = [torch.full((1, 1, 2, 2), float(i)) for i in range(3)]
    points = [HookPoint("shared", call=1), HookPoint("shared"), HookPoint("head", kind="pre")]
    hooks = FeatureHooks(net, points)
    net(*xs)
    assert hooks.calls == [3, 3, 1]
    second, last, pre = hooks.maps(aspect=1.0)
    hooks.remove()
    assert torch.equal(second, shared(xs[1])) and torch.equal(last, shared(xs[2]))
    assert pre.shape == (1, 6, 2, 2)
    folded = torch.arange(2 * 5 * 1.0).view(10, 1, 1, 1)  # (N·T, C, H, W) with N=2, T=5
    kept = to_map(folded, HookPoint("x", frames=5, frame=0), 1.0)
    assert kept.flatten().tolist() == [0.0, 5.0]


def test_tokens_to_map_row_by_row_and_padded_windows():
    b, h, w, c = 2, 3, 5, 4
    image = torch.randn(b, c, h, w)
    tokens = image.flatten(2).transpose(1, 2)  # (B, H·W, C)
    assert torch.equal(tokens_to_map(tokens, aspect=h / w), image)
    padded = torch.randn(1, 8 * 16, 4)  # SCTNet pads 6×14 up to 8×16
    assert tokens_to_map(padded, aspect=6 / 14).shape == (1, 4, 8, 16)


def test_infer_channels():
    block = nn.Sequential(nn.Conv2d(3, 5, 1), nn.ReLU(), nn.Conv2d(5, 7, 1))
    assert infer_channels(block, "forward") == 7 and infer_channels(block, "pre") == 3
    assert infer_channels(nn.ReLU(), "forward") is None


def test_masks_are_binary_with_the_ratio():
    g = torch.Generator().manual_seed(0)
    mask = draw_mask((4, 16, 32, 32), 0.3, g)
    assert mask.shape == (4, 16, 32, 32) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert mask.mean().item() == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match=r"ratio must be in \[0.0, 1.0\], got 1.5"):
        SKAM([8], 8, ratio=1.5)


def test_skam_stages_pairing_gradients_and_saved_generator():
    assert spread(3, 3) == [0, 1, 2] and spread(5, 3) == [0, 0, 1, 2, 2] and spread(1, 3) == [2]
    skam = SKAM([4, 6], teacher_channels=8, latent=8)
    student = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 6, 4, 4, requires_grad=True)]
    teacher = [torch.randn(2, 8, 16, 16, requires_grad=True) for _ in range(3)]
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in skam.state_dict().items()}
    first = skam(student, teacher)
    first.backward()
    assert all(s.grad is not None for s in student) and all(t.grad is None for t in teacher)
    again = SKAM([4, 6], teacher_channels=8, latent=8)
    again.load_state_dict(state)
    assert again(student, teacher).item() == pytest.approx(first.item())  # same weights, same masks
    skam.load_state_dict(skam.state_dict())
    with pytest.raises(ValueError, match="channels"):
        skam([torch.randn(2, 5, 8, 8), student[1]], teacher)


def test_skam_aligns_at_a_slim_teachers_coarser_resolution():
    import torch.nn.functional as F

    from semkt_plugin.strategies.skt.skam import SKAM, align_size

    student, full, half = torch.rand(2, 8, 16, 16), torch.rand(2, 4, 32, 32), torch.rand(2, 4, 8, 8)
    assert align_size(student, full) == (16, 16) and align_size(student, half) == (8, 8)
    assert align_size(student, torch.rand(2, 4, 8, 32)) == (16, 16)  # coarser in one side only: the student's
    skam = SKAM([8], 4, num_teacher=1, latent=4, patch=2, seed=3)
    twin = SKAM([8], 4, num_teacher=1, latent=4, patch=2, seed=3)
    twin.load_state_dict(skam.state_dict())
    # a slim teacher's feature: the student is pooled to its size, as if the hook had given a coarser feature
    assert torch.equal(skam([student], [half]), twin([F.adaptive_avg_pool2d(student, 8)], [half]))


@pytest.mark.parametrize("kind", ["spatial", "element"])
def test_stage_mixes_as_eq11_bit_for_bit(kind):
    """The one-pass mix equals ``I^M·t + (1 − I^M)·s`` exactly, and so do the encoders' gradients."""
    import torch.nn.functional as F

    from semkt_plugin.strategies.skt.skam import AlignmentStage, normalise_target

    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    stage = AlignmentStage(6, 5, latent=8)
    student, teacher = torch.randn(2, 6, 12, 12, generator=g), torch.randn(2, 5, 12, 12, generator=g)
    mask = draw_mask((2, 8, 12, 12), 0.5, g, kind=kind, patch=4)
    ours = stage(student, teacher, mask)
    target = normalise_target(teacher)
    mixed = stage.enc_s(student) * (1 - mask) + stage.enc_t(target) * mask
    theirs = F.mse_loss(stage.dec(mixed), target)
    assert torch.equal(ours, theirs)
    encoders = [*stage.enc_s.parameters(), *stage.enc_t.parameters()]
    for a, b in zip(torch.autograd.grad(ours, encoders), torch.autograd.grad(theirs, encoders)):
        assert torch.equal(a, b)
