"""Parameter counts of a model and of its parts (the bundle manifest's ``params``, the cost profile)."""

from __future__ import annotations

from torch import nn

from .med import BlipMED


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (shared parameters counted once); only trainable ones on request."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def param_counts(model: BlipMED) -> dict[str, int]:
    """Parameters by part: the total, the ViT, the text encoder (with its cross-attention), the decoder, the heads."""
    heads = count_params(model.vision_proj) + count_params(model.text_proj) + count_params(model.itm_head) + 1
    return {"total": count_params(model), "vision": count_params(model.visual_encoder),
            "text_encoder": count_params(model.text_encoder), "text_decoder": count_params(model.text_decoder),
            "heads": heads}  # + 1: the ITC temperature
