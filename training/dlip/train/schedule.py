"""Learning-rate schedule and optimizer construction."""

from __future__ import annotations

import math

import torch
from torch import nn

# Modules whose parameters are never weight-decayed: normalisation scales/shifts and embedding tables.
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase,
    nn.Embedding, nn.EmbeddingBag,
)
# Bare ``nn.Parameter`` embeddings (ViT ``pos_embed``, ``cls_token``) are recognised by their attribute name.
NO_DECAY_NAME_SUFFIXES = ("embed", "embeds", "embedding", "embeddings", "token", "tokens")


def cosine_with_warmup(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> float:
    """The learning rate for 0-based ``step`` of ``total_steps``.

    Linear warm-up from 0: ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (so the first step
    already moves and step ``warmup_steps - 1`` reaches ``base_lr``); then half a cosine from ``base_lr`` at
    ``step == warmup_steps`` down to ``min_lr`` at ``step == total_steps``; ``min_lr`` from there on.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if not 0 <= min_lr <= base_lr:
        raise ValueError(f"need 0 <= min_lr <= base_lr, got min_lr={min_lr}, base_lr={base_lr}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # in [0, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of trainable parameters with and without weight decay.

    No decay for: biases and every other parameter with fewer than 2 dimensions (LayerNorm weights, the ITC
    temperature), parameters of normalisation and embedding modules, and bare parameters named like embeddings
    (``pos_embed``, ``cls_token``). Everything else (Linear / Conv weights) decays. A parameter shared by two modules
    (tied embedding / LM-head weight) counts once, and goes without decay if any owner says so.
    """
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, NO_DECAY_MODULES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # de-duplicates shared parameters
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if param.ndim < 2 or id(param) in no_decay_ids or leaf.endswith(NO_DECAY_NAME_SUFFIXES):
            no_decay.append(name)
        else:
            decay.append(name)
    return decay, no_decay


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, in two groups named ``"decay"`` and ``"no_decay"`` (see ``decay_split``).

    Frozen parameters (``requires_grad=False``, e.g. a teacher) are left out.
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    params = dict(model.named_parameters())
    decay, no_decay = decay_split(model)
    groups = [
        {"name": "decay", "params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"name": "no_decay", "params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimise")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
