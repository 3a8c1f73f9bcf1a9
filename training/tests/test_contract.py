"""The bundle contract as data: ``contract.json`` and ``manifest.schema.json`` are read here straight from their
files, as test/unit/manifest.test.ts reads the same two files on the server's side, and the exporter's output, the
committed fixture and the shipped student must agree with them."""

import copy
import dataclasses
import json
import re
from pathlib import Path

import jsonschema
import pytest

from dlip.export.contract import (CONTRACT_PATH, GRAPHS, MANIFEST_FILE, SCHEMA_PATH, ModelDims, contract_problem,
                                  cross_names, graph_specs, past_names, present_names)
from dlip.export.manifest import onnx_io, read_manifest, schema_problem, validate_bundle, write_manifest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = [REPO / "test/fixtures/micro", REPO / "models/dlip-student"]


def _load(path):
    return json.loads(Path(path).read_text())


def _expected(contract, manifest):
    """The graph entries ``contract`` asks of ``manifest``, resolved here independently of ``graph_specs``: dims
    looked up where the contract says, axes kept, ``repeat`` blocks written out per layer."""
    def size(x):
        if isinstance(x, int) or x in contract["axes"]:
            return x
        section, key = contract["dims"][x]["manifest"]
        return manifest[section][key]

    def tensors(entries):
        out = []
        for e in entries:
            for i in range(size(e["repeat"])) if "repeat" in e else [None]:
                for t in e["tensors"] if "repeat" in e else [e]:
                    out.append({"name": t["name"] if i is None else t["name"].replace("{i}", str(i)),
                                "dtype": t["dtype"], "shape": [size(x) for x in t["shape"]]})
        return out

    return {g: {"inputs": tensors(spec["inputs"]), "outputs": tensors(spec["outputs"])}
            for g, spec in contract["graphs"].items()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from dlip.export.export import export_random

    return export_random("micro", tmp_path_factory.mktemp("contract") / "micro", seed=0, progress=False)


def test_the_exporters_bundle_matches_contract_json_and_the_schema(bundle):
    contract, schema = _load(CONTRACT_PATH), _load(SCHEMA_PATH)
    manifest = _load(bundle / contract["files"]["manifest"])
    jsonschema.Draft202012Validator(schema).validate(manifest)  # a fresh validator on the file itself
    expected = _expected(contract, manifest)
    assert list(manifest["graphs"]) == list(contract["graphs"]) == list(GRAPHS)
    for graph, entry in manifest["graphs"].items():
        assert entry["file"] == contract["graphs"][graph]["file"]
        assert {"inputs": entry["inputs"], "outputs": entry["outputs"]} == expected[graph], graph
        inputs, outputs = onnx_io(bundle / entry["file"])  # the ONNX files say the same
        assert (inputs, outputs) == (expected[graph]["inputs"], expected[graph]["outputs"]), graph
    assert [t["name"] for t in expected["decoder"]["inputs"][4:8]] == past_names(2)
    assert [t["name"] for t in expected["decoder"]["inputs"][8:]] == cross_names(2)
    assert [t["name"] for t in expected["cross_kv"]["outputs"]] == cross_names(2)
    assert [t["name"] for t in expected["decoder"]["outputs"][1:]] == present_names(2)
    assert contract["files"]["tokenizer"] in manifest["files"]


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name)
def test_the_committed_bundles_validate_against_the_schema_and_the_contract(path):
    manifest = _load(path / MANIFEST_FILE)
    jsonschema.Draft202012Validator(_load(SCHEMA_PATH)).validate(manifest)
    assert contract_problem(manifest) is None
    assert manifest["graphs"] == {g: {**manifest["graphs"][g], **e} for g, e in
                                  _expected(_load(CONTRACT_PATH), manifest).items()}
    assert read_manifest(path)["name"] == manifest["name"]


def test_graph_specs_are_the_contract_files_tensors():
    contract = _load(CONTRACT_PATH)
    dims = ModelDims(64, 65, 128, 128, 128, 3, 4, 32, 204)
    manifest = {"preprocessing": {"image_size": 64}, "model": dims.manifest_model()}
    for graph, spec in graph_specs(dims).items():
        want = _expected(contract, manifest)[graph]
        assert [t.to_json() for t in spec.inputs] == want["inputs"]
        assert [t.to_json() for t in spec.outputs] == want["outputs"]


def test_the_schema_and_the_contract_name_the_same_fields():
    contract, schema = _load(CONTRACT_PATH), _load(SCHEMA_PATH)
    assert list(schema["properties"]["graphs"]["properties"]) == list(contract["graphs"])
    assert set(contract["dims"]) == {f.name for f in dataclasses.fields(ModelDims)}
    for dim, d in contract["dims"].items():  # every dim is a required positive integer of the manifest
        section, key = d["manifest"]
        assert key in schema["properties"][section]["required"], dim
        assert schema["properties"][section]["properties"][key]["$ref"] == "#/$defs/positive_int", dim
    assert set(contract["axes"]).isdisjoint(contract["dims"])
    assert set(schema["properties"]["model"]["required"]) == {k for s, k in (d["manifest"] for d in
                                                                           contract["dims"].values()) if s == "model"}


MICRO = _load(REPO / "test/fixtures/micro" / MANIFEST_FILE)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.clear(), r"missing field 'format_version'"),
    (lambda m: (m.update(format_version=3), m["graphs"].pop("itm")), r"format_version 3 needs .* every graph"),
    (lambda m: m["tokenizer"].pop("fusion_first_token"), r"format_version 4 needs .*tokenizer\.fusion_first_token"),
    (lambda m: m["model"].pop("vocab_size"), r"missing field 'model\.vocab_size'"),
    (lambda m: m.update(format_version=True), r"format_version must be one of 3, 4, got true"),
    (lambda m: m["model"].pop("vqa_decoder_reads_image"), r"format_version 4 needs model\.vqa_decoder_reads_image"),
    (lambda m: m["model"].update(vqa_decoder_reads_image=1), r"model\.vqa_decoder_reads_image must be true or false"),
    (lambda m: (m.update(format_version=3), m["graphs"].pop("cross_kv")), r"format_version 3 needs .* every graph"),
    (lambda m: m.update(name="../../etc"), r"name must be a short label of letters.*, got \"\.\./\.\./etc\""),
    (lambda m: m["model"].update(decoder_heads=0), r"model\.decoder_heads must be >= 1, got 0"),
    (lambda m: m["model"].update(embed_dim="32"), r"model\.embed_dim must be an integer, got \"32\""),
    (lambda m: m["preprocessing"].update(std=[1, 0, 1]), r"preprocessing\.std\[1\] must be > 0, got 0"),
    (lambda m: m["preprocessing"].update(resample="lanczos"), r"preprocessing\.resample must be one of \"bicubic\""),
    (lambda m: m["tokenizer"].update(max_text_tokens=1), r"tokenizer\.max_text_tokens must be >= 2, got 1"),
    (lambda m: m["tokenizer"].update(file="../t.json"), r"tokenizer\.file must be a plain file name"),
    (lambda m: m["files"].update({"../x": "0" * 64}), r"files key \"\.\./x\" must be a plain file name"),
    (lambda m: m["files"].update({"manifest.json": "0" * 64}), r"files key \"manifest\.json\" must be"),
    (lambda m: m["files"].update({"tokenizer.json": "abc"}), r"files\.tokenizer\.json must be a sha256 digest"),
    (lambda m: m["graphs"]["itm"]["inputs"][1].update(dtype="int32"), r"graphs\.itm\.inputs\[1\]\.dtype must be"),
    (lambda m: m["graphs"]["text"]["inputs"][0].update(shape=["B", 1.5]),
     r"graphs\.text\.inputs\[0\]\.shape\[1\] must be an integer or a string, got 1\.5"),
    (lambda m: m.update(tasks=["ocr"]), r"tasks\[0\] must be one of \"retrieval\", \"captioning\", \"vqa\""),
])
def test_a_bad_manifest_is_refused_naming_the_field(edit, message):
    m = copy.deepcopy(MICRO)
    edit(m)
    problem = schema_problem(m)
    assert problem is not None and re.search(message, problem), problem


def test_what_a_schema_cannot_say_is_checked_in_code(tmp_path):
    wide = copy.deepcopy(MICRO)
    wide["model"]["text_width"] = 64
    assert schema_problem(wide) is None  # a schema does not compare two fields
    assert "model.text_width (64) must equal model.vision_width (32)" in contract_problem(wide)
    layers = copy.deepcopy(MICRO)
    layers["model"]["decoder_layers"] = 3
    assert contract_problem(layers).startswith("graphs.cross_kv.outputs differ from the contract")
    older = copy.deepcopy(MICRO)
    older["format_version"] = 2
    assert contract_problem(older).startswith("bundle format 2 is no longer read")


def test_the_exporter_writes_no_manifest_the_schema_refuses(bundle, tmp_path):
    copy_dir = tmp_path / "b"
    copy_dir.mkdir()
    for p in bundle.iterdir():
        if p.name != MANIFEST_FILE:
            (copy_dir / p.name).write_bytes(p.read_bytes())
    good = _load(bundle / MANIFEST_FILE)
    with pytest.raises(ValueError, match=r"manifest\.json: not written, name must be a short label"):
        write_manifest(copy_dir, dict(copy.deepcopy(good), name="a/b"))
    with pytest.raises(ValueError, match=r"manifest\.json: not written, graphs\.text\.outputs differ"):
        bad = copy.deepcopy(good)
        bad["graphs"]["text"]["outputs"][0]["name"] = "features"
        write_manifest(copy_dir, bad)
    assert not (copy_dir / MANIFEST_FILE).exists()
    write_manifest(copy_dir, good)
    assert validate_bundle(copy_dir)["graphs"] == good["graphs"]
