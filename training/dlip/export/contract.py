"""The bundle contract (FORMAT.md), read from ``contract.json`` and ``manifest.schema.json`` beside this module.

Those two files are the one place the contract lives; the server reads the same files (``src/bundle/contract.ts``,
``src/bundle/manifest.ts``). This module turns them into Python: the graph table as ``GraphSpec``s for a model's
dims (``graph_specs``), the decoder's cache names, file names and the opset. Shapes mix fixed sizes (ints: from the
contract or the model's dims) with symbolic names for dynamic axes (strings): ``B`` batch, ``L`` text tokens, ``Lq``
question tokens, ``T`` new decoder tokens, ``P`` cached decoder positions, ``P+T`` past and new positions, ``M``
encoder tokens the decoder attends to (``contract.json``'s ``axes``).

The exporter writes format 4 (a bundle holds the graphs of its tasks only, ``TASK_GRAPHS``); format 3 bundles
(every graph, every task, [ENC] first) are still read; ``format_problem`` says how to re-export a bundle of an
older format.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig

CONTRACT_PATH = Path(__file__).with_name("contract.json")
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
CONTRACT: dict[str, Any] = json.loads(CONTRACT_PATH.read_text())
MANIFEST_SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())

# 4: the graphs of the manifest's tasks only, tokenizer.fusion_first_token, external data and fp16 variants. 3: every
# graph; cross-attention keys/values from the cross_kv graph, per-row decoder positions. 1 (the answer decoder reads
# the question states) and 2 (model.vqa_decoder_reads_image) fed encoder_hidden to every decoder step: no longer read.
FORMAT_VERSIONS: tuple[int, ...] = tuple(MANIFEST_SCHEMA["properties"]["format_version"]["enum"])  # read
FORMAT_VERSION = max(FORMAT_VERSIONS)  # what the exporter writes
OLDER_FORMATS: tuple[int, ...] = (1, 2)  # refused with how to re-export (format_problem)
OPSET: int = CONTRACT["opset"]
MANIFEST_FILE: str = CONTRACT["files"]["manifest"]
TOKENIZER_FILE: str = CONTRACT["files"]["tokenizer"]
WEIGHTS_FILE: str = CONTRACT["files"]["weights"]  # the exported state dict (safetensors), for re-exports
MODEL_CONFIG_FILE: str = CONTRACT["files"]["model_config"]  # the resolved model config it belongs to
TASKS: list[str] = list(MANIFEST_SCHEMA["properties"]["tasks"]["items"]["enum"])

# the graph names code refers to; contract.json must hold exactly these, in this order
VISION, TEXT, ITM, VQA_ENCODER, CROSS_KV, DECODER = "vision", "text", "itm", "vqa_encoder", "cross_kv", "decoder"
GRAPHS = (VISION, TEXT, ITM, VQA_ENCODER, CROSS_KV, DECODER)
assert tuple(CONTRACT["graphs"]) == GRAPHS, f"{CONTRACT_PATH}: graphs {list(CONTRACT['graphs'])} != {GRAPHS}"
assert list(MANIFEST_SCHEMA["properties"]["graphs"]["properties"]) == list(GRAPHS), f"{SCHEMA_PATH}: graphs"

# the graphs each task needs, in GRAPHS order (a format 4 bundle holds exactly those of its tasks)
TASK_GRAPHS: dict[str, tuple[str, ...]] = {task: tuple(g for g in GRAPHS if g in graphs)
                                           for task, graphs in CONTRACT["tasks"].items()}
assert list(TASK_GRAPHS) == TASKS, f"{CONTRACT_PATH}: tasks {list(TASK_GRAPHS)} != the schema's {TASKS}"
assert all(set(CONTRACT["tasks"][t]) <= set(GRAPHS) for t in TASKS), f"{CONTRACT_PATH}: tasks name unknown graphs"
PRECISIONS = ("fp32", "int8", "fp16")  # graph file variants: graphs.G.file, graphs.G.int8, graphs.G.fp16

FLOAT32, INT64 = "float32", "int64"
Dim = int | str


def graph_file(graph: str, int8: bool = False, precision: str = "fp32") -> str:
    """``vision.onnx`` / ``vision.int8.onnx`` (``int8`` or ``precision="int8"``) / ``vision.fp16.onnx``."""
    precision = "int8" if int8 else precision
    assert precision in PRECISIONS, precision
    return CONTRACT["graphs"][graph]["file" if precision == "fp32" else f"{precision}_file"]


def graphs_for_tasks(tasks: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The graphs a bundle serving ``tasks`` holds, in ``GRAPHS`` order."""
    unknown = [t for t in tasks if t not in TASK_GRAPHS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} (known: {', '.join(TASKS)})")
    return tuple(g for g in GRAPHS if any(g in TASK_GRAPHS[t] for t in tasks))


@dataclass(frozen=True)
class ModelDims:
    """The fixed sizes a bundle's graphs are built with (the manifest's ``model`` section plus the image size); the
    field names are ``contract.json``'s dims."""

    image_size: int  # S: input side in pixels
    image_tokens: int  # N = 1 + (S / patch)^2
    vision_width: int  # Dv
    text_width: int  # Dt
    embed_dim: int  # E: ITC embedding size
    decoder_layers: int  # K
    decoder_heads: int  # H
    decoder_head_dim: int  # Dh
    vocab_size: int  # V

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> ModelDims:
        if cfg.text.hidden_size != cfg.vision.hidden_size:
            # the decoder cross-attends to image tokens (width Dv) for captions and to question states (Dt) for VQA
            raise ValueError(f"export needs text.hidden_size == vision.hidden_size (VQA feeds question states to "
                             f"the decoder's cross-attention), got {cfg.text.hidden_size} and {cfg.vision.hidden_size}")
        dec = cfg.decoder
        if dec.num_fusion_layers != dec.num_layers:
            # the contract has one cross-attention key/value pair per decoder layer (cross_kv -> decoder)
            raise ValueError(f"export needs cross-attention in every decoder layer, got {dec.num_fusion_layers} of "
                             f"{dec.num_layers} (decoder.fusion_layers)")
        return cls(image_size=cfg.vision.image_size, image_tokens=cfg.vision.num_patches + 1,
                   vision_width=cfg.vision.hidden_size, text_width=cfg.text.hidden_size, embed_dim=cfg.embed_dim,
                   decoder_layers=dec.num_layers, decoder_heads=dec.num_heads,
                   decoder_head_dim=dec.hidden_size // dec.num_heads, vocab_size=dec.vocab_size)

    def manifest_model(self) -> dict[str, int]:
        """The manifest's ``model`` section: the dims that ``contract.json`` places under ``model``, in its order
        (the image size lives under ``preprocessing``)."""
        return {name: getattr(self, name) for name, (section, _) in _DIM_PATHS.items() if section == "model"}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ModelDims:
        """Reads the dims back from a manifest, where ``contract.json``'s dims say they are."""
        return cls(**{name: manifest[section][key] for name, (section, key) in _DIM_PATHS.items()})


_DIM_PATHS: dict[str, tuple[str, str]] = {name: tuple(d["manifest"]) for name, d in CONTRACT["dims"].items()}
assert set(_DIM_PATHS) == {f.name for f in dataclasses.fields(ModelDims)}, f"{CONTRACT_PATH}: dims != ModelDims"
assert not set(_DIM_PATHS) & set(CONTRACT["axes"]), f"{CONTRACT_PATH}: a name is both a dim and an axis"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # "float32" | "int64"
    shape: tuple[Dim, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's ``dynamic_axes``: every symbolic dim of every input and output."""
        return {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
                for t in self.inputs + self.outputs}


def _resolve(entry: dict[str, Any], d: ModelDims, i: int | None = None) -> TensorSpec:
    """One tensor of ``contract.json`` for dims ``d``: dim names become sizes, axis names stay; ``{i}`` in a
    repeated tensor's name becomes the layer index."""
    def size(x: Dim) -> Dim:
        if isinstance(x, int) or x in CONTRACT["axes"]:
            return x
        if x in _DIM_PATHS:
            return getattr(d, x)
        raise ValueError(f"{CONTRACT_PATH}: {entry['name']}: {x!r} is neither a dim nor an axis")

    name = entry["name"] if i is None else entry["name"].format(i=i)
    return TensorSpec(name, entry["dtype"], tuple(size(x) for x in entry["shape"]))


def _tensors(entries: list[dict[str, Any]], d: ModelDims) -> tuple[TensorSpec, ...]:
    """A graph's inputs or outputs: plain entries, and ``repeat`` blocks (the decoder's per-layer cache) expanded
    once per index ``i`` below the named dim, their tensors in order for each ``i``."""
    out: list[TensorSpec] = []
    for e in entries:
        if "repeat" in e:
            out += [_resolve(t, d, i) for i in range(getattr(d, e["repeat"])) for t in e["tensors"]]
        else:
            out.append(_resolve(e, d))
    return tuple(out)


def graph_specs(d: ModelDims) -> dict[str, GraphSpec]:
    """Every graph of ``contract.json`` for a model of dims ``d``."""
    return {name: GraphSpec(name, _tensors(g["inputs"], d), _tensors(g["outputs"], d))
            for name, g in CONTRACT["graphs"].items()}


def _cache_names(cache: str, layers: int) -> list[str]:
    side = "outputs" if cache == "present" else "inputs"
    (block,) = [e for e in CONTRACT["graphs"][DECODER][side] if e.get("cache") == cache]
    return [t["name"].format(i=i) for i in range(layers) for t in block["tensors"]]


def past_names(layers: int) -> list[str]:
    """Decoder cache inputs in order: past_key_0, past_value_0, past_key_1, ..."""
    return _cache_names("past", layers)


def present_names(layers: int) -> list[str]:
    """Decoder cache outputs in order (the next step's past): present_key_0, present_value_0, ..."""
    return _cache_names("present", layers)


def cross_names(layers: int) -> list[str]:
    """The cross-attention keys and values in order, cross_kv's outputs and the decoder's inputs after the past:
    cross_key_0, cross_value_0, cross_key_1, ..."""
    return _cache_names("cross", layers)


_CROSS_OUT = [e for e in CONTRACT["graphs"][CROSS_KV]["outputs"] if e.get("cache") == "cross"]
assert len(_CROSS_OUT) == 1 and _CROSS_OUT[0]["tensors"] == next(
    e for e in CONTRACT["graphs"][DECODER]["inputs"] if e.get("cache") == "cross")["tensors"], \
    f"{CONTRACT_PATH}: cross_kv's outputs must be the decoder's cross inputs"


def format_problem(manifest: Any, bundle: str | Path = "BUNDLE") -> str | None:
    """Why a manifest of an older bundle format cannot be read, with the commands that write it again as format
    ``FORMAT_VERSION``, or None (other values are the schema's to refuse)."""
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in OLDER_FORMATS:
        return None
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    again = f"python -m dlip export {bundle} --out {bundle} --overwrite"
    if "weights" in manifest:
        how = f"`{again}`"
    elif source.get("random_init"):
        how = (f"`python -m dlip export --random-init --preset {source.get('preset')} --seed {source.get('seed')} "
               f"--out {bundle} --overwrite`")
    else:
        how = f"`python -m dlip recover-weights {bundle}` then `{again}`"
        if source.get("run"):
            how += f", or `python -m dlip export {source['run']} --out {bundle} --overwrite` from its run folder"
    return (f"bundle format {version} is no longer read (format {FORMAT_VERSION}: the decoder takes cross-attention "
            f"keys/values from cross_kv and per-row position_ids); re-export it: {how}")


def contract_problem(manifest: dict[str, Any]) -> str | None:
    """The first way a schema-valid manifest's graph entries differ from the contract for its own dims, or None;
    what ``manifest.schema.json`` cannot say (``src/bundle/contract.ts`` checks the same)."""
    problem = format_problem(manifest)
    if problem:
        return problem
    model = manifest["model"]
    if model["text_width"] != model["vision_width"]:
        return (f"model.text_width ({model['text_width']}) must equal model.vision_width ({model['vision_width']}): "
                f"the decoder reads both")
    if manifest["format_version"] >= 4:
        want, have = graphs_for_tasks(manifest["tasks"]), tuple(g for g in GRAPHS if g in manifest["graphs"])
        if have != want:
            return (f"graphs are {', '.join(have)}; tasks {', '.join(manifest['tasks'])} need exactly "
                    f"{', '.join(want)} (contract.json's tasks)")
    specs = graph_specs(ModelDims.from_manifest(manifest))
    for graph in manifest["graphs"]:
        for key in ("inputs", "outputs"):
            got = manifest["graphs"][graph][key]
            expected = [t.to_json() for t in getattr(specs[graph], key)]
            if got != expected:
                return f"graphs.{graph}.{key} differ from the contract: {got} != {expected}"
    return None
