"""The code blocks of docs/recipes/*.md and docs/training.md, run as written.

Each recipe's blocks are read from its markdown and executed at their places in a loop shaped like that
baseline's train script (the same variable names, order and calls; ``file:line`` comments name what each harness
line stands for), on the baseline's replica (tests/upstream/, examples/ahdr/model.py), narrow, on small crops
(32²; SAFNet's smallest is 64²), for a few CPU steps. The schedule of every run reaches the distillation, so
every term of semkt's loss runs. DDP runs on two Gloo processes. Offline, ``wrap`` loads semkt's stand-in SKB and
uses its features as the perceptual network (``_recipes.OFFLINE``); the blocks themselves name FastSAM-s, and
the tests check that they do.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from _recipes import (
    RECIPES,
    ROOT,
    TRAINING,
    TRAINING_BLOCKS,
    Writer,
    ahdr_pairs,
    blocks,
    mu_l1,
    mu_law,
    offline_wrap,
    run,
    runnable,
    scene,
    tiny,
)
from torch import nn, optim
from torch.utils.data import DataLoader

import semkt_plugin

HERE = Path(__file__).parent
ALL_TERMS = {"spg", "content", "color", "feat", "orm", "total"}


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """``semkt_plugin.wrap`` made offline for the blocks' ``from semkt_plugin import wrap``; the settings each call
    was given, as the block wrote them."""
    given: list[dict] = []
    monkeypatch.setattr(semkt_plugin, "wrap", offline_wrap(given))
    return given


def script(**names) -> dict:
    """A script's module namespace after the recipes' ``from semkt_plugin import wrap`` (and the usual imports)."""
    from semkt_plugin import wrap

    return {"torch": torch, "F": F, "nn": nn, "wrap": wrap, **names}


def assert_distilled(skt, steps: int) -> None:
    assert int(skt.steps) == steps
    losses = skt.last_losses
    assert ALL_TERMS <= set(losses) and all(math.isfinite(v) for v in losses.values()), losses


def assert_plain_checkpoint(state_dict: dict, name: str) -> None:
    """A checkpoint written while wrapped loads strictly into the bare replica: the hooks add no keys."""
    tiny(name).load_state_dict(state_dict, strict=True)


# --- every block is run or marked -------------------------------------------------------------------------------


def test_every_block_is_run_or_marked_as_a_fragment():
    assert {p.name for p in RECIPES.glob("*.md")} == {"ahdr.md", "hdr_transformer.md", "sctnet.md", "safnet.md",
                                                      "tmrnet.md"}, "a new recipe needs its test in this file"
    for doc in [*sorted(RECIPES.glob("*.md")), TRAINING]:
        for block in blocks(doc):
            where = f"{doc.relative_to(ROOT)}:{block.line}"
            if block.covered_by is None:
                assert block.lang == "python", f"{where}: a {block.lang or 'plain'} block must be marked as a fragment"
                continue
            path, test = block.covered_by.split("::")
            assert f"def {test}(" in (ROOT / path).read_text(), f"{where} names {block.covered_by}, which is missing"


# --- AHDRNet (script_training.py, running_func.py) --------------------------------------------------------------


def ahdr_h5(n: int, size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What ``data_loader`` reads from the H5 files: ``IN`` (18, H, W) = three LDRs, then the three linear frames;
    ``GT`` (3, H, W)."""
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        frames, hdr = scene(g, size)
        samples.append((torch.cat([ldr for ldr, _ in frames] + [lin for _, lin in frames]), hdr))
    return samples


def ahdr_train(ns, edits, epoch, model, train_loaders, optimizer, args, skt, writer):
    """``running_func.train`` (:112-158) with edits 5 and 6."""
    lr = args.lr if epoch <= args.epochs * 0.8 else 0.1 * args.lr  # get_lr, :105-110
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    model.train()
    trainloss = 0
    for batch_idx, (data, target) in enumerate(train_loaders):
        data1 = torch.cat((data[:, 0:3], data[:, 9:12]), dim=1)  # :127-129
        data2 = torch.cat((data[:, 3:6], data[:, 12:15]), dim=1)
        data3 = torch.cat((data[:, 6:9], data[:, 15:18]), dim=1)
        optimizer.zero_grad()
        output = model(data1, data2, data3)  # :136
        run(edits["semkt_loss"], ns, skt=skt, output=output, target=target)
        output = torch.log(1 + 5000 * output.cpu()) / math.log(1 + 5000)  # :139-140
        target = torch.log(1 + 5000 * target).cpu() / math.log(1 + 5000)
        loss = run(edits["loss"], ns, output=output, target=target)["loss"]  # :142
        loss.backward()  # :143-144
        optimizer.step()
        trainloss = trainloss + loss.item()
        if (batch_idx + 1) % 4 == 0:  # :146-148
            print(f"train Epoch {epoch} iteration: {batch_idx} loss: {trainloss / 4:.6f}")
            run(edits["log"], ns, epoch=epoch, batch_idx=batch_idx, skt=skt, writer=writer,
                train_loaders=train_loaders)
            trainloss = 0


def test_ahdr_recipe(calls, tmp_path, capsys):
    edits = runnable(RECIPES / "ahdr.md", "wrap", "semkt_loss", "loss", "log", "save")
    args = Namespace(epochs=2, lr=1e-4, use_cuda=False, trained_model_dir=f"{tmp_path}/", save_model_interval=1)
    torch.manual_seed(0)
    train_loaders = DataLoader(ahdr_h5(4), batch_size=1, shuffle=True)  # :46-48; 4 iterations: one log line
    model = tiny("ahdr")  # :61-64
    ns = run(edits["wrap"], script(), args=args, train_loaders=train_loaders, model=model)  # edits 1, 2
    skt = ns["skt"]
    optimizer = optim.Adam([*model.parameters(), *skt.parameters()], lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    writer = Writer()
    start_step = 0
    for epoch in range(start_step + 1, args.epochs + 1):  # :74-81, edit 8
        ahdr_train(ns, edits, epoch, model, train_loaders, optimizer, args, skt, writer)
        if epoch % args.save_model_interval == 0:
            model_name = args.trained_model_dir + f"trained_model{epoch}.pkl"
            torch.save(model.state_dict(), model_name)
            run(edits["save"], ns, epoch=epoch)

    assert calls == [{"total_steps": 8, "skb_weights": "FastSAM-s.pt"}]  # epochs × batches
    assert_distilled(skt, 8)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("semkt Epoch")]
    assert [line.split(" spg:")[0] for line in printed] == ["semkt Epoch 1 iteration: 3", "semkt Epoch 2 iteration: 3"]
    assert all(f" {k}: " in printed[-1] for k in ALL_TERMS)
    assert {step for _, _, step in writer.scalars} == {3, 7}
    assert "semkt/total" in {tag for tag, _, _ in writer.scalars}
    for epoch in (1, 2):
        assert_plain_checkpoint(torch.load(tmp_path / f"trained_model{epoch}.pkl", weights_only=True), "ahdr")
        skt.load_state_dict(torch.load(tmp_path / f"semkt{epoch}.pt", weights_only=True))
    # model_restore (running_func.py:21-30) globs *.pkl and parses the number after "model": semkt's file is not seen
    restored = [int(p.split("model")[-1].split(".")[0]) for p in map(str, tmp_path.glob("*.pkl"))]
    assert sorted(restored) == [1, 2]


def test_ahdr_untyped_epochs_stop_at_wrap(calls):
    """ahdr.md, "Untyped arguments": ``--epochs 100`` is a string; the recipe's ``wrap`` refuses the repeated one."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", default=800000)  # script_training.py:28, no type=
    args = parser.parse_args(["--epochs", "100"])
    train_loaders = [None] * 3
    with pytest.raises(ValueError, match="total_steps must be an int, got '100100100'"):
        run(runnable(RECIPES / "ahdr.md", "wrap", "semkt_loss", "loss", "log", "save")["wrap"], script(), args=args,
            train_loaders=train_loaders, model=tiny("ahdr"))
    with pytest.raises(TypeError):  # without semkt: the epoch loop, :74
        range(1, args.epochs + 1)


# --- HDR-Transformer (train.py) and SCTNet (train_sct.py): the same loop ------------------------------------------


def sig17(n: int, size: int = 32) -> list[dict[str, torch.Tensor]]:
    """``SIG17_Training_Dataset`` items: ``input0..2`` (6, H, W) = ``[LDR**2.2/t, LDR]`` and ``label``."""
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        frames, hdr = scene(g, size)
        items.append({**{f"input{i}": torch.cat([lin, ldr]) for i, (ldr, lin) in enumerate(frames)}, "label": hdr})
    return items


def transformer_train(ns, edits, name, args, model, device, train_loader, optimizer, epoch, criterion, skt, skt_loss,
                      writer):
    """``train()`` (train.py:56-84, train_sct.py:60-88) with edits 5 and 6."""
    model.train()
    for batch_idx, batch_data in enumerate(train_loader):
        batch_ldr0, batch_ldr1, batch_ldr2 = (batch_data[f"input{i}"].to(device) for i in range(3))
        label = batch_data["label"].to(device)
        if name == "sctnet":
            pred = model(batch_ldr0.contiguous(), batch_ldr1.contiguous(), batch_ldr2.contiguous())
        else:
            pred = model(batch_ldr0, batch_ldr1, batch_ldr2)
        loss = run(edits["loss"], ns, criterion=criterion, pred=pred, label=label, skt_loss=skt_loss)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * args.batch_size}/{len(train_loader.dataset)}]\t"
                  f"Loss: {loss.item():.6f}")
            run(edits["log"], ns, skt=skt, writer=writer, epoch=epoch, train_loader=train_loader, batch_idx=batch_idx)


@pytest.mark.parametrize("name", ["hdr_transformer", "sctnet"])
def test_transformer_recipes(name, calls, tmp_path, capsys):
    edits = runnable(RECIPES / f"{name}.md", "wrap", "loss", "log")
    args = Namespace(epochs=2, batch_size=2, lr=2e-4, lr_decay_interval=100, log_interval=1, logdir=str(tmp_path))
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = tiny(name)
    # their default JointReconPerceptualLoss adds a VGG16 term whose weights are a download; --loss_func 0 is this
    criterion = mu_l1
    train_loader = DataLoader(sig17(4), batch_size=args.batch_size, shuffle=True)  # moved up (edit 2)
    model.to(device)
    ns = run(edits["wrap"], script(), args=args, train_loader=train_loader, model=model)  # edit 3
    skt = ns["skt"]
    optimizer = torch.optim.Adam([*model.parameters(), *skt.parameters()], lr=args.lr, betas=(0.9, 0.999), eps=1e-08)
    writer = Writer()
    for epoch in range(args.epochs):
        for param_group in optimizer.param_groups:  # adjust_learning_rate, utils/utils.py
            param_group["lr"] = args.lr * (0.5 ** (epoch // args.lr_decay_interval))
        transformer_train(ns, edits, name, args, model, device, train_loader, optimizer, epoch, criterion, skt,
                          skt.loss, writer)
        save_dict = {"epoch": epoch + 1, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}
        torch.save(save_dict, os.path.join(args.logdir, "val_latest_checkpoint.pth"))  # test(), edit 7

    assert calls == [{"total_steps": 4, "skb_weights": "FastSAM-s.pt"}]
    assert_distilled(skt, 4)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("semkt:\t")]
    assert len(printed) == 4 and all(f"\t{k}: " in printed[-1] for k in ALL_TERMS)
    assert sorted({step for _, _, step in writer.scalars}) == [0, 1, 2, 3]
    checkpoint = torch.load(tmp_path / "val_latest_checkpoint.pth", weights_only=True)
    assert_plain_checkpoint(checkpoint["state_dict"], name)


# --- SAFNet (no training script: the recipe's own loop) ---------------------------------------------------------


def safnet_pairs(n: int, size: int) -> list[tuple[torch.Tensor, ...]]:
    """``(img0_c, img1_c, img2_c, gt)``, each frame ``[LDR**2.2/t, LDR]`` (SAFNet.py:183)."""
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        frames, hdr = scene(g, size)
        samples.append((*(torch.cat([lin, ldr]) for ldr, lin in frames), hdr))
    return samples


def safnet_loss(out, gt):
    """Step 2 of the recipe: L1 between the μ-law of the refined output and of the ground truth."""
    return F.l1_loss(mu_law(out[1]), mu_law(gt))


def test_safnet_recipe(calls, tmp_path, monkeypatch, capsys):
    edits = runnable(RECIPES / "safnet.md", "loop", "safnet_s")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    writer = Writer()
    ns = run(edits["loop"], script(), SAFNet=type(tiny("safnet")), device=torch.device("cpu"), epochs=2, lr=1e-4,
             train_loader=DataLoader(safnet_pairs(2, 64), batch_size=1, shuffle=True), your_loss=safnet_loss,
             log_every=1, writer=writer)

    assert calls == [{"total_steps": 4, "skb_weights": "FastSAM-s.pt"}]
    assert int(ns["skt"].steps) == 4  # its last_losses went with unwrap(): the log has them
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(printed) == 4 and all(f" {k}: " in printed[-1] for k in ALL_TERMS)
    assert sorted({step for _, _, step in writer.scalars}) == [1, 2, 3, 4]
    assert {tag for tag, _, step in writer.scalars if step == 4} == {f"semkt/{k}" for k in ALL_TERMS}
    model = ns["model"]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()), "unwrap() left a hook"
    assert_plain_checkpoint(torch.load(tmp_path / "SAFNet_semkt.pth", weights_only=True), "safnet")


def test_safnet_s_adapter(calls):
    """The declarative adapter for SAFNet-S hooks modules that exist and fire: SKAM trains on them."""
    block = runnable(RECIPES / "safnet.md", "loop", "safnet_s")["safnet_s"]
    torch.manual_seed(0)
    model = tiny("safnet_s")
    skt = run(block, script(), model=model, total_steps=2)["skt"]
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-4)
    for img0_c, img1_c, img2_c, gt in DataLoader(safnet_pairs(2, 64), batch_size=1):
        out = model(img0_c, img1_c, img2_c)
        loss = safnet_loss(out, gt) + skt.loss(out, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert_distilled(skt, 2)
    assert skt.last_losses["feat"] > 0
    assert {path for path, _ in skt.hooked()} == {"refinenet.conv1", "refinenet.conv4", "refinenet.conv7"}


def test_safnet_whole_tuple_or_a_clear_error(calls):
    """safnet.md, "What semkt reads": ``skt.loss(out[1], gt)`` stops at once and says what to pass."""
    model = tiny("safnet")
    skt = semkt_plugin.wrap(model, "safnet", total_steps=2)
    img0_c, img1_c, img2_c, gt = DataLoader(safnet_pairs(1, 64), batch_size=1).__iter__().__next__()
    out = model(img0_c, img1_c, img2_c)
    with pytest.raises(ValueError, match=r"got a single tensor .* pass the model's whole return value"):
        skt.loss(out[1], gt)
    assert torch.isfinite(skt.loss(out, gt))


def test_safnet_32_crops_give_nan_gradients():
    """safnet.md, step 1: at 32 the coarsest flow level is 1×1 and upstream's warp divides by W − 1 = 0."""
    torch.manual_seed(0)
    model = tiny("safnet")
    img0_c, img1_c, img2_c, gt = DataLoader(safnet_pairs(1, 32), batch_size=1).__iter__().__next__()
    safnet_loss(model(img0_c, img1_c, img2_c), gt).backward()
    assert not torch.isfinite(model.encoder.pyramid1[0][0].weight.grad).all()


# --- TMRNet (BracketIRE: syn_train.py, models/syn_model.py) -----------------------------------------------------


def augment(*imgs):
    """``networks.augment``: the same random flips and transpose for every tensor."""
    hflip, vflip, rot90 = (random.random() < 0.5 for _ in range(3))
    for img in imgs:
        img = img.flip(-1) if hflip else img
        img = img.flip(-2) if vflip else img
        yield img.transpose(-1, -2) if rot90 else img


class SynModel:
    """``SynModel`` (models/syn_model.py) on the CPU with edits 2-5: ``gpu_ids`` is empty, so ``init_net`` returns
    the net itself (networks.py:110-117) and ``BaseModel.device`` is the CPU (base_model.py:19-22)."""

    def __init__(self, opt, edits):
        self.opt, self.isTrain, self.gpu_ids = opt, opt.isTrain, opt.gpu_ids
        self.device = torch.device("cpu")
        self.edits = edits
        self.module = script()  # syn_model.py's namespace, with edit 2's import
        self.loss_names = ["TMRNet_l1", "Total"]
        self.netTMRNet = tiny("tmrnet")  # :27-28
        if self.isTrain:
            run(edits["wrap"], self.module, self=self, opt=opt)  # edit 3
            self.optimizer_TMRNet = optim.AdamW([*self.netTMRNet.parameters(), *self.skt.parameters()], lr=opt.lr,
                                                betas=(opt.beta1, opt.beta2), weight_decay=opt.weight_decay)
            self.criterionL1 = nn.L1Loss()

    def set_input(self, input):  # :39-46
        self.data_gt = input["gt"].to(self.device)
        self.data_raws = input["raws"].to(self.device)
        self.expo = (4.0 ** (2 - torch.arange(5.0)))[None, :, None, None, None]

    def forward(self):  # :48-56
        self.data_raws, self.data_gt = augment(self.data_raws, self.data_gt)
        self.data_raws = self.data_raws * self.expo
        self.data_out = self.netTMRNet(self.data_raws)

    def backward(self, epoch):  # :86-92, edit 5
        self.loss_TMRNet_l1 = self.criterionL1(mu_law(torch.clamp(self.data_out / 4**2, min=0)),
                                               mu_law(torch.clamp(self.data_gt / 4**2, 0, 1))).mean()
        run(self.edits["loss"], self.module, self=self)
        self.loss_Total.backward()

    def optimize_parameters(self, epoch):
        self.forward()
        self.optimizer_TMRNet.zero_grad()
        self.backward(epoch)
        self.optimizer_TMRNet.step()

    def get_current_losses(self):  # base_model.py:122-126
        return {name: float(getattr(self, "loss_" + name)) for name in self.loss_names}


def bracket_items(n: int, size: int = 16) -> list[dict]:
    """``SynDataset`` items: five packed RGGB frames in [0, 1] and a packed ground truth that can exceed 16."""
    g = torch.Generator().manual_seed(0)
    return [{"raws": torch.rand(5, 4, size, size, generator=g), "gt": 20 * torch.rand(4, size, size, generator=g),
             "fname": f"scene{i}"} for i in range(n)]


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True")  # their float(loss), :125
def test_tmrnet_recipe(calls, capsys):
    edits = runnable(RECIPES / "tmrnet.md", "total_steps", "wrap", "loss", "log")
    random.seed(0)
    torch.manual_seed(0)
    opt = Namespace(isTrain=True, gpu_ids=[], batch_size=2, niter=1, niter_decay=1, lr=1e-4, beta1=0.9, beta2=0.999,
                    weight_decay=0.01, print_freq=1)
    dataset_train = DataLoader(bracket_items(4), batch_size=opt.batch_size, shuffle=True)  # :33-34
    dataset_size_train = len(dataset_train.dataset)
    main = run(edits["total_steps"], script(), opt=opt, dataset_size_train=dataset_size_train)  # edit 1
    model = SynModel(opt, edits)  # :40
    writer = Writer()  # the Visualizer's tensorboardX writer
    total_iters = 0
    for epoch in range(1, opt.niter + opt.niter_decay + 1):  # :46-65
        for i, data in enumerate(dataset_train):
            total_iters += 1
            model.set_input(data)
            model.optimize_parameters(epoch)
            if total_iters % opt.print_freq == 0:
                losses = run(edits["log"], main, model=model)["losses"]  # edit 6, in place of :62
                message = f"(epoch: {epoch}, iters: {i + 1}) "  # print_current_losses, visualizer.py:47-54
                for k, v in losses.items():
                    message += f"{k}: {v:.4e} "
                    writer.add_scalar(f"loss/{k}", v, total_iters)
                print(message)

    assert opt.semkt_total_steps == 4 and calls == [{"total_steps": 4, "skb_weights": "FastSAM-s.pt"}]
    assert_distilled(model.skt, 4)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("(epoch")]
    assert len(printed) == 4 and all(f"semkt_{k}: " in printed[-1] for k in ALL_TERMS)
    assert "TMRNet_l1: " in printed[-1]
    assert {f"loss/semkt_{k}" for k in ALL_TERMS} <= {tag for tag, _, _ in writer.scalars}
    assert_plain_checkpoint(model.netTMRNet.state_dict(), "tmrnet")  # save_networks on the CPU, base_model.py:138


# --- docs/training.md -------------------------------------------------------------------------------------------


def test_training_schedule(calls):
    block = runnable(TRAINING, *TRAINING_BLOCKS)["schedule"]
    skt = run(block, script(), model=tiny("hdr_transformer"), epochs=3, train_loader=[None] * 4)["skt"]
    assert calls == [{"total_steps": 12}]
    assert skt.config.schedule() == (6, 2)  # distill_start=0.5, warm-up a sixth


def ahdr_setup(seed: int):
    """A model and its plugin as the DDP example builds them, on one process: the plugin stands for its own DDP
    wrapper (``skt_ddp(out, gt)`` is ``skt.loss(out, gt)``)."""
    torch.manual_seed(seed)
    model = tiny("ahdr")
    skt = semkt_plugin.wrap(model, "ahdr", total_steps=4, skb_weights="FastSAM-s.pt")
    return model, skt, torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-3)


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, pytest.param(torch.float16, marks=pytest.mark.slow)])
def test_training_mixed_precision(calls, amp_dtype):
    block = runnable(TRAINING, *TRAINING_BLOCKS)["amp"]
    model, skt, opt = ahdr_setup(0)
    before = [p.detach().clone() for p in model.parameters()]
    loader = DataLoader(ahdr_pairs(4, 32), batch_size=1)
    ns = run(block, script(), device=torch.device("cpu"), amp_dtype=amp_dtype, loader=loader, model=model,
             skt_ddp=skt, their_loss=mu_l1, opt=opt)
    assert ns["scaler"].is_enabled() == (amp_dtype == torch.float16)
    assert_distilled(skt, 4)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), "the model did not train"


def test_training_logging(calls, tmp_path, monkeypatch, capsys):
    """docs/training.md, "Logging": the read on step 0 gives every key as a float, to TensorBoard and to print."""
    block = runnable(TRAINING, *TRAINING_BLOCKS)["logging"]
    model, skt, _ = ahdr_setup(0)
    monkeypatch.chdir(tmp_path)  # SummaryWriter() writes under ./runs
    run(block, script(), loader=DataLoader(ahdr_pairs(2, 32), batch_size=1), model=model, skt=skt,
        their_loss=mu_l1)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("step 0 ")
    assert set(printed[0].split()[2::2]) == ALL_TERMS  # every key from the first step
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*")), "nothing written for TensorBoard"


def test_training_resume(calls, tmp_path):
    """docs/training.md, "Resume": 2 steps, save, a new run (other weights) resumes, 2 steps = 4 steps straight."""
    edits = runnable(TRAINING, *TRAINING_BLOCKS)
    batches = list(DataLoader(ahdr_pairs(4, 32), batch_size=1))
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def train(model, skt, opt, steps):
        for frames, gt in steps:
            out = model(*frames)
            loss = mu_l1(out, gt) + skt.loss(out, gt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return skt.last_losses

    straight = train(*ahdr_setup(0), batches)
    model, skt, opt = ahdr_setup(0)
    train(model, skt, opt, batches[:2])
    path = tmp_path / "ckpt.pt"
    run(edits["save"], script(), model_core=model, skt=skt, opt=opt, scaler=scaler, step=2, path=path)
    skt.unwrap()

    torch.manual_seed(1)
    model = tiny("ahdr")
    ns = run(edits["resume"], script(), path=path, model=model, model_core=model, total_steps=4, lr=1e-3,
             scaler=torch.amp.GradScaler("cpu", enabled=False))
    assert ns["step"] == 2 and int(ns["skt"].steps) == 2
    resumed = train(model, ns["skt"], ns["opt"], batches[2:])
    assert resumed.keys() == straight.keys()
    assert all(math.isclose(resumed[k], straight[k], rel_tol=1e-5, abs_tol=1e-6) for k in straight), (resumed,
                                                                                                      straight)


def test_training_dataparallel_message():
    """The excerpt of the DataParallel error in docs/training.md is what a replica of a wrapped model raises."""
    (fragment,) = [b for b in blocks(TRAINING) if b.covered_by]
    model = tiny("ahdr")
    skt = semkt_plugin.wrapping.wrap(model, "ahdr", use_priors=False, lambda_color=0.0, perceptual="none",
                                   distill_start=0, distill_warmup=0)
    replica = model._replicate_for_data_parallel()  # what nn.parallel.replicate builds per GPU: hooks shared
    with pytest.raises(RuntimeError) as error:
        replica(*ahdr_pairs(1, 16)[0][0])
    message = f"RuntimeError: {error.value}"
    for piece in fragment.code.replace("\n", " ").split("..."):
        assert " ".join(piece.split()) in message
    skt.unwrap()


def launch(worker: str, out: Path) -> list[dict]:
    """Run ``worker`` on two Gloo ranks as torchrun does, without GPUs; each rank's saved results."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(HERE / worker),
           str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.slow
def test_training_ddp(tmp_path):
    """The DDP example on two Gloo processes: each rank starts from other weights and sees other batches, and ends
    with the same model and plugin; rank 0 alone saves, in files the bare model loads."""
    a, b = launch("recipes_ddp_worker.py", tmp_path)
    assert a["calls"] == [{"total_steps": 4, "skb_weights": "FastSAM-s.pt"}]  # 2 epochs × 2 batches per rank
    assert any(not torch.equal(a["init"][k], b["init"][k]) for k in a["init"]), "the ranks should start apart"
    for part in ("model", "plugin"):
        unequal = [k for k, v in a[part].items() if isinstance(v, torch.Tensor) and not torch.equal(v, b[part][k])]
        assert not unequal, f"{part} differs across ranks: {unequal[:5]}"
    assert a["last_losses"] != b["last_losses"], "each rank should see its own batches"
    assert a["steps"] == b["steps"] == 4 and ALL_TERMS <= set(a["last_losses"])
    assert sorted(p.name for p in (tmp_path / "rank0").iterdir()) == ["model_0.pt", "model_1.pt", "semkt_0.pt",
                                                                      "semkt_1.pt"]
    assert not list((tmp_path / "rank1").iterdir())
    assert_plain_checkpoint(torch.load(tmp_path / "rank0" / "model_1.pt", weights_only=True), "ahdr")
