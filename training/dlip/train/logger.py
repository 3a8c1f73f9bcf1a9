"""The metric log of a run: one record per logging step, in ``log.csv`` and ``log.jsonl`` of its run folder."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Any
from collections.abc import Mapping

import torch

from ..run_folder import RunFolder


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

    Opening a logger on a folder that already has logs appends to them.
    """

    def __init__(self, run: RunFolder):
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
        tmp = self.run.log_csv.with_name(f".{self.run.log_csv.name}.tmp")
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


