"""What the transfer work added: the teacher margin against hand-computed values, priors from the ground truth,
the spatial prior path, and `semkt probe` end to end on the example AHDR."""
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR, train_alone

from semkt_plugin import cli, wrap
from semkt_plugin.diagnostics.margin import margin_window, run_margin, teacher_margin
from semkt_plugin.diagnostics.probe import ProbeReport, run_probe
from semkt_plugin.strategies.skt.teacher import SPGRM, SpatialPriorFusion


def test_teacher_margin_by_hand():
    losses = [{"spg": 0.5, "orm": 1.0}, {"spg": 0.2, "orm": 0.4}, {"spg": 0.3, "orm": 0.2}]
    assert teacher_margin(losses, 1, 3) == pytest.approx(1 - 0.25 / 0.3)
    assert teacher_margin(losses, 0, 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no training steps"):
        teacher_margin(losses, 3, 3)
    assert margin_window(300) == (200, 300) and margin_window(1) == (0, 1)
    records = [{"spg": 1.0, "orm": 2.0}] * 200 + [{"spg": 1.0, "orm": 4.0}] * 100 + [{"spg": 9.0, "orm": 1.0}] * 300
    assert run_margin({"distill_start": 0.5}, 600, records) == pytest.approx(0.75)  # steps 200-299 only
    assert run_margin({"distill_start": 300, "lambda_feat": 1.0}, 600, records) == pytest.approx(0.75)
    assert run_margin({"distill_start": 0}, 600, records) is None  # nothing precedes a start at step 0


def test_the_plugin_logs_the_models_own_mu_law_l1(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="skb", **FROM_STEP_0)
    out = model(*frames)
    skt.loss(out, gt)
    expected = F.l1_loss(skt.transfer(out), skt.transfer(gt))
    assert skt.last_losses["orm"] == pytest.approx(expected.item())
    skt.unwrap()


def test_priors_from_the_truth_read_the_ground_truth_not_the_output(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="skb", prior_source="truth", **FROM_STEP_0)
    seen = []
    original = skb.forward
    skb.forward = lambda x: seen.append(x.detach().clone()) or original(x)
    features = skb.features
    skb.features = lambda x: seen.append(x.detach().clone()) or features(x)
    try:
        out = model(*frames)
        skt.loss(out, gt).backward()
    finally:
        del skb.forward, skb.features
    # the priors and region maps come from T(GT); the student's perceptual features from T(H_in)
    assert torch.equal(seen[0], skt.transfer(gt)) and torch.equal(seen[1], skt.transfer(out).detach())
    assert all(p.grad is not None for p in model.parameters())
    skt.unwrap()


def test_the_spatial_path_starts_as_the_identity_and_acts_per_pixel():
    block = SpatialPriorFusion(8, 5)
    feature, prior = torch.rand(2, 8, 12, 12), torch.rand(2, 5, 6, 6)
    assert torch.equal(block(feature, prior), feature)
    torch.nn.init.normal_(block.scale_shift.weight)
    left = prior.clone()
    left[..., :, 3:] = 0  # change the prior on the right half of the image only
    moved = (block(feature, prior) - block(feature, left)).abs().sum(1)
    assert moved[..., :3].max() == 0 and moved[..., 8:].min() > 0  # local (two 3×3 convs): eq. 4 mixes globally
    for fusion, parts in (("attention", (False, True)), ("spatial", (True, False)), ("both", (True, True))):
        teacher = SPGRM((4, 4, 4, 4), dim=8, heads=1, fusion=fusion)
        module = teacher.fusion[0]
        assert ((module.spatial is not None), (module.fuse is not None)) == parts
    with pytest.raises(ValueError, match="fusion"):
        SPGRM((4, 4, 4, 4), fusion="concat")


@pytest.mark.slow  # four short runs of the tiny example AHDR with the stand-in SKB
@pytest.mark.parametrize("option", [{"prior_source": "truth"}, {"prior_fusion": "both"}, {"prior_fusion": "spatial"}])
def test_every_distillation_term_off_trains_bit_identical_to_the_baseline_under_each_new_option(tmp_path, option):
    from semkt_plugin.reproduction.paired import Training, Variant, load_example, run
    from semkt_plugin.reproduction.synth import generate_dataset

    data = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(48, 48), seed=0)
    setup = Training(data, steps=4, batchsize=2, crop=32, nFeat=8, growthRate=4, nDenselayer=2)
    train, test = load_example()
    off = {"skb_weights": "standin", "perceptual": "skb", "lambda_content": 0.0, "lambda_color": 0.0,
           "use_skam": False, **option}
    base = run(train, test, setup, Variant("AHDR"), 0, tmp_path / "base")
    only_teacher = run(train, test, setup, Variant("teacher only", off), 0, tmp_path / "teacher")
    assert only_teacher["train"]["losses"] == base["train"]["losses"]
    assert only_teacher["test"] == base["test"]


def test_probe_report_margins_and_gains_by_hand():
    orm = [1.0] * 10
    report = ProbeReport(orm, {"no priors": [0.9] * 10, "priors": [0.9] * 5 + [0.8, 0.8, 0.7, 0.7, 0.6]},
                         windows=2)
    assert report.bounds() == [(5, 7), (7, 10)]
    margins = report.margins()
    assert margins["no priors"] == pytest.approx([0.1, 0.1])
    assert margins["priors"] == pytest.approx([0.2, 1 - 2.0 / 3])
    summary = report.summary()
    assert "gain" not in summary["no priors"]
    assert summary["priors"]["gain"]["per_seed"] == pytest.approx([0.1, 1 - 2.0 / 3 - 0.1])
    assert "margin gained over the teacher with no priors" in report.table()


def test_probe_keeps_the_model_on_its_own_trajectory(skb):
    g = torch.Generator().manual_seed(0)
    batches = [(*[torch.rand(2, 6, 16, 16, generator=g) for _ in range(3)], torch.rand(2, 3, 16, 16, generator=g))
               for _ in range(6)]

    def loss_fn(out, gt):
        return F.l1_loss(out, gt)

    torch.manual_seed(0)
    alone = TinyHDR(4)
    train_alone(alone, batches, loss_fn)
    torch.manual_seed(0)
    probed = TinyHDR(4)
    arms = {"no priors": {"use_priors": False}, "priors": {}, "truth": {"prior_source": "truth"}}
    report = run_probe(probed, TINY_ADAPTER, batches, loss_fn, steps=6, arms=arms, lr=1e-3, windows=2, skb=skb,
                       progress=False)
    for a, b in zip(alone.parameters(), probed.parameters()):
        assert torch.equal(a, b)  # the teachers never moved the model
    assert set(report.spg) == set(arms) and len(report.orm) == 6
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in probed.modules()) == 0


@pytest.mark.slow  # the example AHDR and three teachers, 10 steps, with the stand-in SKB
def test_semkt_probe_runs_on_the_example_ahdr(tmp_path, capsys):
    from semkt_plugin.reproduction.synth import generate_dataset

    data = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(48, 48), seed=0)
    out = tmp_path / "probe"
    assert cli.main(["probe", "--data", str(data), "--steps", "10", "--windows", "2", "--crop", "32", "--truth",
                     "--kwargs", '{"nFeat": 8, "growthRate": 4, "nDenselayer": 2}', "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "teacher margin over the model" in printed and "priors from the truth" in printed
    assert "SKB: standin" in printed and "device: cpu" in printed and "model   AHDR (the example, " in printed
    result = json.loads((out / "probe.json").read_text())
    assert set(result["spg"]) == {"no priors", "priors from the output", "priors from the truth"}
    assert len(result["orm"]) == 10 and result["bounds"] == [[5, 7], [7, 10]]
    assert (out / "probe.png").stat().st_size > 0
