"""DLIP distillation terms: one small module or pure function per term, each returning a scalar tensor.

Shapes: B batch, L tokens, D widths (``_s`` student, ``_t`` teacher), nh heads, Lq / Lk query / key positions,
V vocabulary. Teacher tensors are targets: every term detaches them, so no gradient can reach the teacher.
Layer pairs come from ``dlip.distill.layer_map.resolve_layer_map`` (hidden-state numbering: 0 = embeddings).
Soft-target terms are computed in float32 so mixed-precision inputs do not lose the small KL values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# log(0) guard for attention probabilities: masked keys get exactly 0 after the softmax
_PROB_EPS = 1e-12


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` (B, L) over positions where ``mask`` (B, L) is nonzero (all positions when None)."""
    if mask is None:
        return values.mean()
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match positions {tuple(values.shape)}")
    weight = mask.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)  # an all-masked batch gives 0, not NaN


def _check_pair(pair: tuple[int, int], n_student: int, n_teacher: int, what: str) -> None:
    i, j = pair
    if not (0 <= i < n_student and 0 <= j < n_teacher):
        raise ValueError(f"layer pair {tuple(pair)} out of range for {n_student} student / {n_teacher} teacher {what}")


# ---------------------------------------------------------------- representation (hidden states)

class HiddenProjector(nn.Module):
    """Learnable student -> teacher width maps, one per distilled module (e.g. "vision", "text", "fused", "decoder").

    ``dims`` maps a module name to (d_student, d_teacher): an ``nn.Linear(d_s, d_t)`` where the widths differ, an
    identity (no parameters) where they match. ``projector[name]`` is the callable for ``hidden_distill_loss``.
    The projectors train with the student and are dropped after distillation.
    """

    def __init__(self, dims: dict[str, tuple[int, int]]):
        super().__init__()
        layers = {}
        for name, (d_s, d_t) in dims.items():
            if not name or "." in name:
                raise ValueError(f"projector name {name!r} must be non-empty and contain no '.'")
            if d_s < 1 or d_t < 1:
                raise ValueError(f"projector {name!r}: widths ({d_s}, {d_t}) must be positive")
            layers[name] = nn.Identity() if d_s == d_t else nn.Linear(d_s, d_t)
        self.maps = nn.ModuleDict(layers)

    def __getitem__(self, name: str) -> nn.Module:
        if name not in self.maps:
            raise ValueError(f"no projector named {name!r} (known: {', '.join(self.maps) or 'none'})")
        return self.maps[name]

    def forward(self, name: str, x: Tensor) -> Tensor:
        return self[name](x)  # (..., D_s) -> (..., D_t)


def hidden_distill_loss(student_hidden: Sequence[Tensor], teacher_hidden: Sequence[Tensor],
                        pairs: Sequence[tuple[int, int]], proj: Callable[[Tensor], Tensor] | None = None,
                        kind: str = "mse", mask: Tensor | None = None) -> Tensor:
    """Mean over ``pairs`` of the distance between proj(student_hidden[i]) and teacher_hidden[j].

    Hidden states are tuples of (B, L, D); ``proj`` maps D_s -> D_t (None = identity). ``kind``: "mse" (mean squared
    error per token, averaged over the width) or "cosine" (1 - cosine similarity per token). ``mask`` (B, L) keeps
    real tokens (1) and drops padding (0); the per-token distances are averaged over kept tokens.
    """
    if kind not in ("mse", "cosine"):
        raise ValueError(f"hidden distillation kind {kind!r} must be 'mse' or 'cosine'")
    if len(pairs) == 0:
        raise ValueError("hidden_distill_loss needs at least one layer pair")
    losses = []
    for i, j in pairs:
        _check_pair((i, j), len(student_hidden), len(teacher_hidden), "hidden states")
        s = student_hidden[i] if proj is None else proj(student_hidden[i])  # (B, L, D_t)
        t = teacher_hidden[j].detach()  # (B, L, D_t)
        if s.shape != t.shape:
            raise ValueError(f"layer pair ({i}, {j}): projected student {tuple(s.shape)} vs teacher {tuple(t.shape)}"
                             " (is a projector missing?)")
        if kind == "mse":
            per_token = (s.float() - t.float()).pow(2).mean(dim=-1)  # (B, L)
        else:
            per_token = 1.0 - F.cosine_similarity(s.float(), t.float(), dim=-1)  # (B, L)
        losses.append(_masked_mean(per_token, mask))
    return torch.stack(losses).mean()


# ---------------------------------------------------------------- attention maps

def _match_heads(student_attn: Tensor, teacher_attn: Tensor) -> tuple[Tensor, Tensor]:
    """Brings both maps to the same head count.

    Equal counts: unchanged. Teacher heads a multiple r of student heads: each group of r *consecutive* teacher heads
    is averaged into one (teacher heads g*r .. g*r+r-1 -> student head g); an average of probability maps is still a
    probability map. Otherwise: all heads are averaged on both sides, leaving one map each.
    """
    hs, ht = student_attn.shape[1], teacher_attn.shape[1]
    if hs == ht:
        return student_attn, teacher_attn
    b, _, lq, lk = teacher_attn.shape
    if ht % hs == 0:
        grouped = teacher_attn.reshape(b, hs, ht // hs, lq, lk)  # (B, hs, r, Lq, Lk)
        return student_attn, grouped.mean(dim=2)  # (B, hs, Lq, Lk)
    return student_attn.mean(dim=1, keepdim=True), teacher_attn.mean(dim=1, keepdim=True)  # (B, 1, Lq, Lk)


def attention_kl(student_attn: Tensor, teacher_attn: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(teacher || student) between attention distributions over keys, averaged over heads and query positions.

    student_attn (B, hs, Lq, Lk), teacher_attn (B, ht, Lq, Lk): softmax probabilities. Head counts are matched by
    ``_match_heads``. ``mask`` (B, Lq) excludes padded queries. Zero teacher probabilities (masked keys) contribute
    0 (x log x -> 0); zero student probabilities are clamped before the log, so the result stays finite.
    """
    if student_attn.dim() != 4 or teacher_attn.dim() != 4:
        raise ValueError(f"attention maps must be (B, nh, Lq, Lk), got {tuple(student_attn.shape)} "
                         f"and {tuple(teacher_attn.shape)}")
    (bs, _, lq_s, lk_s), (bt, _, lq_t, lk_t) = student_attn.shape, teacher_attn.shape
    if (bs, lq_s, lk_s) != (bt, lq_t, lk_t):
        raise ValueError(f"student attention {tuple(student_attn.shape)} and teacher attention "
                         f"{tuple(teacher_attn.shape)} differ outside the head dimension")
    s, t = _match_heads(student_attn.float(), teacher_attn.detach().float())
    kl = torch.xlogy(t, t) - t * s.clamp_min(_PROB_EPS).log()  # (B, h, Lq, Lk)
    per_query = kl.sum(dim=-1).mean(dim=1)  # (B, Lq): summed over keys, averaged over heads
    return _masked_mean(per_query, mask)


def attention_distill_loss(student_attns: Sequence[Tensor], teacher_attns: Sequence[Tensor],
                           pairs: Sequence[tuple[int, int]], mask: Tensor | None = None) -> Tensor:
    """Mean of ``attention_kl`` over mapped layers. ``pairs`` use hidden-state numbering 1..n: the map of layer i is
    ``attns[i - 1]``; a (0, 0) embeddings pair (from ``include_embeddings``) has no map and is skipped."""
    losses = []
    for i, j in pairs:
        if (i, j) == (0, 0):
            continue
        _check_pair((i - 1, j - 1), len(student_attns), len(teacher_attns), "attention maps (0-based)")
        losses.append(attention_kl(student_attns[i - 1], teacher_attns[j - 1], mask))
    if not losses:
        raise ValueError(f"attention_distill_loss needs at least one layer pair besides (0, 0), got {list(pairs)}")
    return torch.stack(losses).mean()


# ---------------------------------------------------------------- outputs (ITC, ITM, LM logits)

def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature!r}")


def _soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-row KL(softmax(teacher / T) || softmax(student / T)) over the last dim, times T^2: (...) from (..., C).

    The T^2 factor (Hinton et al.) keeps gradient magnitudes comparable across temperatures.
    """
    _check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} vs teacher logits "
                         f"{tuple(teacher_logits.shape)}")
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1) * temperature ** 2


def itc_distill_loss(student_sim_i2t: Tensor, teacher_sim_i2t: Tensor) -> Tensor:
    """Soft-target ITC: the student's similarity rows and columns against the teacher's, both directions, averaged.

    sims: (B_img, B_txt) logits already divided by each model's ITC temperature; t2i is the transpose. The paper's
    form is the cross-entropy of the student log-softmax against the teacher softmax; we return the KL, which is that
    cross-entropy minus the teacher's entropy (a constant), so the gradient is the same and a perfect copy scores 0.
    """
    i2t = _soft_kl(student_sim_i2t, teacher_sim_i2t).mean()  # over images
    t2i = _soft_kl(student_sim_i2t.t(), teacher_sim_i2t.t()).mean()  # over texts
    return (i2t + t2i) / 2


def itm_distill_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) of the match / no-match probabilities at ``temperature``, times T^2, averaged over the
    N (image, text) pairs. logits: (N, 2)."""
    return _soft_kl(student_logits, teacher_logits, temperature).mean()


def logit_distill_loss(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None,
                       temperature: float = 1.0) -> Tensor:
    """Token-level KL(teacher || student) of the LM distributions at ``temperature``, times T^2 (Hinton), averaged
    over positions where ``mask`` (B, L) is 1. logits: (B, L, V). For captioning, mask the positions whose next-token
    prediction ``lm_loss`` scores (its label mask shifted by one) so prompt and padding do not count."""
    return _masked_mean(_soft_kl(student_logits, teacher_logits, temperature), mask)  # (B, L) -> scalar
