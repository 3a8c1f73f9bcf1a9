"""Dynamic int8 quantisation of a bundle's graphs that ship without int8 variants, with the exporter's settings
(dlip/export/export.py quantize_graph: MatMul/Gemm weights to QInt8, activations float32 at the boundary), so that
the benchmark can put int8 next to fp32 for any bundle. `python bench/quantize.py OUT_DIR GRAPH.onnx ...` writes
OUT_DIR/GRAPH.int8.onnx for each and prints their paths."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic


def main(out: Path, graphs: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint per graph
    for src in graphs:
        dst = out / f"{src.stem}.int8.onnx"
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        print(dst)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python bench/quantize.py OUT_DIR GRAPH.onnx ...")
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
