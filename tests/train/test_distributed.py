"""Distributed training on CPU: 2 gloo processes launched with torchrun."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from threeam.errors import InputError
from threeam.train import checkpointing
from threeam.train.distributed import DistContext, init_distributed, shard_index, wrap_model
from threeam.train.recipes import ToyRegressor

WORKER = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    import torch.nn.functional as F
    from threeam.train.config import apply_overrides
    from threeam.train.distributed import cleanup, init_distributed, wrap_model
    from threeam.train.recipes import ToyRegressor, get_train_config, run_training

    out = Path(sys.argv[1])
    ctx = init_distributed("cpu")
    assert ctx.backend == "gloo" and ctx.world_size == 2 and ctx.is_distributed

    # 1) DDP averages the gradients of the two shards
    torch.manual_seed(0)
    model = ToyRegressor(6, 8, 3, dropout=0.0)
    ddp = wrap_model(model, ctx)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
    F.mse_loss(ddp(x[ctx.rank::2]), y[ctx.rank::2]).backward()
    torch.save({n: p.grad for n, p in model.named_parameters()}, out / f"grads{ctx.rank}.pt")

    # 2) the engine: 4 steps straight, and 2 + resume + 2
    cfg = apply_overrides(get_train_config("toy-engine"), [
        "run.progress=false", "run.max_steps=4", "run.ckpt_every=2", "run.log_every=1",
        "toy.hidden=16", "toy.dataset_size=16", "data.batch_size=2", "toy.dropout=0.2"])
    full = run_training(cfg, out / "full", ctx=ctx)
    run_training(cfg, out / "split", ctx=ctx, until=2)
    resumed = run_training(cfg, out / "split", ctx=ctx, resume=True)
    torch.save(full.bare_model.state_dict(), out / f"final{ctx.rank}.pt")
    torch.save(resumed.bare_model.state_dict(), out / f"resumed{ctx.rank}.pt")
    record = {"full": [r["loss"] for r in full.history], "resumed": [r["loss"] for r in resumed.history],
              "positions": full.positions}
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(record))
    cleanup(ctx)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def test_ddp_gradients_equal_single_process_on_concatenated_batch(two_rank_run):
    torch.manual_seed(0)
    model = ToyRegressor(6, 8, 3, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
    F.mse_loss(model(x), y).backward()
    ref = {n: p.grad for n, p in model.named_parameters()}
    for rank in (0, 1):
        got = torch.load(two_rank_run / f"grads{rank}.pt", weights_only=True)
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-7)
    # the two shards alone have different gradients, so the averaging is what matched
    torch.manual_seed(0)
    half = ToyRegressor(6, 8, 3, dropout=0.0)
    F.mse_loss(half(x[0::2]), y[0::2]).backward()
    assert not torch.allclose(half.sam_mask_decoder[1].weight.grad, ref["sam_mask_decoder.1.weight"], atol=1e-4)


def test_ranks_end_with_identical_weights_and_rank0_writes(two_rank_run):
    w0 = torch.load(two_rank_run / "final0.pt", weights_only=True)
    w1 = torch.load(two_rank_run / "final1.pt", weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    r0 = json.loads((two_rank_run / "rank0.json").read_text())
    r1 = json.loads((two_rank_run / "rank1.json").read_text())
    assert len(r0["full"]) == 4 and r0["positions"] == r1["positions"]
    assert r0["full"] != r1["full"]  # each rank trained on its own shard
    ck = checkpointing.find_latest(two_rank_run / "full")
    assert ck is not None and ck.name == "step_00000004"
    state = checkpointing.read_state(ck)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["rng"][0] != state["rng"][1]
    events = list((two_rank_run / "full" / "tb").iterdir())
    assert len(events) == 1  # only rank 0 logs


def test_two_rank_resume_is_exact(two_rank_run):
    for rank in (0, 1):
        rec = json.loads((two_rank_run / f"rank{rank}.json").read_text())
        assert rec["resumed"] == rec["full"][2:]
        a = torch.load(two_rank_run / f"final{rank}.pt", weights_only=True)
        b = torch.load(two_rank_run / f"resumed{rank}.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_single_process_context_and_env_errors(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and ctx.is_main and not ctx.is_distributed
    model = ToyRegressor(2, 4, 1)
    assert wrap_model(model, ctx) is model
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="not an integer"):
        init_distributed("cpu")
    for k, v in dict(WORLD_SIZE="2", RANK="5", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InputError, match="outside"):
        init_distributed("cpu")
    assert [shard_index(p, DistContext(rank=1, world_size=3)) for p in range(3)] == [1, 4, 7]


def test_pick_device_goes_through_resolve_device(monkeypatch):
    from threeam.train.config import RunConfig
    from threeam.train.distributed import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("CPU ") == torch.device("cpu")
    with pytest.raises(InputError, match="run.device 'gpu' is not a device"):
        pick_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert pick_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert pick_device("cuda:1", local_rank=0) == torch.device("cuda", 1)
    with pytest.raises(InputError, match="2 CUDA device"):
        pick_device("cuda:2")
    assert RunConfig(device="cuda:1").device == "cuda:1"
    with pytest.raises(InputError, match="run.device must be"):
        RunConfig(device="gpu")
