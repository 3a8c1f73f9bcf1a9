"""``dlip export HF_DIR``: a Hugging Face BLIP checkpoint (a tiny random-weight stand-in, saved by transformers with
its processor: ``dlip.hf.stand_in``) as a bundle of its own task, checked against transformers; external data and
fp16 variants."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from dlip.cli import main  # noqa: E402
from dlip.hf_bundle import parity as hf_parity  # noqa: E402
from dlip.export.export import export_bundle  # noqa: E402
from dlip.hf_bundle.export import export_hf  # noqa: E402
from dlip.hf.blip import CAPTIONING, RETRIEVAL, VQA  # noqa: E402
from dlip.hf.stand_in import stand_in_vocab, write_stand_in  # noqa: E402
from dlip.infer.ort_backend import OrtBackend  # noqa: E402
from dlip.infer.search import greedy_decode  # noqa: E402

EXPECTED = {"retrieval": (RETRIEVAL, ["vision", "text", "itm"]),
            "captioning": (CAPTIONING, ["vision", "cross_kv", "decoder"]),
            "vqa": (VQA, ["vision", "vqa_encoder", "cross_kv", "decoder"])}


@pytest.mark.parametrize("task", list(EXPECTED))
def test_each_class_exports_its_own_task_checked_against_transformers(tmp_path, task, capsys):
    hf_dir = write_stand_in(tmp_path / "hf", task)
    assert main(["export", str(hf_dir), "--out", str(tmp_path / "bundle")]) == 0
    assert "parity with transformers" in capsys.readouterr().out
    m = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    architecture, graphs = EXPECTED[task]
    assert (m["format_version"], m["tasks"], list(m["graphs"])) == (4, [task], graphs)
    assert not any((tmp_path / "bundle" / f"{g}.onnx").exists() for g in {"text", "itm", "vqa_encoder", "decoder",
                                                                          "cross_kv"} - set(graphs))
    assert m["tokenizer"]["fusion_first_token"] == "cls"  # transformers feeds the processor's [CLS] as it is
    assert m["tokenizer"]["lowercase"] is True  # its BERT normalizer lowercases
    sp = m["tokenizer"]["special_tokens"]
    dec = len(stand_in_vocab("tiny"))  # [DEC] added after the WordPiece vocabulary, [ENC] after it
    assert (sp["dec"], sp["enc"], m["model"]["vocab_size"]) == (dec, dec + 1, dec + 2)
    assert m["tokenizer"]["max_caption_tokens"] == 20  # transformers generates 20 new tokens when no length is set
    assert m["preprocessing"]["image_size"] == 32 and m["preprocessing"]["resample"] == "bicubic"
    assert m["source"]["hf_architecture"] == architecture and m["source"]["random_init"] is False
    held = {"retrieval": {"vision", "text_encoder", "heads"}, "captioning": {"vision", "text_decoder"},
            "vqa": {"vision", "text_encoder", "text_decoder"}}[task]  # the parts the checkpoint holds count
    params = m["params"]
    assert {k for k in ("vision", "text_encoder", "text_decoder", "heads") if params[k] > 0} == held
    assert params["total"] == sum(params[k] for k in ("vision", "text_encoder", "text_decoder", "heads"))
    parity = m["parity"]
    assert all(v <= parity["tolerance"] for v in parity["max_abs_diff"].values()), parity
    assert parity["greedy_equal"] == parity["greedy_total"]
    assert parity["greedy_total"] == {"retrieval": 0, "captioning": 2, "vqa": 4}[task]


def test_a_bundle_that_does_not_reproduce_transformers_is_refused_with_the_difference(tmp_path, monkeypatch):
    hf_dir = write_stand_in(tmp_path / "hf", "captioning")
    monkeypatch.setattr(hf_parity, "RTOL", 1e-12)  # below float32 rounding: the check must fail and say by how much
    with pytest.raises(ValueError, match=r"do not reproduce transformers' model, not written: image_embeds differs "
                                         r"by [0-9.e-]+ \(tolerance 1e-12"):
        export_hf(hf_dir, tmp_path / "bundle", progress=False)
    assert not (tmp_path / "bundle").exists()


def test_image_processor_settings_the_server_cannot_reproduce_are_refused(tmp_path):
    hf_dir = write_stand_in(tmp_path / "hf", "captioning")
    path = hf_dir / "processor_config.json"
    cfg = json.loads(path.read_text())
    cfg["image_processor"]["resample"] = 1  # PIL's LANCZOS
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"processor_config\.json: resample 1 is not bicubic \(3\) or bilinear"):
        export_hf(hf_dir, tmp_path / "bundle", progress=False)
    cfg["image_processor"].update(resample=2, image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    path.write_text(json.dumps(cfg))
    m = json.loads((export_hf(hf_dir, tmp_path / "bundle", progress=False) / "manifest.json").read_text())
    assert (m["preprocessing"]["resample"], m["preprocessing"]["mean"], m["preprocessing"]["std"]) == (
        "bilinear", [0.5] * 3, [0.25] * 3)


def test_external_data_and_fp16_variants_load_and_match_fp32(tmp_path):
    """A threshold of 1 kB forces what a graph past 2 GB gets: its weights in NAME.onnx.data, checksummed."""
    hf_dir = write_stand_in(tmp_path / "hf", "vqa")
    out = export_hf(hf_dir, tmp_path / "bundle", progress=False, int8=True, fp16=True, external_data_above=1000)
    m = json.loads((out / "manifest.json").read_text())
    for graph, entry in m["graphs"].items():
        for variant in (entry, entry["int8"], entry["fp16"]):
            assert variant["external_data"] == variant["file"] + ".data", (graph, variant)
            assert variant["external_data"] in m["files"]
            assert (out / variant["file"]).stat().st_size < 200_000  # the weights are not inside
    with pytest.raises(ValueError, match=r"carries no weights .*export it from its Hugging Face checkpoint"):
        export_bundle(out, tmp_path / "again", progress=False)  # the checkpoint is the source, not weights in it
    fp32, fp16 = OrtBackend(out), OrtBackend(out, precision="fp16")
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (e32, _), (e16, _) = fp32.encode_images(pixels), fp16.encode_images(pixels)
    assert np.abs(e32 - e16).max() < 0.05 * np.abs(e32).max()
    ids, mask = (x.numpy() for x in fp32.tokenizer(["what color is the car?"], 20))
    s32 = fp32.question_states(e32[:1], ids, mask)
    s16 = fp16.question_states(e16[:1], ids, mask)
    assert np.abs(s32 - s16).max() < 0.05 * np.abs(s32).max()
    sp = fp32.special
    assert greedy_decode(fp32, s32, mask, sp.dec, sp.sep, 5) == greedy_decode(fp16, s16, mask, sp.dec, sp.sep, 5)


def test_the_generation_budget_is_what_generate_allows(tmp_path):
    from dlip.hf_bundle.export import generation_budget

    assert generation_budget(tmp_path, max_positions=512) == 20  # no generation_config.json: 20 new tokens
    assert generation_budget(tmp_path, max_positions=16) == 15  # within the decoder's positions
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_length": 30}))
    assert generation_budget(tmp_path, max_positions=512) == 29  # max_length counts the [DEC] prompt
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_length": 30, "max_new_tokens": 12}))
    assert generation_budget(tmp_path, max_positions=512) == 12


def test_an_unlisted_external_data_file_is_refused(tmp_path):
    from dlip.export.manifest import validate_bundle

    out = export_hf(write_stand_in(tmp_path / "hf", "captioning"), tmp_path / "bundle", progress=False,
                    external_data_above=1000)
    path = out / "manifest.json"
    m = json.loads(path.read_text())
    del m["files"]["decoder.onnx.data"]
    path.write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"decoder\.onnx\.data: external data of 'decoder\.onnx' missing from"):
        validate_bundle(out)


def test_another_hugging_face_model_is_refused_in_words(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2", "architectures": ["Blip2Model"]}))
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "bundle")]) != 0
    assert "a Hugging Face checkpoint of model_type 'blip-2'; export reads BLIP ones" in capsys.readouterr().err


def test_a_one_task_bundle_runs_and_is_scored_on_its_task_only(tmp_path, shapes_dir):
    from dlip.config import DataConfig
    from dlip.eval.bundle import evaluate_bundle
    from dlip.eval.evaluate import EvalSettings

    out = export_hf(write_stand_in(tmp_path / "hf", "captioning"), tmp_path / "bundle", progress=False)
    bundle = OrtBackend(out)
    ids, mask = (x.numpy() for x in bundle.tokenizer(["a red car"], 10))
    with pytest.raises(ValueError, match=r"has no 'text' graph \(it serves captioning\)"):
        bundle.encode_texts(ids, mask)
    metrics = evaluate_bundle(bundle, DataConfig(image_root=str(shapes_dir)), EvalSettings(k=4, num_beams=2),
                              progress=False)
    assert "caption" in metrics and "retrieval" not in metrics and "vqa" not in metrics
    assert set(metrics["headline"]) == {"caption_bleu4", "caption_cider", "caption_exact_set"}
