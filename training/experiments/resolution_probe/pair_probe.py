"""Does the teacher's image encoder see which objects a scene holds at 64 px, and does 96 px help? A short-schedule,
vision-only probe on renderer-v2 Shapes scenes (1-4 objects).

The teacher-conv-pos-reads preset's ViT (convolutional stem, 8 px patches, width 256, 4 layers; position table on the
output tokens) at ``SIZE`` px, plus one linear head on its [CLS] token and the mean of its patch tokens, is trained
from scratch to say which of the 40 (colour, shape) pairs the scene holds (40 independent yes/no outputs, binary
cross-entropy): the image-side half of a caption naming exactly the scene's objects. Scored every 100 steps on the
first 500 test images, each with its standard error: the exact-set rate with the number of kinds given (the k pairs
scored highest are exactly the scene's k pairs: threshold-free, so it moves early in training), the same with
every output > 0 taken as present (no number given), and the share of small and of large objects whose pair is among
the image's k highest.

One CPU thread; checkpointed every 100 steps in ``OUT`` (a run resumes from it); the table rows go to stdout and
``OUT/results.jsonl``.

    nice -n 19 .venv/bin/python experiments/resolution_probe/pair_probe.py SIZE STEPS DATA OUT
    # e.g. 64 600 ../data/shapes-v2-train ../runs/pair-probe-64
"""

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dlip.config import model_preset  # noqa: E402
from dlip.data.shapes_scene import COLORS, SHAPES  # noqa: E402
from dlip.data.transforms import ImagePreprocess  # noqa: E402
from dlip.model.vit import VisionTransformer  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
size, steps, root, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
PAIRS = [(c, s) for c in COLORS for s in SHAPES]  # 40
N_TRAIN, N_VAL, BATCH, LR, EVAL_EVERY = 4000, 500, 32, 5e-4, 100


def load(split: str, n: int):
    """(images (n, 3, S, S) float16, targets (n, 40), scenes)"""
    pre = ImagePreprocess(size)
    images, targets, scenes = [], [], []
    for line in open(root / f"scenes_{split}.jsonl"):
        scene = json.loads(line)
        images.append(pre(str(root / scene["image"])).half())
        target = torch.zeros(len(PAIRS))
        for o in scene["objects"]:
            target[PAIRS.index((o["color"], o["shape"]))] = 1
        targets.append(target)
        scenes.append(scene)
        if len(images) >= n:
            break
    return torch.stack(images), torch.stack(targets), scenes


def rate(hits: list[bool]) -> tuple[float, float]:
    p = sum(hits) / len(hits)
    return 100 * p, 100 * math.sqrt(p * (1 - p) / len(hits))


def evaluate(vit, head, x, y, scenes) -> dict:
    vit.eval()
    with torch.no_grad():
        logits = torch.cat([forward(vit, head, x[i:i + 100]) for i in range(0, len(x), 100)])
    exact_threshold = ((logits > 0) == y.bool()).all(dim=1).tolist()
    kinds = y.sum(dim=1).long()  # (N,) distinct pairs per scene
    ranks = logits.argsort(dim=1, descending=True).argsort(dim=1)  # (N, 40): 0 = highest
    top_k = ranks < kinds[:, None]  # (N, 40): the k highest-scored pairs of each image
    exact_top_k = (top_k == y.bool()).all(dim=1).tolist()
    seen = {"small": [], "large": []}
    for i, scene in enumerate(scenes):
        for o in scene["objects"]:
            seen[o["size"]].append(bool(top_k[i, PAIRS.index((o["color"], o["shape"]))]))
    return {"exact_set": rate(exact_top_k), "exact_set_threshold": rate(exact_threshold),
            "small_seen": rate(seen["small"]), "large_seen": rate(seen["large"])}


def forward(vit, head, x):
    tokens = vit(x.float()).last_hidden  # (B, 1 + N, D)
    return head(torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=-1))  # (B, 40)


cfg = model_preset("teacher-conv-pos-reads").vision
cfg = dataclasses.replace(cfg, image_size=size)
vit = VisionTransformer(cfg)
head = nn.Linear(2 * cfg.hidden_size, len(PAIRS))
params = list(vit.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.05)
out.mkdir(parents=True, exist_ok=True)
ckpt, start = out / "checkpoint.pt", 0
if ckpt.is_file():
    state = torch.load(ckpt)
    vit.load_state_dict(state["vit"])
    head.load_state_dict(state["head"])
    opt.load_state_dict(state["opt"])
    start = state["step"]
    torch.set_rng_state(state["rng"])
t0 = time.time()
x_train, y_train, _ = load("train", N_TRAIN)
x_val, y_val, val_scenes = load("test", N_VAL)
print(f"# {size} px, {len(x_train)} train / {len(x_val)} test images loaded in {time.time() - t0:.0f} s; "
      f"resuming at step {start}", flush=True)
print("| size | step | train loss | exact set, k given | exact set, output > 0 | small objects seen "
      "| large objects seen | seconds |\n|---|---|---|---|---|---|---|---|", flush=True)
t0 = time.time()
for step in range(start + 1, steps + 1):
    vit.train()
    lr = LR * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))  # warm-up 50, cosine to 0
    for group in opt.param_groups:
        group["lr"] = lr
    idx = torch.randint(0, len(x_train), (BATCH,))
    loss = F.binary_cross_entropy_with_logits(forward(vit, head, x_train[idx]), y_train[idx])
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if step % EVAL_EVERY == 0 or step == steps:
        m = evaluate(vit, head, x_val, y_val, val_scenes)
        row = {"size": size, "step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - t0),
               **{k: [round(v, 2) for v in m[k]] for k in m}}
        cells = " | ".join(f"{m[k][0]:.1f} (+-{m[k][1]:.1f})" for k in m)
        print(f"| {size} | {step} | {loss.item():.3f} | {cells} | {time.time() - t0:.0f} |", flush=True)
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        torch.save({"vit": vit.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(), "step": step,
                    "rng": torch.get_rng_state()}, ckpt)
