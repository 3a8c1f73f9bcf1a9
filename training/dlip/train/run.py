"""A training run's folder: the resolved config, the metric logs, checkpoints and reports.

Layout of a run folder::

    config.json        the resolved config (pretty-printed, sorted keys); its presence marks a run folder
    log.csv            one row per logging step (spreadsheet-friendly)
    log.jsonl          the same records, one JSON object per line (what ``plot.plot_losses`` reads)
    checkpoints/       last.pt, and step_N.pt when a keep-last-k policy is asked for
    loss_curves.png    written by ``plot.plot_losses``
    metrics.json       evaluation results (written by the evaluation code)
    metrics.md         the same as a readable table

Everything here writes on the main process only; the caller decides which rank that is.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import torch

CONFIG_FILE = "config.json"
LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"
PLOT_FILE = "loss_curves.png"
METRICS_FILE = "metrics.json"
REPORT_MD_FILE = "metrics.md"
LAST = "last"

# Files and folders a run writes; ``RunDir.create(..., overwrite=True)`` removes exactly these, nothing else.
_RUN_ARTIFACTS = (CONFIG_FILE, LOG_CSV, LOG_JSONL, CHECKPOINT_DIR, PLOT_FILE, METRICS_FILE, REPORT_MD_FILE)
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


# ---------------------------------------------------------------------------------------------------------------------
# Run folder
# ---------------------------------------------------------------------------------------------------------------------


class RunDir:
    """A run folder. Build one with ``RunDir.create`` (new run) or ``RunDir.open`` (existing run)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, config: Mapping[str, Any], overwrite: bool = False,
               resume: bool = False) -> "RunDir":
        """Makes ``path`` a run folder holding ``config`` as ``config.json``.

        A folder that already holds a ``config.json`` is refused unless one flag says what to do with it:

        - ``overwrite=True``: start afresh; the previous run's own files (config, logs, checkpoints, plot, metrics)
          are deleted first. Other files in the folder are left alone.
        - ``resume=True``: continue that run; its logs and checkpoints are kept, and ``config`` must equal the stored
          config (``ValueError`` listing the differing keys otherwise). Without a previous run this starts one, so a
          restarted job can always pass ``resume=True``.
        """
        if overwrite and resume:
            raise ValueError("RunDir.create: overwrite=True and resume=True contradict each other; pick one")
        run = cls(path)
        canonical = _canonical_json(config, where=str(run.config_path))
        if run.config_path.exists():
            if resume:
                stored = run.read_config()
                diffs = _dict_diff(stored, json.loads(canonical))
                if diffs:
                    raise ValueError(f"cannot resume {run.path}: config differs from its config.json at "
                                     f"{', '.join(diffs[:10])}{' ...' if len(diffs) > 10 else ''}")
                run.checkpoints.mkdir(exist_ok=True)
                return run
            if not overwrite:
                raise ValueError(f"{run.path} already holds a run (config.json); pass overwrite=True to replace it "
                                 f"or resume=True to continue it")
            for name in _RUN_ARTIFACTS:
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
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run folder; ``ValueError`` if ``path`` has no ``config.json``."""
        run = cls(path)
        if not run.config_path.is_file():
            raise ValueError(f"not a run folder: {run.path} (no config.json)")
        return run

    def read_config(self) -> dict[str, Any]:
        """The stored resolved config."""
        try:
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.config_path}: invalid JSON ({err})") from None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

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
    def plot_path(self) -> Path:
        return self.path / PLOT_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def report_md_path(self) -> Path:
        return self.path / REPORT_MD_FILE

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def _canonical_json(config: Mapping[str, Any], where: str) -> str:
    if not isinstance(config, Mapping):
        raise ValueError(f"{where}: the run config must be a dict, got {type(config).__name__}")
    try:
        return json.dumps(config, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: the run config is not plain JSON ({err})") from None


def _dict_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(name)
            else:
                out.extend(_dict_diff(a[key], b[key], name))
        return out
    return [] if a == b else [prefix or "<root>"]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------------
# Metric logging
# ---------------------------------------------------------------------------------------------------------------------

# Columns every record has, in this order; loss terms and extra values follow in the order they first appear.
BASE_FIELDS = ("step", "epoch", "stage", "lr")
TAIL_FIELDS = ("wall_time_s", "samples_per_sec")


def is_loss_key(key: str) -> bool:
    """Loss terms are named ``loss`` or ``*_loss`` (``itc_loss``, ``hidden_loss``); the plot relies on it."""
    return key == "loss" or key.endswith("_loss")


class MetricLogger:
    """Appends one record per logging step to ``log.csv`` and ``log.jsonl``, flushing after every record.

    CSV columns are the union of all keys seen so far. When a record brings a key the header lacks (a distillation
    term appearing in a later stage, say), the CSV is rewritten once with the wider header, old rows getting empty
    cells; so ``csv.DictReader`` always reads the file correctly. The rewrite goes through a temporary file and
    ``os.replace``, so the CSV is never half-written. Non-finite floats are written as ``null`` in the JSONL (valid
    JSON everywhere) and as ``nan``/``inf`` in the CSV.

    Opening a logger on a folder that already has logs (a resumed run) appends to them.
    """

    def __init__(self, run: RunDir):
        self.run = run
        self.t0 = time.time()
        self.fields: list[str] = []
        if run.log_csv.is_file() and run.log_csv.stat().st_size > 0:
            with open(run.log_csv, newline="") as f:
                self.fields = next(csv.reader(f), [])

    def log(self, step: int, stage: str, lr: float, losses: Mapping[str, Any], epoch: int = 0,
            wall_time: float | None = None, samples_per_sec: float | None = None,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Writes one record and returns it.

        ``losses`` maps loss names (``loss`` or ``*_loss``) to floats or 0-d tensors. ``wall_time`` is in seconds
        (default: since this logger was made); it is stored as ``wall_time_s``. ``extra`` adds other scalar values
        (grad norm, ...); their names must not look like losses or clash with the fixed columns.
        """
        record: dict[str, Any] = {"step": int(step), "epoch": int(epoch), "stage": str(stage), "lr": float(lr)}
        for key, value in losses.items():
            if not is_loss_key(key):
                raise ValueError(f"loss term {key!r} must be named 'loss' or end in '_loss'")
            record[key] = _scalar(value, key)
        for key, value in (extra or {}).items():
            if key in BASE_FIELDS or key in TAIL_FIELDS or key in record or is_loss_key(key):
                raise ValueError(f"extra value {key!r} clashes with a fixed column or a loss term")
            record[key] = _scalar(value, key)
        record["wall_time_s"] = float(time.time() - self.t0 if wall_time is None else wall_time)
        record["samples_per_sec"] = None if samples_per_sec is None else float(samples_per_sec)
        self._write_jsonl(record)
        self._write_csv(record)
        return record

    def _write_jsonl(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.run.log_jsonl, "a") as f:
            f.write(json.dumps(clean, allow_nan=False) + "\n")
            f.flush()

    def _write_csv(self, record: dict[str, Any]) -> None:
        new = [k for k in record if k not in self.fields]
        if new or not self.run.log_csv.exists():
            self._rewrite_csv(self._order(self.fields + new))
        with open(self.run.log_csv, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow({k: _csv_cell(v) for k, v in record.items()})
            f.flush()

    @staticmethod
    def _order(fields: list[str]) -> list[str]:
        """Base columns first, then losses and extras in first-seen order, then the timing columns."""
        middle = [k for k in fields if k not in BASE_FIELDS and k not in TAIL_FIELDS]
        return [*BASE_FIELDS, *middle, *TAIL_FIELDS]

    def _rewrite_csv(self, fields: list[str]) -> None:
        rows = []
        if self.run.log_csv.is_file():
            with open(self.run.log_csv, newline="") as f:
                rows = list(csv.DictReader(f))
        tmp = self.run.log_csv.with_name(f".{LOG_CSV}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.run.log_csv)
        self.fields = fields


def _scalar(value: Any, key: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"logged value {key!r} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"logged value {key!r} must be a number, got {value!r}") from None


def _csv_cell(value: Any) -> Any:
    return "" if value is None else value


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def save_checkpoint(run: RunDir, name: str, model_state: Mapping[str, Any], optimizer_state: Mapping[str, Any] | None,
                    step: int, extra: Mapping[str, Any] | None = None, keep_last_k: int = 0) -> Path:
    """Writes ``checkpoints/NAME.pt`` atomically (temporary file, fsync, ``os.replace``) and returns its path.

    The file holds ``{"model", "optimizer", "step", "extra"}``. ``extra`` must hold plain values (numbers, strings,
    lists, dicts, tensors) so that ``load_checkpoint`` can read it with ``weights_only=True``.
    With ``keep_last_k > 0`` the same file is also kept as ``step_STEP.pt`` (a hard link where the filesystem allows,
    else a copy) and only the ``keep_last_k`` highest-step ``step_N.pt`` files are kept.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"checkpoint name {name!r}: use letters, digits, '_', '-', '.' and no leading dot")
    if keep_last_k < 0:
        raise ValueError(f"keep_last_k must be >= 0, got {keep_last_k}")
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    path = run.checkpoints / f"{name}.pt"
    payload = {"model": dict(model_state), "optimizer": None if optimizer_state is None else dict(optimizer_state),
               "step": int(step), "extra": dict(extra or {})}
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=run.checkpoints)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if keep_last_k > 0:
        _keep_step_copy(run, path, int(step), keep_last_k)
    return path


def _keep_step_copy(run: RunDir, path: Path, step: int, keep_last_k: int) -> None:
    step_path = run.checkpoints / f"step_{step}.pt"
    if step_path != path:
        tmp = run.checkpoints / f".step_{step}.pt.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)  # the step file shares the bytes; a later os.replace of last.pt leaves it intact
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, step_path)
    for old in step_checkpoints(run)[:-keep_last_k]:
        old.unlink(missing_ok=True)


def step_checkpoints(run: RunDir) -> list[Path]:
    """The ``step_N.pt`` files of a run, lowest step first."""
    if not run.checkpoints.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run.checkpoints.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run: RunDir) -> Path | None:
    """``last.pt`` if present, else the highest ``step_N.pt``, else None."""
    last = run.checkpoints / f"{LAST}.pt"
    if last.is_file():
        return last
    steps = step_checkpoints(run)
    return steps[-1] if steps else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a file written by ``save_checkpoint``: ``{"model", "optimizer", "step", "extra"}``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    missing = {"model", "optimizer", "step", "extra"} - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise ValueError(f"{path}: not a dlip checkpoint (missing {sorted(missing)})")
    return payload
