"""Gradient balance: exact on losses with hand-computed gradients; routing and outputs on the example AHDR."""
import json
import math

import pytest
import torch
from torch import nn

from semkt_plugin.cli import main
from semkt_plugin.diagnostics.balance import gradient_balance, run_balance, term_gradients


class Toy(nn.Module):
    """Two used 2-weight children and one the losses never reach."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 1, bias=False)
        self.b = nn.Linear(2, 1, bias=False)
        self.unused = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[3.0, 4.0]]))
            self.b.weight.copy_(torch.tensor([[12.0, 0.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


def toy_losses(model: Toy) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """task = ½‖θ‖² → ∇ = θ = (3, 4 | 12, 0), ‖θ‖ = 13; content = 2·a₁ → (2, 0 | 0, 0);
    feat = −½‖b‖² → (0, 0 | −12, 0); spg reaches only a parameter outside the model → 0."""
    wa, wb = model.a.weight[0], model.b.weight[0]
    teacher = torch.ones(2, requires_grad=True)
    task = 0.5 * (wa.pow(2).sum() + wb.pow(2).sum())
    return task, {"spg": teacher.pow(2).sum(), "content": 2 * wa[0], "feat": -0.5 * wb.pow(2).sum()}


def test_term_gradients_are_flat_zero_where_unreached_and_leave_grad_alone():
    model = Toy()
    model.a.weight.grad = torch.full((1, 2), 7.0)
    task, terms = toy_losses(model)
    grads = term_gradients(model, {"task": task, **terms})
    assert torch.equal(grads["task"], torch.tensor([3.0, 4, 12, 0, 0, 0]))
    assert torch.equal(grads["content"], torch.tensor([2.0, 0, 0, 0, 0, 0]))
    assert torch.equal(grads["spg"], torch.zeros(6))
    assert torch.equal(model.a.weight.grad, torch.full((1, 2), 7.0)) and model.b.weight.grad is None
    (task + sum(terms.values())).backward()  # the graph is still there for the step
    assert torch.equal(model.b.weight.grad, torch.tensor([[0.0, 0]]))


def test_gradient_balance_matches_hand_computed_ratio_and_cosine():
    model = Toy()
    model.unused.requires_grad_(False)  # frozen parameters are not counted
    balance = gradient_balance(*toy_losses(model), model, groups=True)
    expect = {
        "spg": (0, 0),
        "content": (2 / 13, 3 / 13),  # (2·3) / (2·13)
        "feat": (12 / 13, -12 / 13),
        "distill": (math.sqrt(148) / 13, (6 - 144) / (math.sqrt(148) * 13)),  # (2, 0, −12, 0)
        "content/a": (2 / 5, 0.6), "feat/a": (0, 0), "content/b": (0, 0), "feat/b": (1, -1),
    }
    for key, (ratio, cosine) in expect.items():
        assert balance[key]["ratio"] == pytest.approx(ratio, abs=1e-7), key
        assert balance[key]["cosine"] == pytest.approx(cosine, abs=1e-7), key
    assert not [k for k in balance if k.endswith("/unused")]
    assert all(p.grad is None for p in model.parameters())


class ToyPlugin(nn.Module):
    """Stands in for the plugin: the toy terms, and a teacher weight of its own that only "spg" reaches."""

    def __init__(self, model: Toy) -> None:
        super().__init__()
        self.model, self.teacher, self.calls = [model], nn.Parameter(torch.ones(2)), 0

    def loss_terms(self, output, target):
        self.calls += 1
        wa, wb = self.model[0].a.weight[0], self.model[0].b.weight[0]
        return {"spg": self.teacher.pow(2).sum(), "content": 2 * wa[0], "feat": -0.5 * wb.pow(2).sum()}


def half_norm(model: Toy) -> torch.Tensor:
    return 0.5 * (model.a.weight.pow(2).sum() + model.b.weight.pow(2).sum())


def test_run_balance_measures_before_each_step_and_steps_on_task_plus_terms():
    model = Toy()
    skt = ToyPlugin(model)
    batches = [(torch.ones(1, 2), torch.zeros(1))]  # (*inputs, target), reused every pass
    optimizer = torch.optim.SGD([*model.parameters(), *skt.parameters()], lr=1.0)
    report = run_balance(model, skt, batches, lambda out, gt: half_norm(model), optimizer=optimizer, steps=1)
    fresh = Toy()
    assert report.records[0]["balance"] == gradient_balance(*toy_losses(fresh), fresh, groups=True)
    assert report.records[0]["task_norm"] == pytest.approx(13) and report.records[0]["task"] == pytest.approx(84.5)
    # one SGD step of lr 1 on task + spg + content + feat
    assert torch.equal(model.a.weight, torch.tensor([[-2.0, 0]])) and torch.equal(
        model.b.weight, torch.tensor([[12.0, 0]])
    )
    assert torch.equal(skt.teacher, -torch.ones(2))

    report = run_balance(model, skt, batches, lambda out, gt: half_norm(model), optimizer=optimizer, steps=5,
                         every=2)
    assert [r["step"] for r in report.records] == [0, 2, 4] and skt.calls == 6  # one loss_terms call per step
    assert report.summary()["feat"]["negative_cosine"] == 1  # feat undoes the task's pull on b
    assert "feat/b" not in report.table() and "distill" in report.table()


def test_run_balance_says_when_one_shot_batches_run_out():
    model = Toy()
    with pytest.raises(ValueError, match="ran out after one pass"):
        run_balance(model, ToyPlugin(model), iter([(torch.ones(1, 2), torch.zeros(1))]),
                    lambda out, gt: half_norm(model), steps=2)


@pytest.mark.slow  # loads the stand-in SKB and trains the example AHDR with semkt: ~10 s on 2 busy cores
def test_cli_balance_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "balance"
    tiny = json.dumps({"nDenselayer": 2, "nFeat": 8, "growthRate": 4})
    assert main(["balance", "--steps", "2", "--crop", "32", "--batchsize", "1", "--kwargs", tiny,
                 "--out", str(out)]) == 0
    result = json.loads((out / "balance.json").read_text())
    assert result["steps"] == 2 and len(result["records"]) == 2 and result["settings"]["crop"] == 32
    for record in result["records"]:  # L_spg moves only the teacher
        assert record["balance"]["spg"] == {"ratio": 0.0, "cosine": 0.0}
    for term in ("content", "color", "feat", "distill"):
        assert all(math.isfinite(v) for v in result["summary"][term].values()), term
    assert result["summary"]["feat"]["ratio_median"] > 0
    assert (out / "balance.png").stat().st_size > 0 and (out / "data" / "synth.json").exists()
    printed = capsys.readouterr().out
    assert "median [25%, 75%]" in printed and "distill" in printed and "conv_up" in printed
