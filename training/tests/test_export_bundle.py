"""Bundles that carry their weights (weights.safetensors + model.json) and `export` from such a bundle: the new
bundle's graphs compute what the source's do, with the same tokenizer, limits, metrics and provenance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from dlip.cli import main
from dlip.export.contract import GRAPHS, MODEL_CONFIG_FILE, WEIGHTS_FILE, ModelDims
from dlip.export.export import example_inputs, export_bundle, export_run
from dlip.export.manifest import read_manifest, validate_bundle
from dlip.run_folder import load_run


@pytest.fixture(scope="module")
def run_bundle(micro_run, tmp_path_factory):
    """The micro run exported with int8 graphs (a bundle that carries its weights)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("weights") / "src"
    return export_run(micro_run, out, name="micro-run", version="7", int8=True, progress=False)


def _outputs(bundle, graph: str, dims: ModelDims) -> list[np.ndarray]:
    """Every output of one graph of ``bundle`` on the exporter's example inputs."""
    manifest = read_manifest(bundle)
    session = ort.InferenceSession(str(bundle / manifest["graphs"][graph]["file"]), providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), example_inputs(graph, dims, seed=3))}
    return session.run(None, feeds)


def test_a_run_export_carries_the_weights_and_config(run_bundle, micro_run):
    manifest = validate_bundle(run_bundle)
    assert manifest["weights"] == {"file": WEIGHTS_FILE, "config": MODEL_CONFIG_FILE}
    assert {WEIGHTS_FILE, MODEL_CONFIG_FILE} <= set(manifest["files"])
    model = load_run(micro_run).model
    assert json.loads((run_bundle / MODEL_CONFIG_FILE).read_text())["text"]["hidden_size"] == model.cfg.text.hidden_size
    stored = load_file(str(run_bundle / WEIGHTS_FILE))
    state = model.state_dict()
    assert set(stored) <= set(state) and len(stored) > 0.9 * len(state)  # tied parameters are stored once
    for key, tensor in stored.items():
        assert torch.equal(tensor, state[key]), key


def test_export_from_a_bundle_writes_the_same_model(run_bundle, tmp_path):
    out = export_bundle(run_bundle, tmp_path / "again", progress=False)
    src, new = read_manifest(run_bundle), validate_bundle(out)
    for key in ("name", "version", "tokenizer", "model", "params", "metrics", "preprocessing", "tasks", "weights"):
        assert new[key] == src[key], key
    assert new["source"]["run"] == src["source"]["run"]
    assert new["source"]["bundle"] == {"name": "micro-run", "version": "7",
                                       "weights_sha256": src["files"][WEIGHTS_FILE]}
    assert all("int8" in g for g in new["graphs"].values())  # as the source
    assert new["files"][WEIGHTS_FILE] == src["files"][WEIGHTS_FILE]
    dims = ModelDims.from_manifest(src)
    for graph in GRAPHS:
        for a, b in zip(_outputs(run_bundle, graph, dims), _outputs(out, graph, dims), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=graph)


def test_export_from_a_bundle_in_place_and_through_the_cli(run_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(run_bundle, bundle)
    assert main(["export", str(bundle), "--out", str(bundle), "--overwrite", "--version", "8"]) == 0
    manifest = validate_bundle(bundle)
    assert manifest["version"] == "8" and manifest["name"] == "micro-run"
    assert manifest["files"][WEIGHTS_FILE] == read_manifest(run_bundle)["files"][WEIGHTS_FILE]
    assert not list(tmp_path.glob(".*partial"))


def test_a_bundle_without_weights_says_how_to_export_it(tmp_path, capsys):
    out = tmp_path / "micro"
    assert main(["export", "--random-init", "--preset", "micro", "--seed", "3", "--out", str(out)]) == 0
    assert "weights" not in read_manifest(out) and not (out / WEIGHTS_FILE).exists()
    with pytest.raises(ValueError, match="--random-init --preset micro --seed 3"):
        export_bundle(out, tmp_path / "again")
    assert main(["export", str(out), "--out", str(tmp_path / "again")]) == 2  # a user error
    assert "carries no weights" in capsys.readouterr().err


def test_tampered_or_mismatched_weights_are_refused(run_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(run_bundle, bundle)
    data = bytearray((bundle / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (bundle / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        export_bundle(bundle, tmp_path / "x")


def test_weights_are_recovered_from_an_old_bundles_graphs(micro_run, tmp_path):
    from dlip.export.export import write_bundle
    from dlip.export.recover import recover_bundle_weights

    loaded = load_run(micro_run)
    old = write_bundle(loaded.model, loaded.tokenizer, tmp_path / "old", source={"run": None, "preset": "micro"},
                       metrics={"vqa_acc": 1.0}, max_text_tokens=30, max_answer_tokens=8, weights=False,
                       progress=False)
    graphs = {g: (old / f"{g}.onnx").read_bytes() for g in GRAPHS}
    with pytest.raises(ValueError, match="not hold a 'student-small' model"):
        recover_bundle_weights(old, preset="student-small", progress=False)
    assert main(["recover-weights", str(old)]) == 0
    manifest = validate_bundle(old)
    assert manifest["weights"]["file"] == WEIGHTS_FILE and "weights_recovered" in manifest["source"]
    assert manifest["metrics"] == {"vqa_acc": 1.0} and manifest["tokenizer"]["max_answer_tokens"] == 8
    for g in GRAPHS:  # exported again from the recovered weights: the same graphs, to the byte
        assert (old / f"{g}.onnx").read_bytes() == graphs[g], g
    stored, state = load_file(str(old / WEIGHTS_FILE)), loaded.model.state_dict()
    for key, tensor in stored.items():
        if key != "temp":  # the ITC temperature is in no graph
            assert torch.equal(tensor, state[key]), key
    with pytest.raises(ValueError, match="already carries its weights"):
        recover_bundle_weights(old, progress=False)


def _as_older_format(bundle, version: int, weights: bool) -> None:
    """Rewrites ``bundle`` in place as format ``version`` was written: no cross_kv graph, a decoder that reads
    ``encoder_hidden`` at every step (exported here with that interface), vqa_decoder_reads_image absent in 1."""
    from dlip.export.export import example_inputs
    from dlip.export.manifest import onnx_io, sha256_file

    manifest = json.loads((bundle / "manifest.json").read_text())
    model = load_run(manifest["source"]["run"]).model if weights else None
    if model is None:
        from dlip.export.recover import recovered_model
        model = recovered_model(bundle, manifest, "micro")

    class OlderDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, encoder_hidden, encoder_mask, *past):
            out = self.model.decode(input_ids, attention_mask, encoder_hidden, encoder_mask, use_cache=True,
                                    past_key_values=tuple((past[i], past[i + 1]) for i in range(0, len(past), 2)))
            return (out.logits, *[t for kv in out.past_key_values for t in kv])

    dims = ModelDims.from_manifest(manifest)
    ids, positions, mask, enc_mask, *caches = example_inputs("decoder", dims)
    past = caches[:2 * dims.decoder_layers]
    hidden = example_inputs("cross_kv", dims)[0]
    names = [f"{kind}_{i}" for i in range(dims.decoder_layers) for kind in ("past_key", "past_value")]
    outs = [f"{kind}_{i}" for i in range(dims.decoder_layers) for kind in ("present_key", "present_value")]
    axes = {"input_ids": {0: "B", 1: "T"}, "attention_mask": {0: "B", 1: "P+T"}, "encoder_hidden": {0: "B", 1: "M"},
            "encoder_mask": {0: "B", 1: "M"}, "logits": {0: "B", 1: "T"}, **{n: {0: "B", 2: "P"} for n in names},
            **{n: {0: "B", 2: "P+T"} for n in outs}}
    with torch.no_grad():
        torch.onnx.export(OlderDecoder().eval(), (ids, torch.ones_like(mask), hidden, enc_mask, *past),
                          str(bundle / "decoder.onnx"), input_names=["input_ids", "attention_mask", "encoder_hidden",
                                                                      "encoder_mask", *names],
                          output_names=["logits", *outs], dynamic_axes=axes, opset_version=17, dynamo=False)
    for name in ("cross_kv.onnx", "cross_kv.int8.onnx", "decoder.int8.onnx"):
        (bundle / name).unlink(missing_ok=True)
    graphs = {g: e for g, e in manifest["graphs"].items() if g != "cross_kv"}
    graphs["decoder"].pop("int8", None)
    graphs["decoder"]["inputs"], graphs["decoder"]["outputs"] = onnx_io(bundle / "decoder.onnx")
    manifest["format_version"] = version
    if version == 1:
        manifest["model"].pop("vqa_decoder_reads_image")
    manifest["files"] = {p.name: sha256_file(p) for p in sorted(bundle.iterdir()) if p.name != "manifest.json"}
    for entry in graphs.values():
        entry["sha256"] = manifest["files"][entry["file"]]
        if "int8" in entry:
            entry["int8"]["sha256"] = manifest["files"][entry["int8"]["file"]]
    manifest["graphs"] = graphs
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_an_older_format_bundle_is_refused_and_re_exported_as_the_current_format(run_bundle, tmp_path):
    """A format-1 bundle that carries its weights (as models/dlip-student was): readers refuse it with the command
    that re-exports it; that command, in place, writes current-format graphs that compute what its graphs did."""
    bundle = tmp_path / "b"
    shutil.copytree(run_bundle, bundle)
    _as_older_format(bundle, 1, weights=True)
    with pytest.raises(ValueError, match=rf"format 1 is no longer read.*`python -m dlip export {bundle} --out "
                                         rf"{bundle} --overwrite`"):
        validate_bundle(bundle)
    old = validate_bundle(bundle, older_formats=True)
    old_decoder = (bundle / "decoder.onnx").read_bytes()
    (tmp_path / "old_decoder.onnx").write_bytes(old_decoder)
    assert main(["export", str(bundle), "--out", str(bundle), "--overwrite"]) == 0
    new = validate_bundle(bundle)
    assert new["format_version"] == 4 and new["model"]["vqa_decoder_reads_image"] is False
    assert new["files"][WEIGHTS_FILE] == old["files"][WEIGHTS_FILE] and new["metrics"] == old["metrics"]
    from dlip.export.recover import _older_decoder_outputs

    for a, b in zip(*_older_decoder_outputs(tmp_path / "old_decoder.onnx", bundle, ModelDims.from_manifest(new)),
                    strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5


def test_weights_are_recovered_from_an_older_format_bundle(micro_run, tmp_path):
    """recover-weights reads a format-2 bundle without weights (its decoder holds the cross-attention projections
    that cross_kv now computes), checks the recovered model against its graphs and writes the current format."""
    from dlip.export.export import write_bundle
    from dlip.export.recover import recover_bundle_weights

    loaded = load_run(micro_run)
    old = write_bundle(loaded.model, loaded.tokenizer, tmp_path / "old", source={"run": None, "preset": "micro"},
                       metrics={}, max_text_tokens=30, max_answer_tokens=8, weights=False, progress=False)
    _as_older_format(old, 2, weights=False)
    with pytest.raises(ValueError, match=r"format 2 is no longer read.*recover-weights"):
        validate_bundle(old)
    recover_bundle_weights(old, progress=False)
    manifest = validate_bundle(old)
    assert manifest["format_version"] == 4 and "cross_kv" in manifest["graphs"]
    stored, state = load_file(str(old / WEIGHTS_FILE)), loaded.model.state_dict()
    for key, tensor in stored.items():
        if key != "temp":
            assert torch.equal(tensor, state[key]), key
