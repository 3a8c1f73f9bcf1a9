"""Writing and checking a bundle's ``manifest.json`` (FORMAT.md).

``read_manifest`` checks the manifest against ``manifest.schema.json`` (the file the server checks it against too);
``validate_bundle`` also rejects, with a ``ValueError`` naming the offending file, a bundle where a file is missing,
a checksum differs, a graph's inputs/outputs differ from the manifest, or the manifest's graph entries differ from
the contract for the manifest's own model sizes (``contract.contract_problem``). Both refuse a bundle of an older
format with how to re-export it (``contract.format_problem``), unless asked to read one (``older_formats``: what
``dlip export BUNDLE`` and ``dlip recover-weights`` do to write it again as the current format).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import onnx
from jsonschema.exceptions import ValidationError, best_match

from .contract import (MANIFEST_FILE, MANIFEST_SCHEMA, OLDER_FORMATS, TOKENIZER_FILE, contract_problem,
                       format_problem)

VARIANTS = ("int8", "fp16")  # a graph entry's optional precision variants (its own file is fp32)

jsonschema.Draft202012Validator.check_schema(MANIFEST_SCHEMA)
_SCHEMA = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)

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
        for precision in VARIANTS:
            if precision in graph:
                graph[precision]["sha256"] = files[graph[precision]["file"]]
    path = bundle / MANIFEST_FILE
    problem = schema_problem(manifest) or contract_problem(manifest)
    if problem:  # an exporter bug: written, no reader would load it
        raise ValueError(f"{path}: not written, {problem}")
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(bundle: str | Path, older_formats: bool = False) -> dict[str, Any]:
    """Parses ``manifest.json`` and checks it against ``manifest.schema.json`` (no file is opened besides the
    manifest). A manifest of an older format is refused with how to re-export it; with ``older_formats`` it is
    returned unchecked (the schema describes the current format only), for the readers that write it again."""
    path = Path(bundle) / MANIFEST_FILE
    if not Path(bundle).is_dir():
        raise ValueError(f"no such bundle directory: {bundle}")
    if not path.is_file():
        raise ValueError(f"{path}: missing file (not a model bundle)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    if is_older_format(manifest):
        if older_formats:
            return manifest
        raise ValueError(f"{path}: {format_problem(manifest, bundle)}")
    problem = schema_problem(manifest)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return manifest


def is_older_format(manifest: Any) -> bool:
    return isinstance(manifest, dict) and manifest.get("format_version") in OLDER_FORMATS


def schema_problem(manifest: Any) -> str | None:
    """The most relevant way ``manifest`` breaks ``manifest.schema.json``, naming the field, or None.

    Worded as ``src/bundle/manifest.ts`` words Ajv's errors: ``field must be ..., got VALUE``, with the schema's
    ``description`` where a pattern or a rule says more than its keyword."""
    error = best_match(_SCHEMA.iter_errors(manifest))
    return None if error is None else _describe(error)


_KINDS = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "true or false", "null": "null"}


def _describe(e: ValidationError) -> str:
    rule = _rule(list(e.absolute_schema_path))
    if rule:
        return rule
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path).lstrip(".")
    field = path or "the manifest"
    got, value = json.dumps(e.instance), e.validator_value
    if "propertyNames" in e.relative_schema_path:  # the instance is a key of the object at path
        return f"{path} key {got} must be {e.schema.get('description', 'a valid key')}"
    if e.validator == "required":
        missing = next(k for k in value if k not in e.instance)
        return f"missing field '{path + '.' if path else ''}{missing}'"
    if e.validator == "type":
        kinds = [value] if isinstance(value, str) else value
        return f"{field} must be {' or '.join(_KINDS[t] for t in kinds)}, got {got}"
    if e.validator == "enum":
        return f"{field} must be one of {', '.join(json.dumps(v) for v in value)}, got {got}"
    if e.validator == "anyOf" and all("type" in s for s in value):
        return f"{field} must be {' or '.join(_KINDS[s['type']] for s in value)}, got {got}"
    if e.validator in ("pattern", "not") and "description" in e.schema:
        return f"{field} must be {e.schema['description']}, got {got}"
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "minItems": "at least", "maxItems": "at most"}
    if e.validator in ("minimum", "exclusiveMinimum"):
        return f"{field} must be {bounds[e.validator]} {value}, got {got}"
    if e.validator in ("minItems", "maxItems"):
        return f"{field} must have {bounds[e.validator]} {value} items, got {got}"
    return f"{field}: {e.message}"


def _rule(schema_path: list[str | int]) -> str | None:
    """The ``description`` of the ``if``/``then`` rule an error comes from (the format-version rules), if any."""
    node: Any = MANIFEST_SCHEMA
    for key in schema_path:
        if isinstance(node, dict) and "if" in node and "description" in node:
            return node["description"]
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return None


def validate_bundle(bundle: str | Path, check_graphs: bool = True, older_formats: bool = False) -> dict[str, Any]:
    """Checks a bundle directory against its manifest and the contract; returns the manifest.

    Files: every ``files`` entry exists with its sha256; the tokenizer and each graph file (and int8 variant) are
    listed there with the same checksum. Graphs (``check_graphs``): each ONNX file's inputs/outputs equal the
    manifest's, and the manifest's equal the contract for the manifest's ``model`` sizes. ``older_formats``: a
    bundle of an older format is read too (files, checksums and its graphs against its own manifest; the contract
    is the current format's, so it is not compared).
    """
    bundle = Path(bundle)
    manifest = read_manifest(bundle, older_formats)
    older = is_older_format(manifest)
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

    problem = None if older else contract_problem(manifest)
    if problem:
        raise ValueError(f"{mpath}: {problem}")
    for graph, entry in manifest["graphs"].items():
        variants = [entry] + [entry[v] for v in VARIANTS if v in entry]
        for variant in variants:
            fname, digest = variant.get("file"), variant.get("sha256")
            if fname not in files:
                raise ValueError(f"{bundle / str(fname)}: graph file of '{graph}' missing from {MANIFEST_FILE} files")
            if digest != files[fname]:
                raise ValueError(f"{bundle / fname}: sha256 in graphs.{graph} differs from files[{fname!r}]")
            data = variant.get("external_data")
            if data is not None and data not in files:
                raise ValueError(f"{bundle / data}: external data of '{fname}' missing from {MANIFEST_FILE} files")
            if check_graphs:
                inputs, outputs = onnx_io(bundle / fname)
                if inputs != entry["inputs"]:
                    raise ValueError(f"{bundle / fname}: graph inputs {_brief(inputs)} do not match the manifest "
                                     f"{_brief(entry['inputs'])}")
                if outputs != entry["outputs"]:
                    raise ValueError(f"{bundle / fname}: graph outputs {_brief(outputs)} do not match the manifest "
                                     f"{_brief(entry['outputs'])}")
    return manifest


def fusion_first_token(manifest: dict[str, Any]) -> str:
    """``"enc"`` or ``"cls"``: the first token of the itm and vqa_encoder graphs' input ids (format 3: ``"enc"``)."""
    return manifest["tokenizer"].get("fusion_first_token", "enc")


def _brief(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['name']}:{e['dtype']}{e['shape']}" for e in entries)
