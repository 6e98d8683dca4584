"""DDP on two CPU processes (gloo), launched like ``torchrun``; the worker is ``ddp_worker.py``."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

HERE = Path(__file__).parent


def launch(worker: str, out: Path) -> list[dict]:
    """Run ``worker`` on two gloo ranks as torchrun does; each rank's saved results."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / worker), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return launch("ddp_worker.py", tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def strategy_ranks(tmp_path_factory):
    return launch("ddp_strategies_worker.py", tmp_path_factory.mktemp("ddp_strategies"))


@pytest.mark.slow
@pytest.mark.parametrize("order", ["ddp-then-wrap", "wrap-then-ddp"])
def test_ddp_keeps_ranks_in_sync(ranks, order):
    a, b = ranks[0][order], ranks[1][order]
    assert any(not torch.equal(a["init"][k], b["init"][k]) for k in a["init"]), "ranks should start apart"
    for part in ("plugin", "orm"):
        assert a[part].keys() == b[part].keys()
        unequal = [
            k for k in a[part] if isinstance(a[part][k], torch.Tensor) and not torch.equal(a[part][k], b[part][k])
        ]
        assert not unequal, f"{part} differs across ranks after training: {unequal[:5]}"
    moved = [k for k in a["init"] if not torch.equal(a["init"][k], a["plugin"][k])]
    assert len(moved) > len(a["init"]) // 2, "the plugin did not train"
    for r in (a, b):
        assert r["keys_kept"] and r["hooked_inner"] and r["wrapper_hooks"] == 0
        assert all(list(step) == ["spg", "content", "color", "feat", "orm", "total"] for step in r["losses"])
        assert r["losses"][0]["content"] == r["losses"][0]["color"] == r["losses"][0]["feat"] == 0  # before the start
        assert all(math.isfinite(v) for step in r["losses"] for v in step.values())
    assert a["losses"] != b["losses"], "each rank should see its own data"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["smhdr", "smarthdr"])
def test_ddp_keeps_ranks_in_sync_under_each_strategy(strategy_ranks, strategy):
    a, b = strategy_ranks[0][strategy], strategy_ranks[1][strategy]
    for part in ("orm", "trained_plugin"):
        unequal = [k for k in a[part] if not torch.equal(a[part][k], b[part][k])]
        assert not unequal, f"{part} differs across ranks after training: {unequal[:5]}"
    assert a["losses"] != b["losses"], "each rank should see its own data"
    assert all(math.isfinite(v) for r in (a, b) for step in r["losses"] for v in step.values())
    assert a["hooks_left"] == b["hooks_left"] == 0
    if strategy == "smarthdr":
        assert a["trained_plugin"], "the judge should be in the plugin's state"
        assert a["losses"][0]["u_l1"] == 0 and a["losses"][-1]["u_l1"] > 0  # warm-up, then semi-supervised
    else:
        assert a["losses"][-1]["ratio"] > 0
        # the refresh pooled both ranks' regions (rank r's IDs are scene r's): one table, the same on both
        assert a["tables"]["ids"].tolist() == [*range(4), *range(65536, 65540)]
        assert torch.equal(a["tables"]["psnr"], b["tables"]["psnr"])
