"""The calibrated components: SKAM's spatial masks, target scaling and stage mean; the Prior Fusion Block's
attention against eq. 4 written out; and the guarantee that with every distillation term off a training run is
bit-identical to the baseline's."""
import pytest
import torch
from einops import rearrange

from semkt_plugin.strategies.skt.skam import SKAM, draw_mask, normalise_target
from semkt_plugin.strategies.skt.teacher import PriorFusionBlock


def test_spatial_mask_hides_whole_blocks_across_channels():
    g = torch.Generator().manual_seed(0)
    mask = draw_mask((2, 5, 20, 27), 0.5, g, kind="spatial", patch=8)
    assert mask.shape == (2, 1, 20, 27)  # one draw per position, shared by every channel
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    for by in range(0, 20, 8):
        for bx in range(0, 27, 8):
            block = mask[:, 0, by:by + 8, bx:bx + 8]  # cut at the edges
            assert torch.equal(block, block[:, :1, :1].expand_as(block))
    many = draw_mask((64, 1, 64, 64), 0.3, g, kind="spatial", patch=4)
    assert many.mean().item() == pytest.approx(0.3, abs=0.02)
    with pytest.raises(ValueError, match="mask kind"):
        draw_mask((1, 1, 4, 4), 0.5, kind="pixel")


def test_target_scaling():
    x = torch.randn(3, 4, 8, 8) * torch.tensor([0.1, 1.0, 5.0, 20.0]).view(1, 4, 1, 1) + 2
    image = normalise_target(x, "image")
    assert torch.allclose(image.pow(2).mean((1, 2, 3)), torch.ones(3), atol=1e-4)
    rms = x.pow(2).mean((1, 2, 3), keepdim=True).sqrt()
    assert torch.allclose(image, x / rms, atol=1e-5)  # one factor per image: channels keep their relative scale
    channel = normalise_target(x, "channel")
    assert torch.allclose(channel.mean((2, 3)), torch.zeros(3, 4), atol=1e-4)
    assert torch.allclose(channel.var((2, 3), unbiased=False), torch.ones(3, 4), atol=2e-3)  # eps 1e-5 vs var 0.01
    assert normalise_target(x, "none") is x
    with pytest.raises(ValueError, match="norm"):
        normalise_target(x, "layer")


def test_skam_mean_over_stages_is_the_sum_over_their_number():
    student = [torch.randn(2, 4, 16, 16), torch.randn(2, 6, 8, 8)]
    teacher = [torch.randn(2, 8, 16, 16) for _ in range(3)]
    losses = {}
    for reduction in ("mean", "sum"):
        torch.manual_seed(0)
        losses[reduction] = SKAM([4, 6], 8, latent=8, reduction=reduction)(student, teacher)
    assert losses["mean"].item() == pytest.approx(losses["sum"].item() / 2, rel=1e-6)


def test_prior_fusion_block_is_eq4_with_keys_and_values_from_the_feature():
    torch.manual_seed(0)
    block = PriorFusionBlock(dim=8, prior_dim=6, heads=2)
    feature, prior = torch.randn(2, 8, 5, 7), torch.randn(2, 6, 5, 7)
    q = block.q(block.norm_p(prior))
    k, v = block.kv(block.norm_f(feature)).chunk(2, dim=1)
    q, k, v = (rearrange(t, "b (n c) h w -> b n c (h w)", n=2) for t in (q, k, v))
    q, k = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
    # written out: out[i] = Σ_j softmax_j(γ · q_i·k_j) v_j, so weights over key channel j pick value channel j
    logits = torch.einsum("bnip,bnjp->bnij", q, k) * block.gamma
    out = torch.einsum("bnij,bnjp->bnip", logits.softmax(-1), v)
    expected = feature + block.out(rearrange(out, "b n c (h w) -> b (n c) h w", h=5, w=7))
    assert torch.allclose(block(feature, prior), expected, atol=1e-5)


@pytest.mark.slow  # two short training runs of the tiny example AHDR, one with the stand-in SKB
def test_every_distillation_term_off_trains_bit_identical_to_the_baseline(tmp_path):
    import json

    from semkt_plugin.reproduction.paired import Training, Variant, load_example, run
    from semkt_plugin.reproduction.synth import generate_dataset

    data = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(48, 48), seed=0)
    setup = Training(data, steps=4, batchsize=2, crop=32, nFeat=8, growthRate=4, nDenselayer=2)
    train, test = load_example()
    off = {"skb_weights": "standin", "perceptual": "skb", "lambda_content": 0.0, "lambda_color": 0.0,
           "use_skam": False}
    base = run(train, test, setup, Variant("AHDR"), 0, tmp_path / "base")
    only_teacher = run(train, test, setup, Variant("semkt, teacher only", off), 0, tmp_path / "teacher")
    assert only_teacher["train"]["losses"] == base["train"]["losses"]  # every step's task loss, exactly
    assert set(only_teacher["train"]["semkt_losses"][-1]) == {"spg", "orm", "total"}
    a, b = (torch.load(r["train"]["checkpoint"]) for r in (base, only_teacher))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert only_teacher["test"] == base["test"]
    again = run(train, test, setup, Variant("AHDR"), 0, tmp_path / "base")  # cached: read, not retrained
    assert again == json.loads((tmp_path / "base" / "run.json").read_text())


def test_gated_target_takes_the_teacher_only_where_it_is_closer_to_the_truth():
    from semkt_plugin.strategies.skt.strategy import gated_target

    truth = torch.tensor([0.5, 0.5, 0.5, 0.5]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    student = torch.tensor([0.2, 0.9, 0.5, 0.6]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    teacher = torch.tensor([0.4, 0.95, 0.7, 0.6]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    target = gated_target(teacher, student, truth)
    # better, worse, worse (the student is exact), a tie (not better): only the first pixel is the teacher's
    assert torch.equal(target[0, :, 0, 0], teacher[0, :, 0, 0])
    assert torch.equal(target.flatten(2)[..., 1:], student.flatten(2)[..., 1:])


def test_distillation_starts_late_then_ramps():
    from semkt_plugin.strategies.skt.strategy import distill_ramp

    assert [distill_ramp(s, 0, 0) for s in range(2)] == [1.0, 1.0]  # the paper: from the first step
    assert [distill_ramp(s, 3, 0) for s in range(5)] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert [distill_ramp(s, 2, 4) for s in range(7)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert [distill_ramp(s, 0, 4) for s in range(2)] == [0.25, 0.5]  # as before distill_start existed


def test_output_level_terms_are_skipped_until_the_distillation_starts(skb, batch):
    from conftest import TINY_ADAPTER, TinyHDR

    from semkt_plugin import wrap

    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="none", distill_start=1, distill_warmup=0)
    first = skt.loss_terms(model(*frames), gt)
    assert set(first) == {"spg", "feat"} and first["feat"].item() == 0.0  # SKAM skipped: a zero on its parameters
    second = skt.loss_terms(model(*frames), gt)
    assert set(second) == {"spg", "content", "color", "feat"} and second["feat"].item() > 0
    skt.unwrap()


def test_a_fractional_schedule_equals_the_step_counts_it_stands_for(skb):
    from conftest import TINY_ADAPTER, TinyHDR, train_steps

    from semkt_plugin import SKTConfig, wrap

    g = torch.Generator().manual_seed(3)
    data = [([torch.rand(1, 6, 16, 16, generator=g) for _ in range(3)], torch.rand(1, 3, 16, 16, generator=g))
            for _ in range(8)]

    def run(**schedule):
        torch.manual_seed(0)
        model = TinyHDR(4)
        skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="none", **schedule)
        opt = torch.optim.SGD([*model.parameters(), *skt.parameters()], 0.05)
        records = train_steps(model, skt, opt, data)
        skt.unwrap()
        return records

    steps = run(distill_start=4, distill_warmup=2)
    assert run(distill_start=0.5, distill_warmup=0.25, total_steps=8) == steps  # an epoch loop: epochs · len(loader)
    assert [r["content"] != 0 for r in steps] == [False] * 4 + [True] * 4  # it did start at step 4
    assert SKTConfig(distill_start=0.5, distill_warmup=1 / 6, total_steps=600).schedule() == (300, 100)
    with pytest.raises(ValueError, match="total_steps"):
        wrap(TinyHDR(4), TINY_ADAPTER, skb=skb, distill_start=0.5)
    with pytest.raises(ValueError, match="fraction of total_steps"):
        SKTConfig(distill_warmup=1.5, total_steps=10)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        SKTConfig(total_steps=0)
