"""Image-encoder pre-training on scene graphs (dlip pretrain-vision) and a teacher that starts from it."""

import json

import pytest
import torch

from dlip.cli import main
from dlip.config import model_preset, train_config_from_dict
from dlip.data.errors import DataError
from dlip.train.vision_pretrain import HEADS, cell_labels, load_vision_init

BG = [HEADS["shape"] - 1, HEADS["color"] - 1, HEADS["size"] - 1]


def test_cell_labels_by_hand():
    # a 64 px image on a 2x2 grid (cells of 32 px): a large red square over the left half, a small blue circle
    # straddling the two right cells with most of it in the bottom one
    objects = [{"shape": "square", "color": "red", "size": "large", "bbox": [0, 0, 30, 64]},
               {"shape": "circle", "color": "blue", "size": "small", "bbox": [40, 29, 56, 45]}]
    got = cell_labels(objects, 64, 64, 2).tolist()
    square, circle = [1, 0, 1], [0, 2, 0]  # SHAPES / COLORS / SIZES indices
    # top right: the circle overlaps 16 x 3 = 48 px, under a quarter of its 256 px box -> background
    assert got == [square, BG, square, circle]


def test_a_small_object_labels_at_least_the_cell_of_its_centre():
    obj = {"shape": "star", "color": "black", "size": "small", "bbox": [20, 20, 48, 48]}  # 28 px, across 4 cells
    got = cell_labels([obj], 64, 64, 2)
    assert (got[:, 0] == 4).sum() >= 1  # star


def test_pretrain_vision_writes_an_encoder_a_teacher_starts_from(tmp_path, shapes_dir):
    cfg = {"preset": "micro", "data": {"image_root": str(shapes_dir)}, "threads": 1}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["pretrain-vision", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "v"),
                 "--steps", "3", "--batch-size", "4"]) == 0
    blob = torch.load(tmp_path / "v" / "vision.pt", weights_only=True)
    assert set(blob["metrics"]) == {"shape_acc", "color_acc", "size_acc", "all_acc"}
    log = [json.loads(line) for line in (tmp_path / "v" / "pretrain.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and "all_acc" in log[-1]

    from dlip.train import distributed as dist
    from dlip.train.trainer import build_models

    tc = train_config_from_dict({**cfg, "init_vision": str(tmp_path / "v" / "vision.pt")})
    models = build_models(tc, dist.DistInfo(0, 1, 0, torch.device("cpu"), True))
    for name, value in models.model.visual_encoder.state_dict().items():
        assert torch.equal(value, blob["state_dict"][name]), name


def test_init_vision_refuses_another_encoder_and_a_missing_file(tmp_path, shapes_dir):
    cfg = {"preset": "micro", "data": {"image_root": str(shapes_dir)}, "threads": 1}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["pretrain-vision", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "v"),
                 "--steps", "1", "--batch-size", "2"]) == 0
    other = model_preset("teacher").vision
    with pytest.raises(ValueError, match="another image encoder.*image_size: 32 there, 64 here"):
        load_vision_init(tmp_path / "v" / "vision.pt", other)
    with pytest.raises(DataError, match="no such file"):
        load_vision_init(tmp_path / "nope.pt", other)


def test_pretrain_vision_needs_scene_graphs(tmp_path, capsys):
    (tmp_path / "cfg.json").write_text(json.dumps({"preset": "micro", "data": {"image_root": str(tmp_path)}}))
    assert main(["pretrain-vision", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "v")]) != 0
    assert "scenes_train.jsonl" in capsys.readouterr().err


def test_stop_after_keeps_the_schedule_and_init_vision_none_starts_from_random(tmp_path, shapes_dir):
    """`train --stop-after N` is step N of the full run (same learning rates), checkpointed there; `--init-vision
    none` overrides a config's init_vision."""
    cfg = {"preset": "micro", "data": {"image_root": str(shapes_dir)}, "threads": 1, "log_every": 1,
           "init_vision": str(tmp_path / "missing.pt"),
           "stages": [{"name": "joint", "steps": 6, "batch_size": 4, "warmup_steps": 1,
                       "weights": {"itc": 1, "itm": 1, "lm": 1}}]}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    base = ["train", "--config", str(tmp_path / "cfg.json"), "--init-vision", "none"]
    assert main([*base, "--out", str(tmp_path / "full")]) == 0
    assert main([*base, "--out", str(tmp_path / "cut"), "--stop-after", "3"]) == 0
    read = lambda run: [json.loads(x) for x in (tmp_path / run / "log.jsonl").read_text().splitlines()]  # noqa: E731
    full, cut = read("full"), read("cut")
    assert [r["step"] for r in cut] == [1, 2, 3]
    assert [r["lr"] for r in cut] == [r["lr"] for r in full[:3]]  # the 6-step schedule, not a 3-step one
    ckpt = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["step"] == 3
    assert main([*base, "--out", str(tmp_path / "bad"), "--stop-after", "0"]) != 0
