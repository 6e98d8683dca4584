"""L_color's banded, series-based histogram against a float64 reference that evaluates the dense kernel."""
import pytest
import torch
import torch.nn.functional as F

from semkt_plugin.strategies.skt import losses
from semkt_plugin.strategies.skt.losses import histogram_loss, region_histograms

KERNELS = {
    "sigmoid": dict(),
    "gaussian": dict(kernel="gaussian"),
    "gaussian-wide": dict(kernel="gaussian", bandwidth=0.01),
    "gaussian-sharp": dict(kernel="gaussian", bins=32, bandwidth=0.3 / 32),
    "sigmoid-64-150": dict(bins=64, slope=150.0),
    "sigmoid-16": dict(bins=16),  # sharp for its bins: every bin is cut into pieces
    "sigmoid-soft": dict(slope=40.0),  # a band of over 200 bins
}


def reference_hists(image, regions, bins=256, kernel="sigmoid", slope=400.0, bandwidth=None, min_mass=1.0):
    """float64; one image, region and channel at a time; every bin of the kernel's definition; ``None`` for an
    empty region."""
    edges = torch.arange(bins + 1, dtype=torch.float64) / bins
    centers = (edges[:-1] + edges[1:]) / 2
    bw = 1.0 / bins if bandwidth is None else bandwidth
    out = []
    for b in range(image.shape[0]):
        row = []
        for n in range(regions.shape[1]):
            w = regions[b, n].flatten().double()
            if w.sum() < min_mass:
                row.append(None)
                continue
            hists = []
            for c in range(image.shape[1]):
                x = image[b, c].flatten().double().clamp(0, 1)[:, None]
                if kernel == "sigmoid":
                    k = torch.sigmoid(slope * (x - edges[:-1])) - torch.sigmoid(slope * (x - edges[1:]))
                else:
                    k = torch.exp(-((x - centers) / bw) ** 2)
                hists.append((w[:, None] * k).sum(0) / w.sum())
            row.append(torch.stack(hists))
        out.append(row)
    return out


def reference_loss(student, teacher, regions, **opts):
    """Eqs. 9–10 on :func:`reference_hists`: MSE over bins and channels, mean over non-empty regions, then over
    images (0 for an image without one)."""
    hs, ht = reference_hists(student, regions, **opts), reference_hists(teacher.detach(), regions, **opts)
    per_image = []
    for row_s, row_t in zip(hs, ht):
        per_region = [(s - t).pow(2).mean() for s, t in zip(row_s, row_t) if s is not None]
        per_image.append(sum(per_region) / len(per_region) if per_region else torch.zeros((), dtype=torch.float64))
    return sum(per_image) / len(per_image)


def _regions(kind, g, b=2, n=5, h=16, w=18):
    if kind == "soft":
        return torch.rand(b, n, h, w, generator=g)
    if kind == "hard":  # a partition, stored channels-last as a permuted one-hot is
        return F.one_hot(torch.randint(0, n, (b, h, w), generator=g), n).permute(0, 3, 1, 2).float()
    if kind == "overlapping":  # boxes that share pixels, one of them soft
        m = torch.zeros(b, n, h, w)
        m[:, 0, :10, :12] = 1
        m[:, 1, 5:, 6:] = 1
        m[:, 2, 3:12, 3:15] = torch.rand(b, 9, 12, generator=g)
        m[:, 3] = 1
        m[:, 4, 8, 8] = 0.4
        return m
    if kind == "empty":  # an all-zero map, one lighter than min_mass, and an image without any region
        m = torch.rand(b, n, h, w, generator=g) * (torch.rand(b, n, h, w, generator=g) > 0.7)
        m[0, 1] = 0
        m[0, 2] = 0
        m[0, 2, 4, 4] = 0.6
        m[1] = 0
        return m
    raise ValueError(kind)


def _images(g, b=2, c=3, h=16, w=18):
    student = torch.rand(b, c, h, w, generator=g)
    teacher = (student + 0.05 * torch.randn(b, c, h, w, generator=g)).clamp(0, 1)
    # the ends of [0, 1] and beyond it: clamped, no gradient outside
    student[0, 0, 0, :6] = torch.tensor([0.0, 1.0, -0.3, 1.4, 0.0, 1.0])
    teacher[0, 0, 0, :4] = torch.tensor([1.0, 0.0, 1.2, -0.1])
    return student, teacher


KINDS = ["soft", "hard", "overlapping", "empty"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(KERNELS))
def test_loss_and_gradient_match_the_dense_float64_reference(kind, name):
    opts = KERNELS[name]
    g = torch.Generator().manual_seed(len(KINDS) * list(KERNELS).index(name) + KINDS.index(kind))
    student, teacher = _images(g)
    regions = _regions(kind, g)
    s64 = student.double().requires_grad_(True)
    expected = reference_loss(s64, teacher.double(), regions, **opts)
    s32 = student.clone().requires_grad_(True)
    got = histogram_loss(s32, teacher, regions, **opts)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-12)
    expected.backward()
    got.backward()
    assert s64.grad.abs().max() > 0
    assert torch.allclose(s32.grad.double(), s64.grad, rtol=0, atol=1e-5 * s64.grad.abs().max().item())
    assert not s32.grad[0, 0, 0, 2:4].any()  # values past [0, 1] are clamped


@pytest.mark.parametrize("name", ["sigmoid", "gaussian", "sigmoid-16"])
def test_histograms_match_the_reference(name):
    opts = KERNELS[name]
    g = torch.Generator().manual_seed(1)
    image, _ = _images(g)
    image[1, 2] = 0.5  # a flat channel: every value in one bin
    regions = _regions("empty", g)
    regions[1, 0] = 1
    hist, valid = region_histograms(image, regions, **opts)
    expected = reference_hists(image, regions, **opts)
    for b, row in enumerate(expected):
        for n, h in enumerate(row):
            assert bool(valid[b, n]) == (h is not None)
            if h is None:
                assert not hist[b, n].any()
            else:
                assert torch.allclose(hist[b, n].double(), h, rtol=0, atol=1e-6)
    if opts.get("kernel", "sigmoid") == "sigmoid":  # the windows of x add up to σ(s·x) − σ(s·(x − 1)): 1 at 0.5
        assert hist[1, 0, 2].sum().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("min_mass", [0.25, 1.0])
def test_min_mass_decides_emptiness(min_mass):
    g = torch.Generator().manual_seed(2)
    student, teacher = _images(g)
    regions = _regions("empty", g)
    got = histogram_loss(student, teacher, regions, min_mass=min_mass)
    expected = reference_loss(student.double(), teacher.double(), regions, min_mass=min_mass)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    _, valid = region_histograms(student, regions, min_mass=min_mass)
    assert bool(valid[0, 2]) == (min_mass < 0.6)


def test_chunk_and_memory_layout_change_nothing():
    g = torch.Generator().manual_seed(3)
    student, teacher = _images(g)
    regions = _regions("soft", g)
    results = []
    channels_last = regions.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    for chunk, maps in [(4096, regions), (1, regions), (7, channels_last)]:
        s = student.clone().requires_grad_(True)
        loss = histogram_loss(s, teacher, maps, chunk=chunk)
        loss.backward()
        results.append((loss, s.grad))
    for loss, grad in results[1:]:
        assert torch.allclose(loss, results[0][0], rtol=1e-6, atol=0)
        assert torch.allclose(grad, results[0][1], rtol=1e-5, atol=1e-12)


def test_student_and_teacher_take_one_pass(monkeypatch):
    calls = []
    apply = losses._RegionSums.apply
    monkeypatch.setattr(losses._RegionSums, "apply", lambda *a: calls.append(a) or apply(*a))
    g = torch.Generator().manual_seed(4)
    student, teacher = _images(g)
    histogram_loss(student.requires_grad_(True), teacher, _regions("hard", g)).backward()
    assert len(calls) == 1 and calls[0][1] is not None


@pytest.mark.parametrize("opts", [dict(bins=8, kernel="sigmoid", slope=30.0), dict(bins=8, kernel="gaussian"),
                                  dict(bins=4, kernel="sigmoid", slope=400.0)])
def test_gradcheck_in_float64(opts):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 2, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    target = torch.rand(2, 2, 6, generator=g, dtype=torch.float64)
    m = torch.rand(2, 3, 6, generator=g, dtype=torch.float64) * (torch.rand(2, 3, 6, generator=g) > 0.3)
    plan = losses._plan(opts["bins"], opts["kernel"], opts.get("slope", 400.0), None)
    assert torch.autograd.gradcheck(lambda x: losses._RegionSums.apply(x, target, m, plan, 3), (x,))
    assert torch.autograd.gradcheck(lambda x: losses._RegionSums.apply(x, None, m, plan, 1000), (x,))


def test_a_nan_value_gives_nan_not_an_index_error():
    image = torch.rand(1, 1, 4, 4)
    image[0, 0, 1, 1] = float("nan")
    hist, _ = region_histograms(image, torch.ones(1, 1, 4, 4), bins=16)
    assert hist.isnan().any()


def test_no_regions_at_all():
    student = torch.rand(2, 3, 8, 8, requires_grad=True)
    loss = histogram_loss(student, torch.rand(2, 3, 8, 8), torch.zeros(2, 0, 8, 8))
    loss.backward()
    assert loss.item() == 0.0 and not student.grad.any()


def test_backward_alike_whether_the_forward_kept_its_entries_or_not(monkeypatch):
    g = torch.Generator().manual_seed(6)
    student, teacher = _images(g)
    regions = _regions("overlapping", g)
    grads = []
    for keep in (losses._RegionSums.KEEP, 0):
        monkeypatch.setattr(losses._RegionSums, "KEEP", keep)
        s = student.clone().requires_grad_(True)
        histogram_loss(s, teacher, regions, chunk=5).backward()
        grads.append(s.grad)
    assert grads[0].abs().max() > 0 and torch.equal(grads[0], grads[1])
