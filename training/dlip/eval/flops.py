"""Model cost: parameter counts and FLOPs, measured with ``torch.utils.flop_counter.FlopCounterMode``.

FLOPs follow FlopCounterMode's convention: a matmul of (m, k) by (k, n) costs 2*m*k*n (one multiply and one add per
term); only matmul-like ops (mm, addmm, bmm, convolutions, scaled-dot-product attention) are counted, so softmax,
LayerNorm, GELU and bias adds cost nothing. That is the convention of the FLOP numbers papers compare.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.flop_counter import FlopCounterMode

OUTSIDE_CHILDREN = "_root"  # key of flops_by_module for FLOPs spent in the root module's own code


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of calling ``fn(*args, **kwargs)`` once (forward only unless ``fn`` itself runs a backward pass).

    Runs ``fn`` for real, so call it under ``torch.no_grad()`` (or pass a function that does) to skip autograd work.
    """
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def flops_by_module(module: nn.Module, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, int]:
    """FLOPs of ``fn(*args, **kwargs)`` split by ``module``'s top-level children, e.g. ``{"vision": ..., "text": ...}``.

    Keys are the children's attribute names in definition order, then ``"_root"`` for the FLOPs spent outside every
    child (the root's own matmuls, or code in ``fn`` itself); the values sum to ``count_flops``. A child called from
    inside another child counts towards the outer one, so nothing is counted twice. Children are timed with forward
    hooks, so a backward pass inside ``fn`` lands in ``"_root"``.

    (FlopCounterMode's own ``get_flop_counts()`` keys modules by the name under which they were first *called*, which
    changes when ``fn`` calls a child directly; hooks keyed by attribute name do not.)
    """
    children = dict(module.named_children())
    per_child = {name: 0 for name in children}
    active: list[tuple[str, int]] = []  # (child name, total FLOPs when it was entered), outermost first
    counter = FlopCounterMode(display=False)

    def pre_hook(name: str):
        def hook(_mod, _inputs):
            active.append((name, counter.get_total_flops()))

        return hook

    def post_hook(name: str):
        def hook(_mod, _inputs, _output):
            entered_name, entered_at = active.pop()
            assert entered_name == name, f"forward hooks out of order: left {name} while in {entered_name}"
            if not active:  # outermost child only: nested calls are already inside its count
                per_child[name] += counter.get_total_flops() - entered_at

        return hook

    handles = []
    for name, child in children.items():
        handles.append(child.register_forward_pre_hook(pre_hook(name)))
        handles.append(child.register_forward_hook(post_hook(name)))
    try:
        with counter:
            fn(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    total = counter.get_total_flops()
    per_child[OUTSIDE_CHILDREN] = total - sum(per_child.values())
    assert per_child[OUTSIDE_CHILDREN] >= 0, per_child
    return per_child
