"""Initialising a distillation's student from its teacher or teachers (loading them: ``teachers.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..config import INIT_PARTS, check_init_parts
from ..model.med import BlipMED
from ..run_folder import RunFolder, load_checkpoint
from .layer_map import every_kth_teacher_layers
from .teachers import Teacher

# student parameter names with a layer index: (prefix, index, rest)
_LAYERED = re.compile(r"^(visual_encoder\.blocks|text_encoder\.layers|text_decoder\.layers)\.(\d+)\.(.+)$")


# the student parts of DistillConfig.init_parts, by parameter name prefix
PART_PREFIXES = {"vision": ("visual_encoder.", "vision_proj."),
                 "text": ("text_encoder.", "text_proj.", "itm_head."),
                 "decoder": ("text_decoder.",)}


def part_of(name: str) -> str | None:
    """The INIT_PARTS part a student parameter belongs to, or None (the ITC temperature)."""
    return next((part for part, prefixes in PART_PREFIXES.items() if name.startswith(prefixes)), None)


def init_student_from(student: BlipMED, teachers: Sequence[Teacher], init: str,
                      parts: Sequence[str] = INIT_PARTS) -> list[str]:
    """``init_student`` with several teachers: each parameter comes from the first teacher, in the order given,
    that holds trained weights for it (``Teacher.holds_param``); one that no teacher holds keeps its fresh
    initialisation. Returns the names copied."""
    if init not in ("teacher", "select"):
        return init_student(student, teachers[0].model, init, parts)
    check_init_parts(init, list(parts))
    copied: list[str] = []
    for i, t in enumerate(teachers):
        def first_holder(name: str, i: int = i) -> bool:
            return next((j for j, e in enumerate(teachers) if e.holds_param(name)), None) == i

        copied += _copy_from_teacher(student, t.model, init, parts, first_holder)
    _check_layers_copied(copied, init)
    return copied


def init_student(student: BlipMED, teacher: BlipMED, init: str,
                 parts: Sequence[str] = INIT_PARTS) -> list[str]:
    """Initialises ``student`` in place; returns the names of the parameters (and buffers) that were copied.

    - ``random``: keep the fresh initialisation;
    - ``teacher``: DistilBERT-style: student layer i <- teacher layer ``every_kth_teacher_layers`` [i] of the same
      stack, and embeddings, norms and heads, wherever the shapes match (a narrower student copies nothing there);
    - ``select``: weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024): the same layer
      choice, and every tensor of a narrower student takes the leading slice of the teacher's along each axis (the
      first channels, heads and MLP units, the same channels in every layer, so the residual stream stays
      consistent). A fixed sine-cosine position table is kept as the student's own (a slice of the teacher's
      would keep only its row half);
    - any other value: a run folder (or checkpoint file) whose model has the student's shape.

    With "teacher" / "select", ``parts`` limits the copy to those parts (``PART_PREFIXES``); the others keep their
    fresh initialisation, and tensors of no part (the ITC temperature) are copied only when every part is.
    """
    check_init_parts(init, list(parts))
    if init == "random":
        return []
    if init not in ("teacher", "select"):
        p = Path(init)
        ckpt = RunFolder(p).checkpoint_path if p.is_dir() else p
        state = load_checkpoint(ckpt)["model"]
        student.load_state_dict(state)
        return list(state)
    copied = _copy_from_teacher(student, teacher, init, parts, lambda name: True)
    _check_layers_copied(copied, init)
    return copied


def _copy_from_teacher(student: BlipMED, teacher: BlipMED, init: str, parts: Sequence[str],
                       take: Callable[[str], bool]) -> list[str]:
    """``init_student``'s "teacher" / "select" copy, limited to the parameter names ``take`` accepts."""
    s_cfg, t_cfg = student.cfg, teacher.cfg
    layer_src = {
        "visual_encoder.blocks": every_kth_teacher_layers(s_cfg.vision.num_layers, t_cfg.vision.num_layers),
        "text_encoder.layers": every_kth_teacher_layers(s_cfg.text.num_layers, t_cfg.text.num_layers),
        "text_decoder.layers": every_kth_teacher_layers(s_cfg.decoder.num_layers, t_cfg.decoder.num_layers),
    }
    keep_own = {"visual_encoder.pos_embed"} if init == "select" and s_cfg.vision.pos_embed_init == "sincos" else set()
    teacher_state = teacher.state_dict()
    every_part = set(parts) == set(INIT_PARTS)
    copied = []
    with torch.no_grad():
        for name, param in student.state_dict().items():
            part = part_of(name)
            if not (every_part or part in parts) or not take(name):
                continue
            m = _LAYERED.match(name)
            src = f"{m[1]}.{layer_src[m[1]][int(m[2])]}.{m[3]}" if m else name
            if src not in teacher_state or name in keep_own:
                continue
            t = teacher_state[src]
            if t.shape == param.shape:
                param.copy_(t)
            elif init == "select" and t.dim() == param.dim() and all(a <= b for a, b in zip(param.shape, t.shape)):
                param.copy_(t[tuple(slice(0, n) for n in param.shape)])
            else:
                continue
            copied.append(name)
    return copied


def _check_layers_copied(copied: list[str], init: str) -> None:
    if not any(_LAYERED.match(name) for name in copied):
        raise ValueError(f"init '{init}': no student layer parameter matches a teacher parameter's shape "
                         "(a narrower student cannot start from teacher layers with 'teacher'; use 'select' or "
                         "'random')")
