"""data.vqa_type_weights: VQA training questions drawn in proportion to per-type weights."""

import collections

import pytest
import torch


def _vqa_dataset(shapes_dir):
    from dlip.config import DataConfig
    from dlip.data.transforms import ImagePreprocess
    from dlip.train.batches import vqa_dataset

    return vqa_dataset(DataConfig(image_root=str(shapes_dir)), ImagePreprocess(32))


def test_type_weights_set_how_often_each_question_type_is_drawn(shapes_dir):
    from dlip.train.batches import WeightedEpochSampler, vqa_sample_weights

    ds = _vqa_dataset(shapes_dir)
    types = [item.question_type for item in ds.items]
    counts = collections.Counter(types)
    assert vqa_sample_weights(ds, None) is None
    weights = vqa_sample_weights(ds, {"region": 4.0, "color": 0.0})
    assert weights.shape == (len(ds),)
    assert all(w == {"region": 4.0, "color": 0.0}.get(t, 1.0) for w, t in zip(weights.tolist(), types))

    sampler = WeightedEpochSampler(weights, seed=3)
    draws = []
    for epoch in range(400):
        sampler.set_epoch(epoch)
        draws += list(sampler)
    drawn = collections.Counter(types[i] for i in draws)
    assert drawn["color"] == 0
    mass = sum(counts[t] * (4.0 if t == "region" else 1.0) for t in counts if t != "color")
    expected_region = counts["region"] * 4.0 / mass
    assert abs(drawn["region"] / len(draws) - expected_region) < 0.02

    # deterministic per (seed, epoch); epochs differ; ranks split one epoch's draws between them
    sampler.set_epoch(7)
    again = WeightedEpochSampler(weights, seed=3)
    again.set_epoch(7)
    assert list(sampler) == list(again)
    again.set_epoch(8)
    assert list(sampler) != list(again)
    halves = [WeightedEpochSampler(weights, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for h in halves:
        h.set_epoch(7)
    full = torch.multinomial(weights, len(ds) // 2 * 2, replacement=True,
                             generator=torch.Generator().manual_seed(10)).tolist()
    assert list(halves[0]) == full[0::2] and list(halves[1]) == full[1::2]


def test_type_weights_errors(shapes_dir):
    from dlip.config import train_config_from_dict
    from dlip.train.batches import vqa_sample_weights

    ds = _vqa_dataset(shapes_dir)
    with pytest.raises(ValueError, match="question_type 'regoin'"):
        vqa_sample_weights(ds, {"regoin": 2.0})
    all_types = {item.question_type for item in ds.items}
    with pytest.raises(ValueError, match="every training question has weight 0"):
        vqa_sample_weights(ds, {t: 0.0 for t in all_types})
    for bad in (-1.0, "2", True):
        with pytest.raises(ValueError, match="weight of 'region' must be a number >= 0"):
            train_config_from_dict({"data": {"vqa_type_weights": {"region": bad}}})
    cfg = train_config_from_dict({"data": {"vqa_type_weights": {"region": 3, "shape": 2.5}}})
    assert cfg.data.vqa_type_weights == {"region": 3, "shape": 2.5}


def test_a_micro_run_trains_with_type_weights(tmp_path, shapes_dir, micro_config):
    from dlip.config import train_config_from_dict
    from dlip.train.trainer import train

    torch.set_num_threads(1)
    data = dict(micro_config["data"], image_root=str(shapes_dir), vqa_type_weights={"region": 3.0, "shape": 2.0})
    cfg = train_config_from_dict(dict(micro_config, data=data))
    cfg.stages = cfg.stages[:1]
    cfg.stages[0].steps = 2
    cfg.stages[0].weights = {"itc": 0.0, "itm": 0.0, "lm": 0.0, "vqa": 1.0}
    run = train(cfg, tmp_path / "run", progress=False)
    assert (run / "checkpoints" / "last.pt").is_file()
