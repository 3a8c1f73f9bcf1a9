"""The int8 table: a bundle's dynamic-quantised graphs scored on the test split next to its fp32 graphs (two
``dlip eval-bundle --out`` JSONs, the second with ``--int8``), the difference per headline metric, and whether each
is within ``TOLERANCE`` points."""

from __future__ import annotations

from pathlib import Path

from .robustness import EXACT_SET, METRICS, check_same_evaluation, read_eval_metrics

TOLERANCE = 1.0  # points; CIDEr (x100) as well, the strictest reading


def read_pair(fp32_path: str | Path, int8_path: str | Path) -> tuple[dict, dict]:
    """Both JSONs, checked to be the same bundle and protocol at the two precisions."""
    fp32, int8 = read_eval_metrics(fp32_path), read_eval_metrics(int8_path)
    for path, m, want in ((fp32_path, fp32, "fp32"), (int8_path, int8, "int8")):
        if m.get("precision") != want:
            raise ValueError(f"{path}: scored with {m.get('precision', 'unrecorded')} graphs, expected {want} "
                             f"(`dlip eval-bundle{' --int8' if want == 'int8' else ''} ... --out`)")
    check_same_evaluation(fp32, int8, f"{fp32_path} and {int8_path}")
    return fp32, int8


def graph_megabytes(bundle: Path, manifest: dict) -> tuple[float, float]:
    """Total size of the fp32 and of the int8 graph files of a bundle, in MB."""
    fp32 = sum((bundle / g["file"]).stat().st_size for g in manifest["graphs"].values())
    int8 = sum((bundle / g["int8"]["file"]).stat().st_size for g in manifest["graphs"].values() if "int8" in g)
    return fp32 / 1e6, int8 / 1e6


def int8_markdown(fp32: dict, int8: dict, machine: str, sizes: tuple[float, float] | None = None) -> str:
    lines = ["| metric | fp32 | int8 | int8 - fp32 | within 1 point |", "|---|---|---|---|---|"]
    # caption exact set too where both evaluations graded the captions (Shapes data with scene graphs)
    metrics = METRICS + ((EXACT_SET,) if all(EXACT_SET[1] in m["headline"] for m in (fp32, int8)) else ())
    for label, key in metrics:
        f, q = fp32["headline"][key], int8["headline"][key]
        lines.append(f"| {label} | {f:.2f} | {q:.2f} | {q - f:+.2f} | "
                     f"{'yes' if abs(q - f) <= TOLERANCE else 'NO'} |")
    s = fp32.get("settings", {})
    within = all(abs(int8["headline"][k] - fp32["headline"][k]) <= TOLERANCE for _, k in metrics)
    lines += ["", f"Bundle `{fp32.get('bundle')}`, both precisions scored by `dlip eval-bundle` (onnxruntime, CPU) on "
              f"{s.get('limit_images') or 'all'} test images and {s.get('limit_questions') or 'all'} questions "
              f"(ITC top-{s.get('k')} + ITM, beam-{s.get('num_beams')} captions, generated answers)."
              + (f" Graphs: {sizes[0]:.1f} MB fp32, {sizes[1]:.1f} MB int8." if sizes else "")
              + f" Every metric within {TOLERANCE:g} point: {'yes' if within else 'no'}. Machine: {machine}."]
    return "\n".join(lines)
