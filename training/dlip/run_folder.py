"""A training run's folder, the one module that knows its layout: paths, the checkpoint, loading the trained model.

Layout of a run folder::

    config.json        the resolved config (pretty-printed, sorted keys); its presence marks a run folder
    tokenizer.json     the run's tokenizer
    log.csv            one row per logging step (spreadsheet-friendly)
    log.jsonl          the same records, one JSON object per line (what ``plot.plot_losses`` reads)
    checkpoints/       last.pt: the model after the latest checkpoint step
    loss_curves.png    written by ``plot.plot_losses``
    metrics.json       evaluation results (written by the evaluation code)
    metrics.md         the same as a readable table

Training, distillation, evaluation and export all reach these files through ``RunFolder``'s properties; no other
module spells one of these names (``tests/test_run_folder_owner.py`` checks it). Writing happens on the main process
only; the caller decides which rank that is.

A checkpoint holds the model weights only. Runs are not resumed: an interrupted run is started again with
``overwrite=True`` (the optimizer state a resume would need was never read, so it is not stored).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import torch

from .config import TrainConfig, train_config_from_dict
from .data.tokenizer import TextTokenizer
from .jsonfile import read_json
from .model.med import BlipMED

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "last.pt"
PLOT_FILE = "loss_curves.png"
METRICS_FILE = "metrics.json"
METRICS_MD_FILE = "metrics.md"

# Files and folders a run writes; ``RunFolder.create(..., overwrite=True)`` removes exactly these, nothing else.
RUN_FILES = (CONFIG_FILE, TOKENIZER_FILE, LOG_CSV, LOG_JSONL, CHECKPOINT_DIR, PLOT_FILE, METRICS_FILE,
             METRICS_MD_FILE)
# What ``overwrite`` deletes: everything but tokenizer.json, which the trainer rewrites at once (so a user's
# tokenizer.json placed there by hand is not lost before the trainer decides what to write).
_REMOVED_ON_OVERWRITE = tuple(name for name in RUN_FILES if name != TOKENIZER_FILE)
_CHECKPOINT_KEYS = {"model", "step", "extra"}


# ---------------------------------------------------------------------------------------------------------------------
# Run folder
# ---------------------------------------------------------------------------------------------------------------------


class RunFolder:
    """A run folder. Build one with ``RunFolder.create`` (new run) or ``RunFolder.open`` (existing run); a bare
    ``RunFolder(path)`` only names the paths (e.g. to ask whether ``metrics.json`` exists yet)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, config: Mapping[str, Any], overwrite: bool = False) -> RunFolder:
        """Makes ``path`` a run folder holding ``config`` as ``config.json``.

        A folder that already holds a ``config.json`` is refused unless ``overwrite=True``: then the previous run's
        own files (config, logs, checkpoints, plot, metrics) are deleted first. Other files are left alone.
        """
        run = cls(path)
        canonical = _canonical_json(config, where=str(run.config_path))
        if run.config_path.exists():
            if not overwrite:
                raise ValueError(f"{run.path} already holds a run (config.json); pass overwrite=True to replace it")
            for name in _REMOVED_ON_OVERWRITE:
                target = run.path / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
        if run.path.exists() and not run.path.is_dir():
            raise ValueError(f"run folder path is a file: {run.path}")
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(run.config_path, canonical + "\n")
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder; ``ValueError`` if ``path`` has no ``config.json``."""
        run = cls(path)
        if not run.config_path.is_file():
            raise ValueError(f"not a run folder: {run.path} (no config.json)")
        return run

    def read_config(self) -> dict[str, Any]:
        """The stored resolved config, as plain JSON."""
        return read_json(self.config_path, "run config")

    def read_metrics(self) -> dict[str, Any]:
        """The stored evaluation (``metrics.json``); ``ValueError`` saying how to make it when it is missing."""
        if not self.metrics_path.is_file():
            raise ValueError(f"{self.path}: no metrics.json (run `python -m dlip eval {self.path}` first)")
        return read_json(self.metrics_path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def log_csv(self) -> Path:
        return self.path / LOG_CSV

    @property
    def log_jsonl(self) -> Path:
        return self.path / LOG_JSONL

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def checkpoint_path(self) -> Path:
        """``checkpoints/last.pt``: the model as of the latest checkpoint step."""
        return self.checkpoints / CHECKPOINT_FILE

    @property
    def plot_path(self) -> Path:
        return self.path / PLOT_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def metrics_md_path(self) -> Path:
        return self.path / METRICS_MD_FILE

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"


def _canonical_json(config: Mapping[str, Any], where: str) -> str:
    if not isinstance(config, Mapping):
        raise ValueError(f"{where}: the run config must be a dict, got {type(config).__name__}")
    try:
        return json.dumps(config, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: the run config is not plain JSON ({err})") from None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint
# ---------------------------------------------------------------------------------------------------------------------


def save_checkpoint(run: RunFolder, model_state: Mapping[str, Any], step: int,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Writes ``checkpoints/last.pt`` atomically (temporary file, fsync, ``os.replace``) and returns its path, so a
    crash mid-write leaves the previous checkpoint intact.

    The file holds ``{"model", "step", "extra"}``. ``extra`` must hold plain values (numbers, strings, lists, dicts,
    tensors) so that ``load_checkpoint`` can read it with ``weights_only=True``.
    """
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    path = run.checkpoint_path
    payload = {"model": dict(model_state), "step": int(step), "extra": dict(extra or {})}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=run.checkpoints)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a file written by ``save_checkpoint``: ``{"model", "step", "extra"}``. Checkpoints of older runs also
    hold an ``"optimizer"`` entry; it is dropped."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    missing = _CHECKPOINT_KEYS - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise ValueError(f"{path}: not a dlip checkpoint (missing {sorted(missing)})")
    return {key: payload[key] for key in _CHECKPOINT_KEYS}


# ---------------------------------------------------------------------------------------------------------------------
# The trained model
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    model: BlipMED
    tokenizer: TextTokenizer
    config: TrainConfig
    path: Path

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.path)


def load_run(path: str | Path) -> LoadedModel:
    """Rebuilds the model of a run folder from its resolved config and loads its checkpoint (eval mode)."""
    run = RunFolder.open(path)
    cfg = train_config_from_dict(run.read_config(), where=str(run.config_path))
    if cfg.model is None:
        raise ValueError(f"{run.config_path}: no resolved 'model' section")
    tokenizer = TextTokenizer.from_file(run.tokenizer_path)
    if not run.checkpoint_path.is_file():
        raise ValueError(f"no checkpoint at {run.checkpoint_path}: has this run finished a stage?")
    model = BlipMED(cfg.model)
    model.load_state_dict(load_checkpoint(run.checkpoint_path)["model"])
    model.eval()
    return LoadedModel(model, tokenizer, cfg, run.path)
