"""Can cross-attention read where an object is from a trained teacher's image tokens? A frozen-encoder probe.

The trained run's ViT is frozen; its output tokens for single-object Shapes images are read by one fresh BERT
cross-attention layer (a learned query, as the text side reads the image) and a linear head that classifies the
object's shape (5 classes) and region (9 classes). The readout trains on 3,000 single-object training images and is
scored on 250 single-object validation images every 100 steps. ``TABLE`` is ``none`` (the tokens as the run's ViT
gives them) or ``sincos`` (the 2D sine-cosine position table added to the patch tokens, what ``vision.output_pos_embed``
does). One CPU thread; about 3 minutes for 600 steps on a 2-core AMD EPYC.

    .venv/bin/python experiments/position_readout.py RUN TABLE [STEPS] [DATA]    # e.g. ../runs/teacher-conv sincos
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlip.config import TextConfig  # noqa: E402
from dlip.data.transforms import ImagePreprocess  # noqa: E402
from dlip.model.text import BertAttention, _init_bert  # noqa: E402
from dlip.model.vit import sincos_2d  # noqa: E402
from dlip.run_folder import load_run  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
run_dir, table = sys.argv[1], sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 600
root = Path(sys.argv[4] if len(sys.argv) > 4 else "../data/shapes")
if table not in ("none", "sincos"):
    raise SystemExit(f"TABLE must be none or sincos, not {table!r}")
SHAPES = ["circle", "square", "triangle", "diamond", "star"]
REGIONS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
run = load_run(run_dir)
vit = run.model.visual_encoder.eval()
vcfg = run.config.model.vision
if vcfg.output_pos_embed:
    raise SystemExit(f"{run_dir} already adds the position table to its tokens (vision.output_pos_embed)")
width, grid = vcfg.hidden_size, vcfg.image_size // vcfg.patch_size


def load(split: str, n: int):
    images, shapes, regions = [], [], []
    pre = ImagePreprocess(vcfg.image_size)
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
    x = torch.stack(images)
    with torch.no_grad():
        tokens = torch.cat([vit(x[i:i + 200]).last_hidden for i in range(0, len(x), 200)])
    if table == "sincos":
        tokens = tokens + torch.cat([torch.zeros(1, width), sincos_2d(grid, width)])[None]
    return tokens, torch.tensor(shapes), torch.tensor(regions)


x_train, s_train, r_train = load("train", 3000)
x_val, s_val, r_val = load("val", 250)
xattn = BertAttention(TextConfig(hidden_size=width, num_heads=vcfg.num_heads), width)
xattn.apply(_init_bert)
query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
head = nn.Linear(width, len(SHAPES) + len(REGIONS))
opt = torch.optim.AdamW(list(xattn.parameters()) + [query] + list(head.parameters()), lr=5e-4, weight_decay=0.05)


def readout(tokens):
    return head(xattn(query.expand(tokens.shape[0], -1, -1), tokens, None, False)[0][:, 0])


print(f"frozen ViT of {run_dir}, tokens + {table}: validation accuracy of a cross-attention readout")
print("| step | shape | region |\n|---|---|---|")
for step in range(1, steps + 1):
    i = torch.randint(0, len(x_train), (32,))
    out = readout(x_train[i])
    loss = F.cross_entropy(out[:, :5], s_train[i]) + F.cross_entropy(out[:, 5:], r_train[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 100 == 0:
        with torch.no_grad():
            out = readout(x_val)
        shape = (out[:, :5].argmax(1) == s_val).float().mean().item()
        region = (out[:, 5:].argmax(1) == r_val).float().mean().item()
        print(f"| {step} | {100 * shape:.0f}% | {100 * region:.0f}% |", flush=True)
