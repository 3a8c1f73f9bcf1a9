"""Loading trained models: a run folder of ours (config.json, tokenizer.json, checkpoints/last.pt) or a Hugging Face
BLIP checkpoint directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig, train_config_from_dict
from .data.tokenizer import TextTokenizer
from .model.med import BlipMED
from .train.run import load_checkpoint

TOKENIZER_FILE = "tokenizer.json"
CHECKPOINT = "checkpoints/last.pt"


@dataclass
class LoadedModel:
    model: BlipMED
    tokenizer: TextTokenizer
    config: TrainConfig
    path: Path


def load_run(path: str | Path, checkpoint: str = CHECKPOINT) -> LoadedModel:
    """Rebuilds the model of a run folder from its resolved config and loads its checkpoint."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"not a run folder: {path} (no config.json)")
    try:
        cfg = train_config_from_dict(json.loads(config_path.read_text()), where=str(config_path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: invalid JSON ({err})") from None
    if cfg.model is None:
        raise ValueError(f"{config_path}: no resolved 'model' section")
    tokenizer = TextTokenizer.from_file(path / TOKENIZER_FILE)
    ckpt_path = path / checkpoint
    if not ckpt_path.is_file():
        raise ValueError(f"no checkpoint at {ckpt_path}: has this run finished a stage?")
    model = BlipMED(cfg.model)
    state = load_checkpoint(ckpt_path)["model"]
    model.load_state_dict(state)
    model.eval()
    return LoadedModel(model, tokenizer, cfg, path)
