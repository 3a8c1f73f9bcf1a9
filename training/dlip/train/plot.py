"""The loss-curve figure of a run, drawn from its ``log.jsonl``.

Top panel: every loss term (``loss`` / ``*_loss`` keys) over the global step, as a faint raw line plus an EMA-smoothed
line in the same colour, with dashed lines where a new stage (pretrain, distill, vqa, ...) begins. Bottom panel: the
learning rate. Uses matplotlib's object API with the Agg canvas, so no display and no global pyplot state.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .logger import is_loss_key


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a metric log. A torn last line (the process died mid-write) is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no metric log at {path}")
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                warnings.warn(f"{path}:{i + 1}: skipping a torn last line ({err})", stacklevel=2)
                continue
            raise ValueError(f"{path}:{i + 1}: invalid JSON ({err})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Bias-corrected exponential moving average (as TensorBoard draws it) that steps over NaNs.

    ``out[i] = (sum_j smoothing^(n_i - j) * (1 - smoothing) * x_j) / (1 - smoothing^n_i)`` over the finite values up
    to ``i``; NaN where no finite value has been seen yet, and NaN where the input is NaN (so gaps stay gaps).
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    out = np.full(len(values), np.nan)
    acc, n = 0.0, 0
    for i, x in enumerate(values):
        if not math.isfinite(x):
            continue
        acc = smoothing * acc + (1 - smoothing) * x
        n += 1
        out[i] = acc / (1 - smoothing**n)
    return out


def _column(records: list[dict], key: str) -> np.ndarray:
    """``key`` of every record as floats; NaN where absent, null or not a number."""
    out = np.full(len(records), np.nan)
    for i, r in enumerate(records):
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = float(v)
    return out


def plot_losses(jsonl_path: str | Path, out_png: str | Path, smoothing: float = 0.9,
                title: str | None = None) -> Path:
    """Draws the loss curves and learning rate of a metric log to ``out_png``; returns its path.

    Works with a single record, missing terms and NaN/null values (drawn as gaps). ``ValueError`` if the log has no
    records or no ``step`` values.
    """
    jsonl_path, out_png = Path(jsonl_path), Path(out_png)
    records = read_jsonl(jsonl_path)
    if not records:
        raise ValueError(f"{jsonl_path}: no records to plot")
    steps = _column(records, "step")
    if np.isnan(steps).all():
        raise ValueError(f"{jsonl_path}: no record has a numeric 'step'")
    order = np.argsort(steps, kind="stable")  # a resumed run may append steps out of order
    records, steps = [records[i] for i in order], steps[order]

    loss_keys = sorted({k for r in records for k in r if is_loss_key(k)}, key=lambda k: (k != "loss", k))
    few = len(records) <= 20  # with a handful of points, markers make single values visible

    fig = Figure(figsize=(10, 7), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))

    all_values = []
    for i, key in enumerate(loss_keys):
        values = _column(records, key)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        all_values.append(finite)
        color = f"C{i % 10}"
        ax_loss.plot(steps, values, color=color, alpha=0.25, linewidth=1, marker="o" if few else None, markersize=3)
        ax_loss.plot(steps, ema(values, smoothing), color=color, linewidth=2, label=key.removesuffix("_loss"))
    if all_values:
        positive = np.concatenate(all_values)
        if (positive > 0).all() and positive.max() / positive.min() > 50:
            ax_loss.set_yscale("log")  # terms of very different magnitude (distillation vs. LM) stay readable
        ax_loss.legend(loc="best", fontsize=9, ncols=min(4, len(all_values)))
    else:
        ax_loss.text(0.5, 0.5, "no loss values logged", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title(title or f"Training losses ({jsonl_path.parent.name or jsonl_path.name}); "
                      f"bold: EMA {smoothing:g}, faint: raw")
    ax_loss.grid(True, alpha=0.3)

    lr = _column(records, "lr")
    ax_lr.plot(steps, lr, color="black", linewidth=1.5, marker="o" if few else None, markersize=3)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_lr.grid(True, alpha=0.3)

    _mark_stages(records, steps, (ax_loss, ax_lr))

    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, out_png)
    return out_png


def _mark_stages(records: list[dict], steps: np.ndarray, axes) -> None:
    """Dashed vertical line and label where the ``stage`` changes (and a label for the first stage)."""
    previous = None
    for record, step in zip(records, steps):
        stage = record.get("stage")
        if stage is None or stage == previous or not math.isfinite(step):
            continue
        if previous is not None:
            for ax in axes:
                ax.axvline(step, color="grey", linestyle="--", linewidth=1)
        axes[0].annotate(str(stage), xy=(step, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                         textcoords="offset points", fontsize=9, color="dimgrey")
        previous = stage
