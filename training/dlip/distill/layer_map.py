"""Student-to-teacher layer mappings, resolved from config data.

A mapping is a list of pairs ``(i, j)``: student layer ``i`` is distilled from teacher layer ``j``. Layers are
numbered like ``hidden_states`` tuples: 0 is the embedding output, ``k`` (1-based) the output of layer ``k``. The
attention map of layer ``k`` is ``attentions[k - 1]``. For cross-attention maps, which exist only in the last
``num_fusion_layers`` layers, resolve the mapping over the fusion layers alone (``n_student`` / ``n_teacher`` = the
fusion layer counts) so that ``k`` indexes ``cross_attentions[k - 1]``.

Config forms of ``spec``:
- ``"uniform"``: student layer i <- teacher layer round(i * n_teacher / n_student), i = 1..n_student (TinyBERT);
- ``"last"`` / ``"last-k"``: the last k student layers <- the last k teacher layers, in order
  (k defaults to min(n_student, n_teacher));
- an explicit list of ``[i, j]`` pairs, each in 1..n_student / 1..n_teacher.
"""

from __future__ import annotations

import math
import re
from typing import Any

LayerPairs = list[tuple[int, int]]

_LAST_RE = re.compile(r"last(?:-(\d+))?")


def _round_half_up(x: float) -> int:
    # Python's round() rounds halves to even, which would make "uniform" skip layers unevenly
    return math.floor(x + 0.5)


def _check_counts(n_student: int, n_teacher: int) -> None:
    for name, n in (("n_student", n_student), ("n_teacher", n_teacher)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")


def _uniform(n_student: int, n_teacher: int) -> LayerPairs:
    # max(1, ...): a student deeper than twice its teacher would otherwise map its first layer to the embeddings
    return [(i, max(1, _round_half_up(i * n_teacher / n_student))) for i in range(1, n_student + 1)]


def _last(spec: str, n_student: int, n_teacher: int) -> LayerPairs:
    match = _LAST_RE.fullmatch(spec)
    if match is None:
        raise ValueError(f"unknown layer map {spec!r}: expected 'uniform', 'last', 'last-k' or a list of [i, j] pairs")
    k = int(match.group(1)) if match.group(1) is not None else min(n_student, n_teacher)
    if not 1 <= k <= min(n_student, n_teacher):
        raise ValueError(f"layer map {spec!r}: k={k} must be in 1..{min(n_student, n_teacher)} "
                         f"for {n_student} student and {n_teacher} teacher layers")
    return [(n_student - k + m, n_teacher - k + m) for m in range(1, k + 1)]


def _explicit(spec: list | tuple, n_student: int, n_teacher: int) -> LayerPairs:
    if len(spec) == 0:
        raise ValueError("layer map is an empty list: give at least one [student_layer, teacher_layer] pair")
    pairs = []
    for pair in spec:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"layer map pair {pair!r} is not a [student_layer, teacher_layer] pair")
        i, j = pair
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (i, j)):
            raise ValueError(f"layer map pair {list(pair)!r}: layer numbers must be ints")
        if not (1 <= i <= n_student and 1 <= j <= n_teacher):
            raise ValueError(f"layer map pair {list(pair)!r} out of range: student layer in 1..{n_student}, "
                             f"teacher layer in 1..{n_teacher} (use include_embeddings for layer 0)")
        pairs.append((i, j))
    return pairs


def resolve_layer_map(spec: Any, n_student: int, n_teacher: int, include_embeddings: bool = False) -> LayerPairs:
    """Resolves ``spec`` (see the module docstring) to a list of (student_layer, teacher_layer) pairs, 1-based.

    ``include_embeddings`` prepends (0, 0): the embedding outputs, for hidden-state distillation only (embeddings
    have no attention map). Raises ``ValueError`` naming the bad spec or pair.
    """
    _check_counts(n_student, n_teacher)
    if spec == "uniform":
        pairs = _uniform(n_student, n_teacher)
    elif isinstance(spec, str):
        pairs = _last(spec, n_student, n_teacher)
    elif isinstance(spec, (list, tuple)):
        pairs = _explicit(spec, n_student, n_teacher)
    else:
        raise ValueError(f"layer map {spec!r} must be 'uniform', 'last', 'last-k' or a list of [i, j] pairs")
    return [(0, 0)] + pairs if include_embeddings else pairs


def every_kth_teacher_layers(n_student: int, n_teacher: int) -> list[int]:
    """Which teacher layer (0-based) initialises each student layer, DistilBERT-style.

    Evenly spaced and always keeping the teacher's last layer: student layer k (0-based) <- teacher layer
    round((k + 1) * n_teacher / n_student) - 1, e.g. 2 of 4 -> [1, 3], 3 of 12 -> [3, 7, 11].
    """
    _check_counts(n_student, n_teacher)
    if n_student > n_teacher:
        raise ValueError(f"cannot initialise {n_student} student layers from {n_teacher} teacher layers "
                         "without repeating layers")
    return [_round_half_up((k + 1) * n_teacher / n_student) - 1 for k in range(n_student)]
