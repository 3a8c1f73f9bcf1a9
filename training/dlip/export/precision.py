"""Large graphs and float16 (FORMAT.md, "Large graphs and precision variants").

- External data: protobuf cannot serialise a model past 2 GB, so a graph whose weights pass
  ``EXTERNAL_DATA_BYTES`` is saved with all its tensors in one file beside it, ``NAME.onnx.data`` (ONNX's external
  data format); onnxruntime reads it when the graph is loaded from its path. The threshold is a parameter so that
  tests can force the path on a tiny model.
- float16: ``convert_fp16`` converts a graph with onnxruntime's float16 converter, inputs and outputs kept float32
  (``keep_io_types``) and the ops that lose range or precision in float16 kept in float32 (``FP16_KEEP_FP32``).
"""

from __future__ import annotations

from pathlib import Path

import onnx

# Under protobuf's 2 GiB hard limit with room for the graph's nodes and names.
EXTERNAL_DATA_BYTES = 1_800_000_000

# Kept in float32 by the fp16 conversion: onnxruntime's DEFAULT_OP_BLOCK_LIST (ops without float16 kernels, Resize,
# TopK, Range, CumSum, Min, Max) plus LayerNormalization (its variance overflows float16: efficientvit#142) and
# Softmax (sums of exponentials; the attention masks' large negatives), and Erf (exact GELU: onnxruntime's CPU
# provider has no float16 kernel, so the graph would not run there for the accuracy measurement).
FP16_EXTRA_FP32_OPS = ("LayerNormalization", "Softmax", "Erf")


def fp16_keep_fp32() -> list[str]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    return sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_EXTRA_FP32_OPS))


def external_data_file(path: str | Path) -> Path | None:
    """The external data file a graph's tensors are stored in (one, beside it), or None when they are inline."""
    model = onnx.load(str(path), load_external_data=False)
    locations = {entry.value for t in _tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL
                 for entry in t.external_data if entry.key == "location"}
    if not locations:
        return None
    if len(locations) > 1:
        raise ValueError(f"{path}: tensors in {len(locations)} external files, expected one ({sorted(locations)[:3]})")
    (location,) = locations
    return Path(path).parent / location


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the graph's tensors (initializers and constants) as loaded."""
    return sum(len(t.raw_data) if t.raw_data else t.ByteSize() for t in _tensors(model))


def save_graph(model: onnx.ModelProto, path: str | Path, external_data_above: int) -> Path | None:
    """Saves ``model`` to ``path``; its tensors go to ``path.data`` when they pass ``external_data_above`` bytes.
    Returns the external data file, or None."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)  # onnx appends to an existing external data file
    if weight_bytes(model) <= external_data_above:
        onnx.save_model(model, str(path))
        return None
    # Constant nodes stay inline: onnxruntime infers shapes from them
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
                    size_threshold=1024, convert_attribute=False)
    data.chmod(0o644)  # onnx creates it readable by its owner only; the server may run as another user
    return data


def convert_fp16(src: str | Path, dst: str | Path, external_data_above: int) -> Path:
    """Writes the float16 variant of graph ``src`` to ``dst`` (external data as ``save_graph`` decides)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    src, dst = Path(src), Path(dst)
    # the converter needs every value's type (shape inference); in memory that refuses models past 2 GB, so the
    # inference runs from the file (its external data beside it) and the converter is told it is done
    inferred = src.with_name(f".{src.name}.inferred")
    try:
        onnx.shape_inference.infer_shapes_path(str(src), str(inferred))
        model = onnx.load(str(inferred))
    finally:
        inferred.unlink(missing_ok=True)
    large = weight_bytes(model) > external_data_above
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=fp16_keep_fp32(),
                                    disable_shape_infer=True)
    OnnxModel(half).topological_sort()  # the converter appends the input casts last; ONNX wants nodes in order
    save_graph(half, dst, external_data_above // 2 if large else external_data_above)
    return Path(dst)


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initializers and Constant-node tensors, subgraphs included."""
    from onnx.external_data_helper import _get_all_tensors

    return list(_get_all_tensors(model))
