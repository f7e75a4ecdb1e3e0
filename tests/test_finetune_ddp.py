"""Two-process DistributedDataParallel fine-tuning on CPU (gloo), and the launch checks."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from auxol.errors import ConfigError
from auxol.finetune.distributed import init_distributed
from auxol.finetune.merge import trainable_state
from test_finetune_tiny import tiny_trainer, write_squares


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_rank(rank: int, world_size: int, port: int, tmp_path: Path) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    place = init_distributed(True)
    try:
        out = tmp_path / ("out" if rank == 0 else f"out_rank{rank}")  # a rank other than 0 must write nothing
        trainer = tiny_trainer(tmp_path, out, place, method="lora", parts="encoder,decoder", max_steps=3, save_every=1, lr=1e-2)
        initial = trainable_state(trainer.model)
        trainer.fit()
        torch.save({"initial": initial, "final": trainable_state(trainer.model)}, tmp_path / f"weights_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_hold_identical_weights_and_only_rank_0_writes(tmp_path):
    write_squares(tmp_path / "data", 8)
    mp.spawn(_train_rank, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "weights_rank0.pt")
    rank1 = torch.load(tmp_path / "weights_rank1.pt")
    changed = [name for name in rank0["final"] if not torch.equal(rank0["final"][name], rank0["initial"][name])]
    assert any("lora_B" in name for name in changed)  # training moved the weights
    for name in rank0["final"]:
        torch.testing.assert_close(rank1["final"][name], rank0["final"][name], rtol=0, atol=1e-6)
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"log.csv", "state.pt", "peft", "curve.png"}
    assert not (tmp_path / "out_rank1").exists()


def test_distributed_without_torchrun_environment_is_a_one_line_error(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"--distributed: RANK, WORLD_SIZE.*torchrun") as error:
        init_distributed(True)
    assert "\n" not in str(error.value)
    assert not init_distributed(None).enabled
