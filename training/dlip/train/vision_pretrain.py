"""Image-encoder pre-training on labelled scenes: the stage BLIP gets from ImageNet, for data sets with scene graphs.

BLIP never trains its ViT from scratch: it starts from an ImageNet-pretrained ViT and then learns ITC, ITM and LM.
The Shapes teachers of this repository started from random weights, and their joint objectives taught the ViT
colours but hardly outlines: a teacher named the shape of a lone object barely above chance (training/report/HISTORY.md,
section 1), while the same ViT asked for shapes directly learns them within a few hundred steps. This module is the
missing first stage: the teacher's image encoder learns, per image token, what object covers the token's cell of the
image (its shape, colour and size class, or background) from the training split's scene graphs
(``scenes_train.jsonl`` of ``dlip data synth``), scored on the validation split's. The result (``vision.pt``) starts
a teacher through ``init_vision`` in its training config; the text side starts from random weights as before.

Labels: the image is cut into the ViT's grid (image_size / patch_size cells per side, in the scene's own pixels); a
cell takes the object whose bounding box overlaps it most, when that overlap is at least a quarter of the smaller of
the cell and the box (so every object labels at least the cell holding its centre), else background.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import VisionConfig, from_dict
from ..data.errors import DataError
from ..data.shapes_scene import COLORS, SHAPES, SIZES
from ..data.transforms import Degrade, ImagePreprocess
from ..model.vit import VisionTransformer
from .schedule import cosine_with_warmup

SHAPE_NAMES, COLOR_NAMES, SIZE_NAMES = list(SHAPES), list(COLORS), list(SIZES)
HEADS = {"shape": len(SHAPE_NAMES) + 1, "color": len(COLOR_NAMES) + 1, "size": len(SIZE_NAMES) + 1}  # + background


def cell_labels(objects: list[dict], width: int, height: int, grid: int) -> Tensor:
    """(grid * grid, 3) class indices (shape, colour, size) of each cell, row-major; background is each head's last
    class."""
    labels = torch.tensor([[HEADS["shape"] - 1, HEADS["color"] - 1, HEADS["size"] - 1]] * (grid * grid))
    cw, ch = width / grid, height / grid
    for r in range(grid):
        for c in range(grid):
            x0, y0, x1, y1 = c * cw, r * ch, (c + 1) * cw, (r + 1) * ch
            best, best_area = None, 0.0
            for obj in objects:
                bx0, by0, bx1, by1 = obj["bbox"]
                area = max(0.0, min(x1, bx1) - max(x0, bx0)) * max(0.0, min(y1, by1) - max(y0, by0))
                if area > best_area:
                    best, best_area = obj, area
            if best is None:
                continue
            bx0, by0, bx1, by1 = best["bbox"]
            if best_area >= 0.25 * min(cw * ch, (bx1 - bx0) * (by1 - by0)):
                labels[r * grid + c] = torch.tensor([SHAPE_NAMES.index(best["shape"]), COLOR_NAMES.index(best["color"]),
                                                     SIZE_NAMES.index(best["size"])])
    return labels


class SceneCells(Dataset):
    """``(image (3, S, S), cell labels (grid * grid, 3))`` for each scene of a ``scenes_{split}.jsonl``."""

    def __init__(self, root: str | os.PathLike, split: str, preprocess: ImagePreprocess, grid: int,
                 limit: int | None = None):
        path = Path(root) / f"scenes_{split}.jsonl"
        if not path.is_file():
            raise DataError(f"{path}: no scene graphs (pretrain-vision needs the scenes_*.jsonl that `dlip data "
                            f"synth` writes)")
        self.root, self.preprocess, self.grid = Path(root), preprocess, grid
        with open(path) as f:
            self.scenes = [json.loads(line) for line in f if line.strip()][:limit]
        if not self.scenes:
            raise DataError(f"{path}: no scenes")

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        scene = self.scenes[i]
        with Image.open(self.root / scene["image"]) as image:
            image.load()
            w, h = image.size
            x = self.preprocess(image)
        return x, cell_labels(scene["objects"], w, h, self.grid)


class CellHeads(nn.Module):
    """One linear head per label kind over the patch tokens (not [CLS])."""

    def __init__(self, width: int):
        super().__init__()
        self.heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in HEADS.items()})

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        return {k: head(tokens[:, 1:]) for k, head in self.heads.items()}  # (B, N, classes)


def cell_loss(logits: dict[str, Tensor], labels: Tensor) -> Tensor:
    return sum(F.cross_entropy(logits[k].flatten(0, 1), labels[..., j].flatten()) for j, k in enumerate(HEADS))


@torch.no_grad()
def score(encoder: VisionTransformer, heads: CellHeads, loader: DataLoader) -> dict[str, float]:
    """Accuracy (%) of each head on the cells an object covers, and of all three at once."""
    encoder.eval()
    heads.eval()
    hits = {k: 0 for k in (*HEADS, "all")}
    n = 0
    for x, labels in loader:
        logits = heads(encoder(x).last_hidden)
        obj = labels[..., 0] != HEADS["shape"] - 1  # (B, N) cells of an object
        right = torch.stack([logits[k].argmax(-1) == labels[..., j] for j, k in enumerate(HEADS)], -1)  # (B, N, 3)
        for j, k in enumerate(HEADS):
            hits[k] += int(right[..., j][obj].sum())
        hits["all"] += int(right.all(-1)[obj].sum())
        n += int(obj.sum())
    encoder.train()
    heads.train()
    return {f"{k}_acc": 100.0 * v / max(n, 1) for k, v in hits.items()}


def pretrain_vision(vision: VisionConfig, root: str | os.PathLike, out: str | os.PathLike, steps: int = 800,
                    batch_size: int = 64, lr: float = 5e-4, warmup_steps: int = 50, weight_decay: float = 0.05,
                    augment: dict | None = None, seed: int = 0, threads: int = 0, eval_every: int = 200,
                    val_limit: int = 500, num_workers: int = 1, progress: bool = True) -> Path:
    """Trains ``VisionTransformer(vision)`` with cell heads on ``root``'s training scenes; writes ``out/vision.pt``
    ({"vision": config dict, "state_dict", "metrics"}) and ``out/pretrain.jsonl``. Returns the path of vision.pt."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    grid = vision.image_size // vision.patch_size
    warmup_steps = min(warmup_steps, max(steps // 10, 1))  # a short run should not be all warm-up
    train_pre = ImagePreprocess(vision.image_size, augment=Degrade(**augment) if augment else None)
    train_ds = SceneCells(root, "train", train_pre, grid)
    val_ds = SceneCells(root, "val", ImagePreprocess(vision.image_size), grid, limit=val_limit)
    gen = torch.Generator().manual_seed(seed)
    train_dl = DataLoader(train_ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
                          generator=gen, persistent_workers=num_workers > 0)
    val_dl = DataLoader(val_ds, batch_size=batch_size)
    encoder, heads = VisionTransformer(vision), CellHeads(vision.hidden_size)
    params = [*encoder.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    log = open(out / "pretrain.jsonl", "w")
    metrics: dict[str, float] = {}
    step, it = 0, iter(train_dl)
    bar = tqdm(total=steps, desc="pretrain-vision", disable=not progress)
    while step < steps:
        try:
            x, labels = next(it)
        except StopIteration:
            it = iter(train_dl)
            continue
        for g in opt.param_groups:
            g["lr"] = cosine_with_warmup(step, steps, warmup_steps, lr, 0.0)
        loss = cell_loss(heads(encoder(x).last_hidden), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        record = {"step": step, "loss": round(float(loss), 4)}
        if step % eval_every == 0 or step == steps:
            metrics = {k: round(v, 2) for k, v in score(encoder, heads, val_dl).items()}
            record.update(metrics)
        log.write(json.dumps(record) + "\n")
        log.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}", **{k: v for k, v in metrics.items() if k == "all_acc"})
    bar.close()
    log.close()
    if not math.isfinite(float(loss)):
        raise RuntimeError(f"pretrain-vision: the loss is {float(loss)} at step {step}")
    path = out / "vision.pt"
    torch.save({"vision": asdict(vision), "state_dict": encoder.state_dict(), "metrics": metrics,
                "steps": steps, "data": str(root)}, path)
    return path


def load_vision_init(path: str | os.PathLike, vision: VisionConfig) -> dict[str, Tensor]:
    """The state dict of a ``vision.pt``, after checking that it was trained for exactly this vision config."""
    if not Path(path).is_file():
        raise DataError(f"init_vision: no such file: {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    theirs = from_dict(VisionConfig, blob["vision"], where=f"{path}: vision")
    if theirs != vision:
        diff = [f"{k}: {getattr(theirs, k)!r} there, {getattr(vision, k)!r} here"
                for k in asdict(vision) if getattr(theirs, k) != getattr(vision, k)]
        raise ValueError(f"init_vision {path} was trained for another image encoder ({'; '.join(diff)})")
    return blob["state_dict"]
