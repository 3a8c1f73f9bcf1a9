"""Writing and checking a bundle's ``manifest.json`` (FORMAT.md).

``validate_bundle`` rejects a bundle with a ``ValueError`` naming the offending file when a file is missing, a
checksum differs, a graph's inputs/outputs differ from the manifest, or the manifest's graph entries differ from the
contract for the manifest's own model sizes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import onnx

from .contract import (FORMAT_VERSIONS, GRAPHS, MANIFEST_FILE, TOKENIZER_FILE, ModelDims, graph_specs)

REQUIRED = ("format_version", "name", "version", "source", "created", "preprocessing", "tokenizer", "model",
            "graphs", "files", "params", "metrics", "tasks")
_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32",
           onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BOOL: "bool"}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_io(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A graph file's inputs and outputs as manifest entries ``{"name", "dtype", "shape"}``; a dynamic axis reads
    as its symbolic name, an unnamed one as ``"?"``."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises several types on garbage
        raise ValueError(f"{path}: not a readable ONNX model ({type(err).__name__}: {err})") from None
    initializers = {t.name for t in model.graph.initializer}

    def entry(value: onnx.ValueInfoProto) -> dict[str, Any]:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return {"name": value.name, "dtype": _DTYPES.get(t.elem_type, str(t.elem_type)), "shape": dims}

    inputs = [entry(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [entry(v) for v in model.graph.output]


def write_manifest(bundle: str | Path, manifest: dict[str, Any]) -> Path:
    """Fills ``files`` (every file of the bundle except the manifest) and each graph's ``sha256`` from the files on
    disk, then writes ``manifest.json``. Returns its path."""
    bundle = Path(bundle)
    files = {p.name: sha256_file(p) for p in sorted(bundle.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}
    manifest = dict(manifest, files=files)
    for graph in manifest["graphs"].values():
        graph["sha256"] = files[graph["file"]]
        if "int8" in graph:
            graph["int8"]["sha256"] = files[graph["int8"]["file"]]
    path = bundle / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """Parses ``manifest.json`` and checks its top-level fields (no file is opened besides the manifest)."""
    path = Path(bundle) / MANIFEST_FILE
    if not Path(bundle).is_dir():
        raise ValueError(f"no such bundle directory: {bundle}")
    if not path.is_file():
        raise ValueError(f"{path}: missing file (not a model bundle)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ValueError(f"{path}: missing field '{missing[0]}'")
    version = manifest["format_version"]
    if version not in FORMAT_VERSIONS or isinstance(version, bool):
        raise ValueError(f"{path}: format_version {version!r} is not one of {', '.join(map(str, FORMAT_VERSIONS))}")
    for key in ("graphs", "files", "model", "preprocessing", "tokenizer"):
        if not isinstance(manifest[key], dict):
            raise ValueError(f"{path}: '{key}' must be an object")
    reads_image = manifest["model"].get("vqa_decoder_reads_image")
    if version == 1 and reads_image is not None:
        raise ValueError(f"{path}: model.vqa_decoder_reads_image needs format_version 2")
    if version == 2 and not isinstance(reads_image, bool):
        raise ValueError(f"{path}: format_version 2 needs model.vqa_decoder_reads_image (true or false)")
    absent = [g for g in GRAPHS if g not in manifest["graphs"]]
    if absent:
        raise ValueError(f"{path}: graphs has no '{absent[0]}' entry")
    for name in manifest["files"]:
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..", MANIFEST_FILE):
            raise ValueError(f"{path}: files entry {name!r} is not a plain file name of the bundle")
    return manifest


def validate_bundle(bundle: str | Path, check_graphs: bool = True) -> dict[str, Any]:
    """Checks a bundle directory against its manifest and the contract; returns the manifest.

    Files: every ``files`` entry exists with its sha256; the tokenizer and each graph file (and int8 variant) are
    listed there with the same checksum. Graphs (``check_graphs``): each ONNX file's inputs/outputs equal the
    manifest's, and the manifest's equal the contract for the manifest's ``model`` sizes.
    """
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    mpath = bundle / MANIFEST_FILE
    files: dict[str, str] = manifest["files"]
    for name, digest in files.items():
        path = bundle / name
        if not path.is_file():
            raise ValueError(f"{path}: missing file listed in {MANIFEST_FILE}")
        if sha256_file(path) != digest:
            raise ValueError(f"{path}: sha256 mismatch (file {sha256_file(path)[:12]}..., manifest {digest[:12]}...)")
    tok_file = manifest["tokenizer"].get("file", TOKENIZER_FILE)
    if tok_file not in files:
        raise ValueError(f"{bundle / tok_file}: missing file (not listed in {MANIFEST_FILE})")

    try:
        specs = graph_specs(ModelDims.from_manifest(manifest))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{mpath}: incomplete model/preprocessing section ({err})") from None
    for graph in GRAPHS:
        entry = manifest["graphs"][graph]
        expected = {"inputs": [t.to_json() for t in specs[graph].inputs],
                    "outputs": [t.to_json() for t in specs[graph].outputs]}
        for key in ("inputs", "outputs"):
            if entry.get(key) != expected[key]:
                raise ValueError(f"{mpath}: graphs.{graph}.{key} differ from the contract: {entry.get(key)} "
                                 f"!= {expected[key]}")
        variants = [(entry.get("file"), entry.get("sha256"))]
        if "int8" in entry:
            variants.append((entry["int8"].get("file"), entry["int8"].get("sha256")))
        for fname, digest in variants:
            if fname not in files:
                raise ValueError(f"{bundle / str(fname)}: graph file of '{graph}' missing from {MANIFEST_FILE} files")
            if digest != files[fname]:
                raise ValueError(f"{bundle / fname}: sha256 in graphs.{graph} differs from files[{fname!r}]")
            if check_graphs:
                inputs, outputs = onnx_io(bundle / fname)
                if inputs != entry["inputs"]:
                    raise ValueError(f"{bundle / fname}: graph inputs {_brief(inputs)} do not match the manifest "
                                     f"{_brief(entry['inputs'])}")
                if outputs != entry["outputs"]:
                    raise ValueError(f"{bundle / fname}: graph outputs {_brief(outputs)} do not match the manifest "
                                     f"{_brief(entry['outputs'])}")
    return manifest


def _brief(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['name']}:{e['dtype']}{e['shape']}" for e in entries)
