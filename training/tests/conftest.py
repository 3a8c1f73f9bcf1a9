"""Shared fixtures: a tiny Shapes data set and a micro run trained on it (built once per test session)."""

import json
from pathlib import Path

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    from dlip.data.shapes import synth

    out = tmp_path_factory.mktemp("shapes")
    synth(out, n_train=16, n_val=4, n_test=8, seed=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def micro_config() -> dict:
    return json.loads((CONFIGS / "micro.json").read_text())


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, shapes_dir, micro_config) -> Path:
    from dlip.config import train_config_from_dict
    from dlip.train.trainer import train

    torch.set_num_threads(1)
    raw = dict(micro_config, data=dict(micro_config["data"], image_root=str(shapes_dir)))
    cfg = train_config_from_dict(raw)
    cfg.stages[0].steps = 30
    return train(cfg, tmp_path_factory.mktemp("runs") / "micro", progress=False)
