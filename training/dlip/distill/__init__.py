"""DLIP distillation: layer mappings (config data) and the distillation terms (representation, attention, outputs)."""

from dlip.distill.layer_map import every_kth_teacher_layers, resolve_layer_map
from dlip.distill.terms import (HiddenProjector, attention_distill_loss, attention_kl, hidden_distill_loss,
                                itc_distill_loss, itm_distill_loss, logit_distill_loss)

__all__ = [
    "HiddenProjector",
    "attention_distill_loss",
    "attention_kl",
    "every_kth_teacher_layers",
    "hidden_distill_loss",
    "itc_distill_loss",
    "itm_distill_loss",
    "logit_distill_loss",
    "resolve_layer_map",
]
