"""Writing a model bundle (FORMAT.md): each graph of the bundle's tasks through ``torch.onnx.export`` (TorchScript
exporter, opset 17, dynamic axes from the contract), checked with ``onnx.checker``, its weights moved to ONNX external
data where it would pass protobuf's 2 GB limit, optionally dynamic-quantised to int8 (MatMul/Gemm weights) and
converted to float16 (``precision.py``), then the tokenizer and ``manifest.json``, and finally the whole bundle
validated as the server will.

Entry points: ``export_run`` (a trained run folder), ``export_random`` (random weights, for test fixtures),
``export_bundle`` (a bundle's own weights) and ``hf.export_hf`` (a Hugging Face BLIP checkpoint as it is).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import onnx
import torch
from safetensors.torch import load_model, save_model
from tqdm import tqdm

from ..config import DataConfig, ModelConfig, TrainConfig, from_dict, model_preset, to_dict
from ..data.tokenizer import TextTokenizer, train_wordpiece
from ..data.transforms import ImagePreprocess
from ..model.med import BlipMED
from ..model.params import param_counts
from ..run_folder import RunFolder, load_run
from .contract import (CROSS_KV, DECODER, FORMAT_VERSION, ITM, MANIFEST_FILE, MODEL_CONFIG_FILE, OPSET, TASKS, TEXT,
                       TOKENIZER_FILE, VISION, VQA_ENCODER, WEIGHTS_FILE, ModelDims, graph_file, graph_specs,
                       graphs_for_tasks)
from .manifest import onnx_io, sha256_file, validate_bundle, write_manifest
from .precision import EXTERNAL_DATA_BYTES, convert_fp16, external_data_file, save_graph
from .wrappers import WRAPPERS

MAX_CAPTION_TOKENS = 20  # EvalSettings' default (BLIP's caption length limit) when the run has no metrics.json
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# --------------------------------------------------------------------------------------------------- graphs
def example_inputs(graph: str, dims: ModelDims, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs to trace ``graph`` with. Batch 2 and lengths > 1 so that no dynamic axis is traced at size 1 (where
    the tracer may specialise); the decoder gets a non-empty cache (P=3) whose second row is padded at its start
    (two real positions, so its new tokens sit at positions 2 and 3), and two new tokens."""
    g = torch.Generator().manual_seed(seed)
    b, n, v = 2, dims.image_tokens, dims.vocab_size

    def ids(length: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(7, v, (b, length), generator=g)
        mask = torch.ones(b, length, dtype=torch.long)
        mask[1, -1] = 0  # one padded position
        return x, mask

    embeds = torch.randn(b, n, dims.vision_width, generator=g)
    if graph == VISION:
        return (torch.randn(b, 3, dims.image_size, dims.image_size, generator=g),)
    if graph == TEXT:
        return ids(5)
    if graph in (ITM, VQA_ENCODER):
        return (embeds, *ids(5))
    if graph == CROSS_KV:
        return (embeds,)
    assert graph == DECODER, graph
    p, t = 3, 2
    heads, hd = dims.decoder_heads, dims.decoder_head_dim
    past = [torch.randn(b, heads, p, hd, generator=g) for _ in range(2 * dims.decoder_layers)]
    cross = [torch.randn(b, heads, n, hd, generator=g) for _ in range(2 * dims.decoder_layers)]
    mask = torch.ones(b, p + t, dtype=torch.long)
    mask[1, 0] = 0  # row 1: a padded cache position
    positions = (mask[:, :p].sum(dim=1, keepdim=True) + torch.arange(t)).long()  # each row after its real ones
    enc_mask = torch.ones(b, n, dtype=torch.long)
    enc_mask[1, -1] = 0
    return (torch.randint(7, v, (b, t), generator=g), positions, mask, enc_mask, *past, *cross)


def export_graph(model: BlipMED, graph: str, path: str | Path, dims: ModelDims | None = None,
                 external_data_above: int = EXTERNAL_DATA_BYTES) -> Path:
    """Exports one graph of ``model`` to ``path`` and checks it (onnx.checker, inputs/outputs vs the contract). A
    graph whose weights pass ``external_data_above`` bytes keeps them in ``external_data_file(path)`` beside it."""
    dims = dims or ModelDims.from_config(model.cfg)
    spec = graph_specs(dims)[graph]
    wrapper = WRAPPERS[graph](model).eval()
    # traced into a folder of its own: past 2 GB the TorchScript exporter writes one external file per tensor there
    with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=f".{graph}.") as tmp:
        traced = Path(tmp) / Path(path).name
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape asserts and python ints: parity tests check
            torch.onnx.export(wrapper, example_inputs(graph, dims), str(traced), input_names=spec.input_names,
                              output_names=spec.output_names, dynamic_axes=spec.dynamic_axes(), opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(traced))  # external tensors, if any, read in
    stamp_io_shapes(proto, graph, dims)
    save_graph(proto, path, external_data_above)
    check_graph_file(path, graph, dims)
    return Path(path)


def stamp_io_shapes(model: onnx.ModelProto, graph: str, dims: ModelDims) -> None:
    """Writes the contract's shapes onto the graph's inputs and outputs. The TorchScript exporter leaves fixed output
    sizes it could not infer as generated names (``LayerNormalizationimage_embeds_dim_1``); the sizes are known,
    and the parity tests check that the graph really produces them."""
    spec = graph_specs(dims)[graph]
    for values, specs in ((model.graph.input, spec.inputs), (model.graph.output, spec.outputs)):
        by_name = {v.name: v for v in values}
        for t in specs:
            dims_proto = by_name[t.name].type.tensor_type.shape.dim
            assert len(dims_proto) == len(t.shape), (graph, t.name, len(dims_proto), t.shape)
            for d, want in zip(dims_proto, t.shape):
                if isinstance(want, str):
                    d.dim_param = want
                else:
                    d.dim_value = want


def quantize_graph(src: str | Path, dst: str | Path, graph: str, dims: ModelDims) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (activations stay float32 at the graph boundary)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint per graph on the root logger
    try:
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                         use_external_data_format=external_data_file(src) is not None)
    finally:
        root.setLevel(level)
    check_graph_file(dst, graph, dims)
    return Path(dst)


def check_graph_file(path: str | Path, graph: str, dims: ModelDims) -> None:
    """onnx.checker plus exact inputs/outputs (names, dtypes, shapes) against the contract."""
    onnx.checker.check_model(str(path))  # by path: external data is checked where it lies, past 2 GB too
    spec = graph_specs(dims)[graph]
    inputs, outputs = onnx_io(path)
    if inputs != [t.to_json() for t in spec.inputs] or outputs != [t.to_json() for t in spec.outputs]:
        raise ValueError(f"{path}: exported inputs/outputs differ from the contract of '{graph}': "
                         f"{inputs} -> {outputs}")


# --------------------------------------------------------------------------------------------------- bundle
def write_bundle(model: BlipMED, tokenizer: TextTokenizer, out: str | Path, *, name: str | None = None,
                 version: str = "1", source: dict[str, Any], metrics: dict[str, Any], max_text_tokens: int,
                 max_answer_tokens: int, max_caption_tokens: int = MAX_CAPTION_TOKENS, int8: bool = False,
                 fp16: bool = False, weights: bool = True, overwrite: bool = False, progress: bool = True,
                 tasks: tuple[str, ...] | list[str] = tuple(TASKS), fusion_first_token: str = "enc",
                 preprocessing: dict[str, Any] | None = None, external_data_above: int = EXTERNAL_DATA_BYTES,
                 check: Callable[[Path], dict[str, Any]] | None = None, params: dict[str, int] | None = None) -> Path:
    """Writes every file of a bundle into ``out`` and validates the result; returns ``out``. ``weights``: the bundle
    carries the model's weights and config too (``weights.safetensors``, ``model.json``), so that ``export_bundle``
    can write it again without the run folder. ``tasks``: what the bundle serves (only their graphs are written);
    ``fusion_first_token``: the manifest's (``"enc"`` or ``"cls"``); ``preprocessing``: the manifest's section
    (default: the model's image size with BLIP's settings). ``check``, given the written bundle (not yet in place),
    raises to refuse it or returns the manifest's ``parity``. ``params``: the manifest's (default: the model's
    ``param_counts``)."""
    out = Path(out)
    name = name or out.name
    if not _NAME.fullmatch(name):
        raise ValueError(f"bundle name {name!r}: use 1-64 letters, digits, '.', '_', '-' (a label, not a path)")
    _check_target(out, overwrite)
    tmp = out.parent / f".{out.name}.partial"  # written aside, then moved: a failed export leaves no half bundle
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = _write_files(model.eval(), tokenizer, tmp, name=name, version=version, source=source,
                                metrics=metrics, max_text_tokens=max_text_tokens, max_answer_tokens=max_answer_tokens,
                                max_caption_tokens=max_caption_tokens, int8=int8, fp16=fp16, weights=weights,
                                progress=progress, tasks=tuple(tasks), fusion_first_token=fusion_first_token,
                                preprocessing=preprocessing, external_data_above=external_data_above,
                                params=params or param_counts(model))
        if check is not None:
            manifest["parity"] = check(tmp)
            write_manifest(tmp, manifest)
            validate_bundle(tmp, check_graphs=False)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_files(model: BlipMED, tokenizer: TextTokenizer, out: Path, *, name: str, version: str,
                 source: dict[str, Any], metrics: dict[str, Any], max_text_tokens: int, max_answer_tokens: int,
                 max_caption_tokens: int, int8: bool, fp16: bool, weights: bool, progress: bool, tasks: tuple[str, ...],
                 fusion_first_token: str, preprocessing: dict[str, Any] | None, external_data_above: int,
                 params: dict[str, int]) -> dict[str, Any]:
    dims = ModelDims.from_config(model.cfg)
    if tokenizer.vocab_size != dims.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is {dims.vocab_size}")
    tokenizer.save(out / TOKENIZER_FILE)
    if weights:
        save_model(model, str(out / WEIGHTS_FILE))  # tied parameters stored once
        (out / MODEL_CONFIG_FILE).write_text(json.dumps(to_dict(model.cfg), indent=2) + "\n")
    specs = graph_specs(dims)
    graphs: dict[str, Any] = {}
    for graph in tqdm(graphs_for_tasks(tasks), desc="export graphs", disable=not progress, leave=False):
        export_graph(model, graph, out / graph_file(graph), dims, external_data_above)
        graphs[graph] = {**_variant_entry(out, graph, "fp32"),
                         "inputs": [t.to_json() for t in specs[graph].inputs],
                         "outputs": [t.to_json() for t in specs[graph].outputs]}
        if int8:
            quantize_graph(out / graph_file(graph), out / graph_file(graph, int8=True), graph, dims)
            graphs[graph]["int8"] = _variant_entry(out, graph, "int8")
        if fp16:
            convert_fp16(out / graph_file(graph), out / graph_file(graph, precision="fp16"), external_data_above)
            check_graph_file(out / graph_file(graph, precision="fp16"), graph, dims)
            graphs[graph]["fp16"] = _variant_entry(out, graph, "fp16")
    sp = tokenizer.special
    reads_image = model.cfg.vqa_decoder_reads_image
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "source": source,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "preprocessing": preprocessing or preprocessing_section(ImagePreprocess(dims.image_size)),
        "tokenizer": {"file": TOKENIZER_FILE, "lowercase": lowercases(tokenizer),
                      "special_tokens": {"pad": sp.pad, "unk": sp.unk, "cls": sp.cls, "sep": sp.sep, "mask": sp.mask,
                                         "enc": sp.enc, "dec": sp.dec},
                      "max_text_tokens": max_text_tokens, "max_answer_tokens": max_answer_tokens,
                      "max_caption_tokens": max_caption_tokens, "fusion_first_token": fusion_first_token},
        "model": {**dims.manifest_model(), "vqa_decoder_reads_image": bool(reads_image)},
        "graphs": graphs,
        "files": {},
        **({"weights": {"file": WEIGHTS_FILE, "config": MODEL_CONFIG_FILE}} if weights else {}),
        "params": params,
        "metrics": metrics,
        "tasks": [t for t in TASKS if t in tasks],
    }
    write_manifest(out, manifest)
    validate_bundle(out)
    return manifest


def lowercases(tokenizer: TextTokenizer) -> bool:
    """Whether the tokenizer's normalizer lowercases (a BERT normalizer's flag, or a Lowercase step): the manifest's
    ``tokenizer.lowercase`` (an uncased BLIP checkpoint's does; a cased one's would not)."""
    def lower(n: dict[str, Any] | None) -> bool:
        if not n:
            return False
        if n.get("type") == "Sequence":
            return any(lower(x) for x in n.get("normalizers", []))
        return n.get("type") == "Lowercase" or (n.get("type") == "BertNormalizer" and bool(n.get("lowercase")))

    return lower(json.loads(tokenizer.tokenizer.to_str()).get("normalizer"))


def _variant_entry(out: Path, graph: str, precision: str) -> dict[str, Any]:
    """A graph file's manifest entry (its checksum filled in by ``write_manifest``), naming its external data."""
    file = graph_file(graph, precision=precision)
    data = external_data_file(out / file)
    if data:
        data.chmod(0o644)  # onnx and the quantiser create it readable by its owner only
    return {"file": file, "sha256": None, **({"external_data": data.name} if data else {})}


def preprocessing_section(pre: ImagePreprocess) -> dict[str, Any]:
    """The manifest's ``preprocessing``: ``ImagePreprocess.to_dict`` with ``size`` spelled ``image_size``, plus the
    tensor layout and scaling the server must reproduce."""
    d = pre.to_dict()
    return {"image_size": d.pop("size"), **d, "layout": "NCHW", "scale": "1/255"}



def _check_target(out: Path, overwrite: bool) -> None:
    """An existing ``out`` may be replaced only with ``overwrite`` and only when it is a bundle (or empty)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ValueError(f"{out} exists and is not empty (pass --overwrite to replace a bundle)")
        if not (out / MANIFEST_FILE).is_file():
            raise ValueError(f"{out}: refusing to overwrite a folder that is not a model bundle (no {MANIFEST_FILE})")


# --------------------------------------------------------------------------------------------------- sources
def run_metrics(run: Path) -> dict[str, Any]:
    """The manifest's ``metrics`` from ``RUN/metrics.json``: its headline numbers plus the full summary under
    ``summary``; ``{}`` when the run was not evaluated or was evaluated before its last checkpoint was written."""
    path, ckpt = RunFolder(run).metrics_path, RunFolder(run).checkpoint_path
    if not path.is_file():
        return {}
    if ckpt.is_file() and path.stat().st_mtime < ckpt.stat().st_mtime:
        warnings.warn(f"{path} is older than {ckpt}: not copied into the manifest (rerun `python -m dlip eval`)",
                      stacklevel=2)
        return {}
    try:
        full = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    return {**full.get("headline", {}), "summary": full}


def export_run(run: str | Path, out: str | Path, name: str | None = None, version: str = "1", int8: bool = False,
               overwrite: bool = False, progress: bool = True, fp16: bool = False,
               external_data_above: int = EXTERNAL_DATA_BYTES) -> Path:
    """Exports a trained run folder (``python -m dlip export RUN --out DIR``)."""
    loaded = load_run(run)
    metrics = run_metrics(loaded.path)
    settings = metrics.get("summary", {}).get("settings", {})
    data = loaded.config.data
    source = {"run": str(loaded.path.resolve()), "checkpoint_sha256": sha256_file(loaded.run.checkpoint_path),
              "random_init": False, "preset": loaded.config.preset}
    return write_bundle(loaded.model, loaded.tokenizer, out, name=name, version=version, source=source,
                        metrics=metrics, max_text_tokens=data.max_text_tokens, max_answer_tokens=data.max_answer_tokens,
                        max_caption_tokens=settings.get("max_caption_tokens", MAX_CAPTION_TOKENS), int8=int8,
                        fp16=fp16, overwrite=overwrite, progress=progress, external_data_above=external_data_above)


def export_random(preset: str, out: str | Path, data_root: str | Path | None = None, seed: int = 0,
                  vocab_size: int = 300, name: str | None = None, version: str = "1", int8: bool = False,
                  overwrite: bool = False, progress: bool = True, fp16: bool = False,
                  external_data_above: int = EXTERNAL_DATA_BYTES) -> Path:
    """Exports a randomly initialised ``preset`` (test fixtures). The tokenizer is trained on the training text of
    ``data_root`` (Shapes layout) or, without it, on a tiny built-in corpus of Shapes-like sentences."""
    if data_root is not None:
        from ..train.trainer import build_tokenizer

        tokenizer = build_tokenizer(TrainConfig(data=DataConfig(image_root=str(data_root), vocab_size=vocab_size)))
    else:
        tokenizer = TextTokenizer(train_wordpiece(builtin_corpus(), vocab_size=vocab_size))
    torch.manual_seed(seed)
    model = BlipMED(model_preset(preset).with_vocab(tokenizer.vocab_size, tokenizer.special.pad)).eval()
    data = DataConfig()
    source = {"run": None, "checkpoint_sha256": None, "random_init": True, "preset": preset, "seed": seed}
    # no weights file: the source (preset, seed, tokenizer corpus) re-creates them, and the micro fixture stays small
    return write_bundle(model, tokenizer, out, name=name or f"{preset}-random", version=version, source=source,
                        metrics={}, max_text_tokens=data.max_text_tokens, max_answer_tokens=data.max_answer_tokens,
                        int8=int8, fp16=fp16, weights=False, overwrite=overwrite, progress=progress,
                        external_data_above=external_data_above)


def export_bundle(bundle: str | Path, out: str | Path, name: str | None = None, version: str | None = None,
                  int8: bool | None = None, overwrite: bool = False, progress: bool = True, fp16: bool | None = None,
                  external_data_above: int = EXTERNAL_DATA_BYTES) -> Path:
    """Writes a bundle again from the weights it carries (``python -m dlip export BUNDLE --out DIR``): with this
    exporter's bundle format and graphs, the same tokenizer, token limits, tasks, metrics and provenance (``source``
    gains the bundle it came from). ``name``, ``version``, ``int8`` and ``fp16`` default to the source bundle's.
    ``out`` may be the source bundle itself (with ``overwrite``): everything is read before the new bundle replaces
    it."""
    bundle = Path(bundle)
    manifest = validate_bundle(bundle, older_formats=True)  # the checksums cover the weights and their config
    if "weights" not in manifest:
        src = manifest["source"]
        how = (f"--random-init --preset {src.get('preset')} --seed {src.get('seed')}" if src.get("random_init")
               else f"its Hugging Face checkpoint ({src['hf_checkpoint']})" if src.get("hf_checkpoint")
               else f"its run folder ({src.get('run')})")
        raise ValueError(f"{bundle}: carries no weights to export from (random weights, or exported before bundles "
                         f"carried them); export it from {how} instead, or first give it its weights with "
                         f"`python -m dlip recover-weights {bundle}`")
    config_path = bundle / manifest["weights"]["config"]
    try:
        cfg = from_dict(ModelConfig, json.loads(config_path.read_text()), where=str(config_path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: invalid JSON ({err})") from None
    model = BlipMED(cfg)
    missing, unexpected = load_model(model, str(bundle / manifest["weights"]["file"]), strict=False)
    if missing or unexpected:
        raise ValueError(f"{bundle / manifest['weights']['file']} does not fit the model of {config_path}: "
                         f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    tok = manifest["tokenizer"]
    source = {**manifest["source"], "bundle": {"name": manifest["name"], "version": manifest["version"],
                                               "weights_sha256": manifest["files"][manifest["weights"]["file"]]}}
    has = {p: any(p in g for g in manifest["graphs"].values()) for p in ("int8", "fp16")}
    return write_bundle(model, TextTokenizer.from_file(bundle / tok["file"]), out, name=name or manifest["name"],
                        version=version or manifest["version"], source=source, metrics=manifest["metrics"],
                        max_text_tokens=tok["max_text_tokens"], max_answer_tokens=tok["max_answer_tokens"],
                        max_caption_tokens=tok["max_caption_tokens"], int8=has["int8"] if int8 is None else int8,
                        fp16=has["fp16"] if fp16 is None else fp16, overwrite=overwrite, progress=progress,
                        tasks=manifest.get("tasks", TASKS), fusion_first_token=tok.get("fusion_first_token", "enc"),
                        external_data_above=external_data_above)


def builtin_corpus() -> list[str]:
    """A few hundred Shapes-like captions, questions and answers: enough for a small WordPiece vocabulary."""
    colors = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
    shapes = ("circle", "square", "triangle", "star", "cross", "diamond")
    texts = []
    for i, c in enumerate(colors):
        for j, s in enumerate(shapes):
            other_c, other_s = colors[(i + j + 1) % len(colors)], shapes[(i + 2 * j + 1) % len(shapes)]
            texts += [f"a {c} {s}", f"a small {c} {s} left of a large {other_c} {other_s}",
                      f"two {c} {s}s above one {other_c} {other_s}", f"what color is the {s}?", c,
                      f"how many {s}s are there?", f"is there a {c} {other_s} right of the {s}?", "yes", "no",
                      str(1 + (i + j) % 4)]
    return texts
