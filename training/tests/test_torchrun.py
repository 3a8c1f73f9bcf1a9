"""The training command under torchrun with 2 CPU processes (DistributedDataParallel over gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from dlip.run_folder import load_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_train_under_torchrun_two_processes(tmp_path, shapes_dir):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "dlip", "train", "--config", str(CONFIGS / "micro.json"), "--data", str(shapes_dir),
           "--out", str(out), "--steps", "3", "2", "--batch-size", "4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]  # one log (rank 0 only), every step
    assert records[0]["samples_per_sec"] > 0
    loaded = load_run(out)  # rank 0's checkpoint loads into the model
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())


def test_distill_under_torchrun_two_processes(tmp_path, shapes_dir, micro_run):
    out = tmp_path / "ddp-student"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534",
           "-m", "dlip", "distill", "--teacher", str(micro_run), "--config", str(CONFIGS / "micro_distill.json"),
           "--data", str(shapes_dir), "--out", str(out), "--steps", "2", "2", "--batch-size", "4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert any(k.startswith("hidden_") or k.startswith("attn_") for k in records[0])  # distillation terms logged
    loaded = load_run(out)
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())
