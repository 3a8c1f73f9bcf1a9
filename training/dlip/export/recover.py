"""Weights back out of a bundle's ONNX graphs, for bundles exported before bundles carried their weights.

The TorchScript exporter keeps a parameter's name as its initializer's (``model.text_encoder...``), except for the
weight of a linear layer, which it stores transposed under a generated name (``onnx::MatMul_389``) as the right-hand
side of a ``MatMul`` whose output is added to that layer's bias (``model....bias``). That is enough to rebuild the
state dict of a ``BlipMED`` of the bundle's preset; the ITC temperature, which no graph uses, keeps its initial
value. Nothing is trusted: every parameter must be found (an initializer that maps nowhere, a parameter found in
two graphs with different values, or one found nowhere is an error), and ``recover_bundle_weights`` exports the
recovered model again and requires every graph to give the bundle's own outputs before it writes anything.

A bundle of an older format (1, 2) is read too and written back as the current one: its decoder, which projected
``encoder_hidden`` to cross-attention keys and values at every step, holds the parameters that ``cross_kv`` and the
decoder now share, and is checked against the two run in turn (``_older_decoder_outputs``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from ..config import model_preset
from ..data.tokenizer import TextTokenizer
from ..model.med import BlipMED
from .contract import CROSS_KV, DECODER, ModelDims, graph_file
from .export import example_inputs, write_bundle
from .manifest import is_older_format, validate_bundle

PREFIX = "model."  # the export wrappers hold the BlipMED as `.model`
NOT_IN_GRAPHS = ("temp",)  # the ITC temperature: training only


def graph_parameters(path: str | Path) -> dict[str, np.ndarray]:
    """The BlipMED parameters one ONNX graph holds, by state-dict name (linear weights transposed back)."""
    graph = onnx.load(str(path)).graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.name.startswith(PREFIX):
            found[init.name[len(PREFIX):]] = array
            continue
        key = _linear_weight_name(init.name, consumers)
        if key is None:
            raise ValueError(f"{path}: initializer {init.name} {list(array.shape)} is not a parameter this exporter "
                             f"writes (a constant-folded layer?): its weights cannot be recovered")
        found[key] = array.T  # MatMul's right-hand side (in, out) is the linear weight (out, in) transposed
    return found


def _linear_weight_name(name: str, consumers: dict[str, list[onnx.NodeProto]]) -> str | None:
    """``X.weight`` for an initializer that is the right-hand side of a MatMul added to the bias ``model.X.bias``."""
    for matmul in consumers.get(name, []):
        if matmul.op_type != "MatMul" or matmul.input[1] != name:
            continue
        for add in consumers.get(matmul.output[0], []):
            bias = next((x for x in add.input if x != matmul.output[0]), "")
            if add.op_type == "Add" and bias.startswith(PREFIX) and bias.endswith(".bias"):
                return bias[len(PREFIX):-len(".bias")] + ".weight"
    return None


def recovered_model(bundle: str | Path, manifest: dict[str, Any], preset: str) -> BlipMED:
    """A BlipMED of ``preset`` (sized to the bundle's vocabulary) holding the parameters of the bundle's graphs."""
    tok = manifest["tokenizer"]
    model = BlipMED(model_preset(preset).with_vocab(manifest["model"]["vocab_size"], tok["special_tokens"]["pad"]))
    state = model.state_dict()
    found: dict[str, np.ndarray] = {}
    for graph in manifest["graphs"]:  # the bundle's own graphs, of whichever format
        for key, array in graph_parameters(Path(bundle) / manifest["graphs"][graph]["file"]).items():
            if key in found and not np.array_equal(found[key], array):
                raise ValueError(f"{bundle}: {key} differs between graphs")
            found[key] = array
    missing = sorted(set(state) - set(found) - set(NOT_IN_GRAPHS))
    unknown = sorted(set(found) - set(state))
    wrong = sorted(k for k in set(found) & set(state) if tuple(found[k].shape) != tuple(state[k].shape))
    if missing or unknown or wrong:
        raise ValueError(f"{bundle}: its graphs do not hold a '{preset}' model: missing {missing[:3]}, unknown "
                         f"{unknown[:3]}, other shapes {wrong[:3]}")
    model.load_state_dict({**state, **{k: torch.from_numpy(np.array(v)) for k, v in found.items()}})
    return model.eval()


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _outputs(path: Path, graph: str, dims: ModelDims) -> list[np.ndarray]:
    session = _session(path)
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), example_inputs(graph, dims, seed=1))}
    return session.run(None, feeds)


def _older_decoder_outputs(old: Path, new: Path, dims: ModelDims) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """An older format's decoder step (input_ids, attention_mask, encoder_hidden, encoder_mask, past...) and the
    same step through the current graphs (cross_kv of encoder_hidden, then the decoder with the positions the older
    graph derived from P), on the same inputs."""
    g = torch.Generator().manual_seed(1)
    b, p, t, n = 2, 3, 2, dims.image_tokens
    ids = torch.randint(7, dims.vocab_size, (b, t), generator=g).numpy()
    mask = np.ones((b, p + t), dtype=np.int64)
    hidden = torch.randn(b, n, dims.vision_width, generator=g).numpy()
    enc_mask = np.ones((b, n), dtype=np.int64)
    enc_mask[1, -1] = 0
    past = [torch.randn(b, dims.decoder_heads, p, dims.decoder_head_dim, generator=g).numpy()
            for _ in range(2 * dims.decoder_layers)]
    older = _session(old)
    got = older.run(None, dict(zip([i.name for i in older.get_inputs()], [ids, mask, hidden, enc_mask, *past])))
    cross = _session(new / graph_file(CROSS_KV)).run(None, {"encoder_hidden": hidden})
    decoder = _session(new / graph_file(DECODER))
    positions = np.broadcast_to(np.arange(p, p + t), (b, t)).astype(np.int64)
    want = decoder.run(None, dict(zip([i.name for i in decoder.get_inputs()],
                                      [ids, positions, mask, enc_mask, *past, *cross])))
    return got, want


def recover_bundle_weights(bundle: str | Path, preset: str | None = None, progress: bool = True) -> Path:
    """Gives an old bundle its weights (``weights.safetensors``, ``model.json``): recovered from its graphs, checked
    by exporting them again (every output of every graph as the bundle's to 1e-6), then the bundle is written again
    in place with them (same name, version, tokenizer, limits, metrics; ``source.weights_recovered`` says where
    they came from)."""
    bundle = Path(bundle)
    manifest = validate_bundle(bundle, older_formats=True)
    if "weights" in manifest:
        raise ValueError(f"{bundle}: already carries its weights ({manifest['weights']['file']})")
    preset = preset or manifest["source"].get("preset")
    if not preset:
        raise ValueError(f"{bundle}: the manifest names no preset; pass --preset")
    model = recovered_model(bundle, manifest, preset)
    dims = ModelDims.from_manifest(manifest)
    tok = manifest["tokenizer"]
    has_int8 = any("int8" in g for g in manifest["graphs"].values())
    with tempfile.TemporaryDirectory() as tmp:
        check = Path(tmp) / "check"
        write_bundle(model, TextTokenizer.from_file(bundle / tok["file"]), check, name=manifest["name"],
                     version=manifest["version"], source=manifest["source"], metrics=manifest["metrics"],
                     max_text_tokens=tok["max_text_tokens"], max_answer_tokens=tok["max_answer_tokens"],
                     max_caption_tokens=tok["max_caption_tokens"], int8=False, weights=False, progress=progress)
        for graph, entry in manifest["graphs"].items():
            file = entry["file"]
            if graph == DECODER and is_older_format(manifest):
                pairs = _older_decoder_outputs(bundle / file, check, dims)
            else:
                pairs = _outputs(bundle / file, graph, dims), _outputs(check / file, graph, dims)
            for a, b in zip(*pairs, strict=True):
                if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-6):
                    raise ValueError(f"{bundle}: the recovered weights do not reproduce {file} "
                                     f"(max difference {np.abs(a - b).max():.3g}); not written")
    source = {**manifest["source"], "weights_recovered": f"from the ONNX graphs of version {manifest['version']} "
                                                         f"(dlip.export.recover; the ITC temperature, which no graph "
                                                         f"uses, at its initial value)"}
    return write_bundle(model, TextTokenizer.from_file(bundle / tok["file"]), bundle, name=manifest["name"],
                        version=manifest["version"], source=source, metrics=manifest["metrics"],
                        max_text_tokens=tok["max_text_tokens"], max_answer_tokens=tok["max_answer_tokens"],
                        max_caption_tokens=tok["max_caption_tokens"], int8=has_int8, overwrite=True,
                        progress=progress)
