import pytest
import torch

from semkt_plugin.strategies.skt.losses import (
    bin_centers,
    content_loss,
    histogram_loss,
    kernel_weights,
    region_histograms,
)


def naive_histogram_loss(student, teacher, regions, bins=256, kernel="sigmoid", min_mass=1.0):
    """Reference: one image, region and channel at a time, only the region's pixels gathered (as SKF does)."""
    centers = bin_centers(bins)
    per_image = []
    for b in range(student.shape[0]):
        per_region = []
        for n in range(regions.shape[1]):
            w = regions[b, n].flatten()
            if w.sum() < min_mass:
                continue
            keep = w.nonzero().squeeze(1)
            w = w[keep]
            total = 0.0
            for c in range(student.shape[1]):
                hs = (w[:, None] * kernel_weights(student[b, c].flatten()[keep].clamp(0, 1), centers, kernel)).sum(0)
                ht = (w[:, None] * kernel_weights(teacher[b, c].flatten()[keep].clamp(0, 1), centers, kernel)).sum(0)
                total = total + ((hs - ht) / w.sum()).pow(2).mean()
            per_region.append(total / student.shape[1])
        per_image.append(sum(per_region) / len(per_region) if per_region else torch.tensor(0.0))
    return sum(per_image) / len(per_image)


def _data(seed=0, b=2, c=3, h=12, w=14, n=5):
    g = torch.Generator().manual_seed(seed)
    student = torch.rand(b, c, h, w, generator=g)
    teacher = (student + 0.1 * torch.randn(b, c, h, w, generator=g)).clamp(0, 1)
    regions = torch.rand(b, n, h, w, generator=g)
    regions[:, 0] = (regions[:, 0] > 0.5).float()  # a hard region
    regions[1, 2] = 0  # an empty region
    return student, teacher, regions


@pytest.mark.parametrize("kernel", ["sigmoid", "gaussian"])
@pytest.mark.parametrize("chunk", [7, 4096])
def test_matches_naive_loop(kernel, chunk):
    student, teacher, regions = _data()
    fast = histogram_loss(student, teacher, regions, kernel=kernel, chunk=chunk)
    slow = naive_histogram_loss(student, teacher, regions, kernel=kernel)
    assert fast.item() == pytest.approx(slow.item(), abs=1e-5, rel=1e-5)


def test_gradient_matches_naive_loop_and_chunking():
    student, teacher, regions = _data(1)
    grads = []
    for fn in (lambda s: histogram_loss(s, teacher, regions, chunk=5),
               lambda s: histogram_loss(s, teacher, regions, chunk=10_000),
               lambda s: naive_histogram_loss(s, teacher, regions)):
        s = student.clone().requires_grad_(True)
        fn(s).backward()
        grads.append(s.grad)
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-7)
    assert torch.allclose(grads[0], grads[2], atol=1e-6)


def test_teacher_gets_no_gradient():
    student, teacher, regions = _data(2)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    histogram_loss(student, teacher, regions).backward()
    assert teacher.grad is None and student.grad is not None


def test_pixels_outside_a_region_add_nothing():
    image = torch.zeros(1, 1, 4, 4)
    image[..., :, 2:] = 0.7
    region = torch.zeros(1, 1, 4, 4)
    region[..., :, 2:] = 1
    hist, valid = region_histograms(image, region)
    assert valid.all()
    assert hist[0, 0, 0].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert hist[0, 0, 0, 0].item() < 1e-6  # no pile-up in bin 0 from the zero pixels outside
    assert hist[0, 0, 0].argmax().item() == 179  # 0.7 falls in bin floor(0.7·256)


def test_empty_regions_and_identical_images_give_zero():
    student, _, regions = _data(3)
    assert histogram_loss(student, student, regions).item() == 0.0
    assert histogram_loss(student, student.flip(-1), torch.zeros_like(regions)).item() == 0.0


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="resize the region maps"):
        histogram_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 4, 4, 4))


def test_unknown_kernel():
    with pytest.raises(ValueError, match="gaussian"):
        kernel_weights(torch.rand(3), bin_centers(4), kernel="box")


def test_content_loss_l1_plus_weighted_perceptual_and_detached_teacher():
    s = torch.rand(1, 3, 8, 8, requires_grad=True)
    t = torch.rand(1, 3, 8, 8, requires_grad=True)
    phi = lambda x: [x * 2, x.mean(1, keepdim=True)]  # noqa: E731
    expected = (s - t).abs().mean() + 0.5 * ((2 * s - 2 * t).abs().mean() + (s.mean(1) - t.mean(1)).abs().mean())
    got = content_loss(s, t, phi, weight=0.5)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    got.backward()
    assert t.grad is None
