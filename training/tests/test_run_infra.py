"""Training-run infrastructure: run folders, metric logs, checkpoints, the loss plot, the LR schedule, optimizer
parameter groups, and the distributed helpers (single-process, and 2 CPU processes under torchrun)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlip.train import distributed as dd
from dlip.run_folder import RunFolder, load_checkpoint, save_checkpoint
from dlip.train.logger import MetricLogger
from dlip.train.plot import ema, plot_losses, read_jsonl
from dlip.train.schedule import cosine_with_warmup, decay_split, make_optimizer

TRAINING_ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ---------------------------------------------------------------------------------------------------------------------
# Run folder
# ---------------------------------------------------------------------------------------------------------------------


def test_create_writes_sorted_pretty_config_and_layout(tmp_path):
    run = RunFolder.create(tmp_path / "run", {"b": 1, "a": {"z": [1, 2], "y": "x"}})
    text = run.config_path.read_text()
    assert json.loads(text) == {"a": {"y": "x", "z": [1, 2]}, "b": 1}
    assert text.index('"a"') < text.index('"b"') and text.index('"y"') < text.index('"z"')  # sorted keys
    assert "\n  " in text  # indented
    assert run.checkpoints.is_dir()
    assert run.log_csv.name == "log.csv" and run.log_jsonl.name == "log.jsonl"
    assert run.plot_path.name == "loss_curves.png" and run.metrics_path.name == "metrics.json"
    assert run.metrics_md_path.name == "metrics.md" and run.tokenizer_path.name == "tokenizer.json"
    assert run.checkpoint_path == run.checkpoints / "last.pt"
    assert {p.parent for p in (run.log_csv, run.plot_path, run.metrics_path, run.checkpoints)} == {run.path}


def test_create_refuses_existing_run_then_overwrite(tmp_path):
    path = tmp_path / "run"
    run = RunFolder.create(path, {"lr": 1e-3})
    run.log_jsonl.write_text("{}\n")
    (path / "tokenizer.json").write_text("keep me")
    with pytest.raises(ValueError, match=str(path)):
        RunFolder.create(path, {"lr": 1e-3})

    # overwrite removes the run's own files only
    RunFolder.create(path, {"lr": 2e-3}, overwrite=True)
    assert json.loads(run.config_path.read_text()) == {"lr": 2e-3}
    assert not run.log_jsonl.exists()
    assert (path / "tokenizer.json").read_text() == "keep me"


def test_open_requires_config_and_create_rejects_non_json(tmp_path):
    with pytest.raises(ValueError, match=r"not a run folder: .*empty \(no config.json\)"):
        RunFolder.open(tmp_path / "empty")
    RunFolder.create(tmp_path / "r", {"a": 1})
    assert RunFolder.open(tmp_path / "r").read_config() == {"a": 1}
    with pytest.raises(ValueError, match="not plain JSON"):
        RunFolder.create(tmp_path / "bad", {"path": Path("x")})
    assert not (tmp_path / "bad" / "config.json").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Metric logger
# ---------------------------------------------------------------------------------------------------------------------


def test_logger_writes_csv_and_jsonl_and_widens_header(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    logger = MetricLogger(run)
    logger.log(step=1, stage="pretrain", lr=1e-4, losses={"itc_loss": torch.tensor(2.5), "lm_loss": 4.0},
               wall_time=1.5, samples_per_sec=32.0)
    # files are complete after each call (flushed), without closing anything
    assert len(run.log_jsonl.read_text().splitlines()) == 1
    logger.log(step=2, stage="distill", lr=5e-5, losses={"itc_loss": 2.0, "hidden_loss": float("nan")}, epoch=1,
               wall_time=3.0, samples_per_sec=30.0, extra={"grad_norm": 0.7})

    jsonl = [json.loads(line) for line in run.log_jsonl.read_text().splitlines()]
    assert jsonl[0] == {"step": 1, "epoch": 0, "stage": "pretrain", "lr": 1e-4, "itc_loss": 2.5, "lm_loss": 4.0,
                        "wall_time_s": 1.5, "samples_per_sec": 32.0}
    assert jsonl[1]["hidden_loss"] is None  # NaN -> null: strict JSON
    assert jsonl[1]["grad_norm"] == 0.7 and jsonl[1]["epoch"] == 1

    with open(run.log_csv, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    assert header[:4] == ["step", "epoch", "stage", "lr"] and header[-2:] == ["wall_time_s", "samples_per_sec"]
    assert set(header) == {"step", "epoch", "stage", "lr", "itc_loss", "lm_loss", "hidden_loss", "grad_norm",
                           "wall_time_s", "samples_per_sec"}
    assert rows[0]["stage"] == "pretrain" and float(rows[0]["itc_loss"]) == 2.5 and rows[0]["hidden_loss"] == ""
    assert rows[1]["lm_loss"] == "" and math.isnan(float(rows[1]["hidden_loss"]))
    assert float(rows[1]["grad_norm"]) == 0.7


def test_logger_resumes_appending_and_validates_names(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    MetricLogger(run).log(step=1, stage="vqa", lr=1e-3, losses={"vqa_loss": 1.0})
    again = MetricLogger(run)  # a resumed process
    again.log(step=2, stage="vqa", lr=1e-3, losses={"vqa_loss": 0.5})
    with open(run.log_csv, newline="") as f:
        assert [float(r["vqa_loss"]) for r in csv.DictReader(f)] == [1.0, 0.5]
    assert len(read_jsonl(run.log_jsonl)) == 2
    with pytest.raises(ValueError, match="accuracy"):
        again.log(step=3, stage="vqa", lr=1e-3, losses={"accuracy": 1.0})
    with pytest.raises(ValueError, match="'lr'"):
        again.log(step=3, stage="vqa", lr=1e-3, losses={}, extra={"lr": 1.0})
    with pytest.raises(ValueError, match="shape"):
        again.log(step=3, stage="vqa", lr=1e-3, losses={"loss": torch.ones(2)})


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_is_atomic(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    assert not run.checkpoint_path.exists()
    model = nn.Linear(3, 2)
    path = save_checkpoint(run, model.state_dict(), step=7, extra={"stage": "pretrain"})
    assert path == run.checkpoint_path == run.checkpoints / "last.pt"
    assert [p.name for p in run.checkpoints.iterdir()] == ["last.pt"]  # no temporary file left

    ckpt = load_checkpoint(path)
    assert set(ckpt) == {"model", "step", "extra"}  # weights only: nothing reads an optimizer state
    assert ckpt["step"] == 7 and ckpt["extra"] == {"stage": "pretrain"}
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(ckpt["model"])
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)

    # a failed write leaves the previous checkpoint untouched and no temporary file behind
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(run, {"w": Unpicklable()}, step=8)
    assert load_checkpoint(path)["step"] == 7
    assert [p.name for p in run.checkpoints.iterdir()] == ["last.pt"]

    with pytest.raises(ValueError, match="no checkpoint file"):
        load_checkpoint(run.checkpoints / "missing.pt")
    (run.checkpoints / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(run.checkpoints / "junk.pt")


def test_checkpoint_of_an_older_run_with_optimizer_state_still_loads(tmp_path):
    """Checkpoints written before the optimizer state was dropped hold an "optimizer" entry; they load as before."""
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "old.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 3, "extra": {}}, path)
    ckpt = load_checkpoint(path)
    assert set(ckpt) == {"model", "step", "extra"} and ckpt["step"] == 3
    assert torch.equal(ckpt["model"]["weight"], model.weight)
    torch.save({"model": {}, "optimizer": None}, path)
    with pytest.raises(ValueError, match=r"missing \['extra', 'step'\]"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------------------------------------


def test_ema_is_bias_corrected_and_skips_nans():
    out = ema(np.array([np.nan, 2.0, np.nan, 4.0]), smoothing=0.5)
    assert math.isnan(out[0]) and math.isnan(out[2])
    assert out[1] == pytest.approx(2.0)  # first value is itself after bias correction
    assert out[3] == pytest.approx((0.5 * 0.5 * 2.0 + 0.5 * 4.0) / (1 - 0.25))


@pytest.mark.parametrize("n_records", [1, 5, 60])
def test_plot_losses_writes_png_with_nans_and_missing_terms(tmp_path, n_records):
    run = RunFolder.create(tmp_path / "run", {})
    logger = MetricLogger(run)
    for i in range(n_records):
        losses = {"itc_loss": 3.0 / (i + 1), "lm_loss": float("nan") if i % 3 == 1 else 5.0 - 0.01 * i}
        if i >= n_records // 2:
            losses["hidden_loss"] = 0.01  # a term that appears only in the second stage
        logger.log(step=i + 1, stage="pretrain" if i < n_records // 2 else "distill",
                   lr=cosine_with_warmup(i, n_records, 0, 1e-3, 1e-5), losses=losses)
    with open(run.log_jsonl, "a") as f:
        f.write('{"step": 99, "tor')  # torn last line, as if the process died mid-write
    with pytest.warns(UserWarning, match="torn"):
        out = plot_losses(run.log_jsonl, run.plot_path)
    assert out == run.plot_path
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_plot_losses_rejects_empty_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("")
    with pytest.raises(ValueError, match="no records"):
        plot_losses(log, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no metric log"):
        plot_losses(tmp_path / "missing.jsonl", tmp_path / "x.png")


# ---------------------------------------------------------------------------------------------------------------------
# Schedule and optimizer
# ---------------------------------------------------------------------------------------------------------------------


def test_cosine_with_warmup_hand_computed():
    kw = dict(total_steps=110, warmup_steps=10, base_lr=1e-3, min_lr=1e-5)
    assert cosine_with_warmup(0, **kw) == pytest.approx(1e-4)  # (0 + 1) / 10 of base
    assert cosine_with_warmup(4, **kw) == pytest.approx(5e-4)
    assert cosine_with_warmup(9, **kw) == pytest.approx(1e-3)  # warm-up ends at base
    assert cosine_with_warmup(10, **kw) == pytest.approx(1e-3)  # cosine starts at base
    assert cosine_with_warmup(60, **kw) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # halfway: the mean
    assert cosine_with_warmup(35, **kw) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi / 4)))
    assert cosine_with_warmup(110, **kw) == pytest.approx(1e-5)  # end
    assert cosine_with_warmup(500, **kw) == pytest.approx(1e-5)
    lrs = [cosine_with_warmup(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay after warm-up
    assert cosine_with_warmup(0, total_steps=4, warmup_steps=0, base_lr=2.0, min_lr=0.0) == 2.0
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_with_warmup(0, total_steps=5, warmup_steps=6, base_lr=1.0, min_lr=0.0)
    with pytest.raises(ValueError, match="min_lr"):
        cosine_with_warmup(0, total_steps=5, warmup_steps=0, base_lr=1.0, min_lr=2.0)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embed = nn.Embedding(10, 4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))  # ViT-style bare embedding parameter
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.word_embed.weight  # tied with the embedding
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_optimizer_groups_exclude_norm_bias_embeddings():
    model = _Tiny()
    decay, no_decay = decay_split(model)
    assert decay == ["proj.weight"]
    assert sorted(no_decay) == ["cls_token", "norm.bias", "norm.weight", "pos_embed", "proj.bias", "temp",
                                "word_embed.weight"]
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.05)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert [p is model.proj.weight for p in groups["decay"]["params"]] == [True]
    n_opt = sum(len(g["params"]) for g in opt.param_groups)
    assert n_opt == 8  # each trainable tensor once; frozen ones left out
    assert all(p.requires_grad for g in opt.param_groups for p in g["params"])
    with pytest.raises(ValueError, match="no trainable"):
        make_optimizer(nn.Linear(2, 2).requires_grad_(False), lr=1e-3, weight_decay=0.0)


# ---------------------------------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------------------------------


def test_single_process_helpers_are_no_ops(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = dd.setup()
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (0, 1, 0, True)
    assert not dd.is_initialized()
    module = nn.Linear(2, 2)
    assert dd.wrap_ddp(module, info) is module
    assert dd.make_sampler(list(range(4)), info, shuffle=True, seed=0) is None
    x = torch.randn(3, 2, requires_grad=True)
    assert torch.equal(dd.concat_all_gather(x), x.detach())
    dd.all_gather_with_grad(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(3, 2))
    dd.barrier()
    dd.cleanup()


def test_setup_rejects_incomplete_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match="RANK='zero'"):
        dd.setup()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        dd.setup()
    assert not dd.is_initialized()


_WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    from torch import nn
    from dlip.train import distributed as dd

    torch.set_num_threads(1)
    info = dd.setup()
    try:
        r = info.rank
        out = {"rank": r, "world_size": info.world_size, "local_rank": info.local_rank, "is_main": info.is_main,
               "device": str(info.device), "initialized": dd.is_initialized()}
        x = torch.arange(6, dtype=torch.float32).reshape(3, 2) + 100 * r  # (3, 2), distinct per rank
        gathered = dd.concat_all_gather(x)
        out["gathered"] = gathered.tolist()
        out["gathered_requires_grad"] = gathered.requires_grad
        xg = x.clone().requires_grad_(True)
        y = dd.all_gather_with_grad(xg)  # (6, 2)
        coef = torch.arange(12, dtype=torch.float32).reshape(6, 2) * (r + 1)  # a different loss per rank
        (y * coef).sum().backward()
        out["gathered_with_grad"] = y.tolist()
        out["grad"] = xg.grad.tolist()
        sampler = dd.make_sampler(list(range(10)), info, shuffle=True, seed=0)
        out["shard"] = list(sampler)

        torch.manual_seed(r)  # different initial weights per rank: DDP must broadcast rank 0's
        lin = nn.Linear(4, 2)
        model = dd.wrap_ddp(lin, info)
        out["is_ddp"] = model is not lin
        out["init"] = {k: v.tolist() for k, v in lin.state_dict().items()}
        g = torch.Generator().manual_seed(10 + r)
        xb, yb = torch.randn(5, 4, generator=g), torch.randn(5, 2, generator=g)
        opt = torch.optim.SGD(lin.parameters(), lr=0.1)
        ((model(xb) - yb) ** 2).mean().backward()
        opt.step()
        out["batch"] = [xb.tolist(), yb.tolist()]
        out["final"] = {k: v.tolist() for k, v in lin.state_dict().items()}
        dd.barrier()
        with open(os.path.join(sys.argv[1], f"rank{r}.json"), "w") as f:
            json.dump(out, f)
    finally:
        dd.cleanup()
""")


def test_two_process_torchrun(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                          "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(TRAINING_ROOT), env.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    for r, out in enumerate(res):
        assert (out["rank"], out["world_size"], out["local_rank"]) == (r, 2, r)
        assert out["is_main"] == (r == 0) and out["initialized"] and out["device"] == "cpu"
    # all-gather: rank order, identical on both ranks, no grad for concat_all_gather
    base = np.arange(6, dtype=np.float32).reshape(3, 2)
    expected = np.concatenate([base, base + 100]).tolist()
    assert res[0]["gathered"] == res[1]["gathered"] == expected
    assert res[0]["gathered_with_grad"] == expected
    assert not res[0]["gathered_requires_grad"]
    # gradient of the local slice = sum over ranks of that slice's loss coefficients: coef * (1 + 2)
    coef = np.arange(12, dtype=np.float32).reshape(6, 2)
    for r in (0, 1):
        np.testing.assert_allclose(res[r]["grad"], 3 * coef[3 * r: 3 * r + 3])
    assert sorted(res[0]["shard"] + res[1]["shard"]) == list(range(10))  # disjoint shards covering the data

    # DDP: identical start (rank 0's) and identical weights after a step, equal to the full-batch gradient step
    assert res[0]["is_ddp"] and res[1]["is_ddp"]
    assert res[0]["init"] == res[1]["init"]
    assert res[0]["final"] == res[1]["final"]
    lin = nn.Linear(4, 2)
    lin.load_state_dict({k: torch.tensor(v) for k, v in res[0]["init"].items()})
    xb = torch.cat([torch.tensor(o["batch"][0]) for o in res])  # (10, 4)
    yb = torch.cat([torch.tensor(o["batch"][1]) for o in res])  # (10, 2)
    ((lin(xb) - yb) ** 2).mean().backward()
    with torch.no_grad():
        for name, p in lin.named_parameters():
            np.testing.assert_allclose(res[0]["final"][name], (p - 0.1 * p.grad).numpy(), rtol=1e-5, atol=1e-6)
