"""Parameters and FLOPs per module of a BlipMED, on one image and one text of a typical length."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model.med import BlipMED
from ..model.params import param_counts
from .flops import count_flops

TEXT_TOKENS = 16  # a typical Shapes caption / question length in tokens, specials included


@torch.no_grad()
def model_costs(model: BlipMED, cfg: ModelConfig, max_text_tokens: int) -> dict:
    """``modules``: params and GFLOPs of one forward pass of each module (vision: one image; text encoder: one
    caption, unimodal; fusion: the text encoder over one caption with cross-attention to one image, as ITM and
    VQA run it; decoder: one caption of ``TEXT_TOKENS`` tokens, teacher-forced). ``image_caption_gflops``: vision +
    decoder, the cost of captioning one image."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = min(TEXT_TOKENS, max_text_tokens, cfg.text.max_position_embeddings)
    image = torch.zeros(1, 3, cfg.vision.image_size, cfg.vision.image_size, device=device)
    ids = torch.full((1, n), 7 % cfg.text.vocab_size, dtype=torch.long, device=device)
    mask = torch.ones_like(ids)
    embeds = model.encode_image(image).last_hidden
    params = param_counts(model)
    g = 1e-9
    modules = {
        "vision": {"params": params["vision"], "gflops": count_flops(model.encode_image, image) * g},
        "text_encoder": {"params": params["text_encoder"], "gflops": count_flops(model.encode_text, ids, mask) * g},
        "fusion (text encoder + cross-attention)": {"params": params["text_encoder"],
                                                    "gflops": count_flops(model.fuse, ids, mask, embeds) * g},
        "text_decoder": {"params": params["text_decoder"],
                         "gflops": count_flops(model.decode, ids, mask, embeds) * g},
        "heads (ITC projections, ITM)": {"params": params["heads"], "gflops": 0.0},
    }
    model.train(was_training)
    return {
        "modules": modules,
        "params_total": params["total"],
        "image_caption_gflops": modules["vision"]["gflops"] + modules["text_decoder"]["gflops"],
        "text_tokens": n,
    }
