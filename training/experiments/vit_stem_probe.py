"""Can the teacher's ViT learn an object's shape and region? A vision-only probe on single-object Shapes images.

The teacher preset's ViT (64 px, 8 px patches, width 256, 4 layers) plus one linear head on its [CLS] token is trained
from scratch on 3,000 single-object training images to classify the object's shape (5 classes) and region (9
classes), then scored on 250 single-object validation images every 100 steps. ``STEM`` is ``patch`` (BLIP's linear
patch embedding), ``conv`` (the ``vision.stem: "conv"`` option: BatchNorm + ReLU) or ``convgelu`` (the same
convolutions with GELU and no normalisation). One CPU thread; about 9 minutes for 600 steps on a 2-core AMD EPYC.

    .venv/bin/python experiments/vit_stem_probe.py STEM STEPS LR [DATA]     # e.g. conv 600 5e-4 ../data/shapes
"""

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlip.config import model_preset  # noqa: E402
from dlip.data.transforms import ImagePreprocess  # noqa: E402
from dlip.model.vit import VisionTransformer  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
stem, steps, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
root = Path(sys.argv[4] if len(sys.argv) > 4 else "../data/shapes")
cfg = model_preset("teacher").vision
SHAPES = ["circle", "square", "triangle", "diamond", "star"]
REGIONS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]


def load(split: str, n: int):
    images, shapes, regions = [], [], []
    pre = ImagePreprocess(64)
    for line in open(root / f"scenes_{split}.jsonl"):
        scene = json.loads(line)
        if len(scene["objects"]) != 1:
            continue
        obj = scene["objects"][0]
        images.append(pre(str(root / scene["image"])))
        shapes.append(SHAPES.index(obj["shape"]))
        regions.append(REGIONS.index(obj["region"]))
        if len(images) >= n:
            break
    return torch.stack(images), torch.tensor(shapes), torch.tensor(regions)


x_train, s_train, r_train = load("train", 3000)
x_val, s_val, r_val = load("val", 250)
vit = VisionTransformer(cfg)  # the preset's own stem: patch
if stem == "conv":
    d = cfg.hidden_size
    vit.patch_embed = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                                    nn.Conv2d(64, 128, 3, 2, 1), nn.BatchNorm2d(128), nn.ReLU(),
                                    nn.Conv2d(128, 256, 3, 2, 1), nn.BatchNorm2d(256), nn.ReLU(), nn.Conv2d(256, d, 1))
elif stem == "convgelu":
    d = cfg.hidden_size
    vit.patch_embed = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.GELU(), nn.Conv2d(64, 128, 3, 2, 1), nn.GELU(),
                                    nn.Conv2d(128, 256, 3, 2, 1), nn.GELU(), nn.Conv2d(256, d, 1))
elif stem != "patch":
    raise SystemExit(f"STEM must be patch, conv or convgelu, not {stem!r}")
head = nn.Linear(cfg.hidden_size, 5 + 9)
params = list(vit.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
t0 = time.time()
print("| stem | step | train loss | shape acc (val) | region acc (val) | seconds |\n|---|---|---|---|---|---|")
for step in range(1, steps + 1):
    vit.train()
    idx = torch.randint(0, len(x_train), (32,))
    out = head(vit(x_train[idx]).last_hidden[:, 0])
    loss = F.cross_entropy(out[:, :5], s_train[idx]) + F.cross_entropy(out[:, 5:], r_train[idx])
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if step % 100 == 0:
        vit.eval()
        with torch.no_grad():
            o = head(vit(x_val).last_hidden[:, 0])
        shape_acc = 100 * (o[:, :5].argmax(1) == s_val).float().mean()
        region_acc = 100 * (o[:, 5:].argmax(1) == r_val).float().mean()
        print(f"| {stem} | {step} | {loss.item():.3f} | {shape_acc:.0f}% | {region_acc:.0f}% "
              f"| {time.time() - t0:.0f} |",
              flush=True)
