"""Small hand-made files in the real COCO-Karpathy, Flickr30K and VQAv2 layouts (as BLIP ships them) train a step."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dlip.config import train_config_from_dict
from dlip.train.trainer import train


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (48 + seed, 64, 3), dtype=np.uint8)).save(path, quality=90)


def _coco(root):
    """COCO-Karpathy as in BLIP's coco_karpathy_train/test.json: numeric ids in the file names, JPEGs of odd sizes."""
    names = [f"val2014/COCO_val2014_{i:012d}.jpg" for i in (391895, 522418, 184613, 318219)]
    for i, n in enumerate(names):
        _jpeg(root / n, i)
    train = [{"image": n, "caption": f"A man riding a bike number {i} down a dirt road.", "image_id": f"coco_{i}"}
             for i, n in enumerate(names) for _ in range(2)]
    test = [{"image": n, "caption": ["A man with a red helmet on a small moped.", "a bike on a road"]} for n in names]
    return train, test


def _flickr(root):
    """Flickr30K as in BLIP's flickr30k_train/test.json: integer image_id, flickr30k-images/ paths."""
    names = [f"flickr30k-images/{i}.jpg" for i in (1000092795, 10002456, 1000268201, 1000344755)]
    for i, n in enumerate(names):
        _jpeg(root / n, 10 + i)
    train = [{"image": n, "caption": "Two young guys with shaggy hair look at their hands.", "image_id": i}
             for i, n in enumerate(names) for _ in range(2)]
    test = [{"image": n, "caption": ["A child in a pink dress.", "A little girl climbing stairs."]} for n in names]
    return train, test


def _vqa(names):
    """VQAv2 as in BLIP's vqa_train.json (answer lists with repeats, extra "dataset" key) and vqa_test.json
    (no answers)."""
    train = [{"question_id": 262148000 + i, "question": "What color is the bike?", "answer": ["red"] * 7 + ["blue"] * 3,
              "image": n, "dataset": "vqa"} for i, n in enumerate(names)]
    test = [{"question_id": 262148100 + i, "question": "Is it raining?", "image": n} for i, n in enumerate(names)]
    return train, test


@pytest.mark.parametrize("layout", ["coco", "flickr"])
def test_real_layouts_train_a_step(tmp_path, layout, micro_config):
    root = tmp_path / "root"
    train_caps, test_caps = (_coco if layout == "coco" else _flickr)(root)
    vqa_train, vqa_test = _vqa([e["image"] for e in test_caps])
    ann = tmp_path / "ann"
    ann.mkdir()
    files = {"train_captions": train_caps, "test_captions": test_caps, "train_vqa": vqa_train, "test_vqa": vqa_test}
    for key, entries in files.items():
        (ann / f"{key}.json").write_text(json.dumps(entries))
    raw = dict(micro_config, data={"image_root": str(root), "vocab_size": 200, "val_captions": None,
                                   **{k: str(ann / f"{k}.json") for k in files}})
    cfg = train_config_from_dict(raw)
    for stage in cfg.stages:
        stage.steps, stage.batch_size = 1, 4
    torch.set_num_threads(1)
    run = train(cfg, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == ["pretrain", "vqa"]
    assert all(np.isfinite(r["lm_loss"]) for r in records) and np.isfinite(records[1]["vqa_loss"])
