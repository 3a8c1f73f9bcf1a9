"""ONNX model bundles: PyTorch vs onnxruntime parity (fresh random inputs each run), decoding identity, bundle
evaluation vs the PyTorch evaluation, bundle validation, int8 variants and the CLI.

The parity of greedy decoding is checked on the fixture's 8 test images; for the issue's 50 images run
``python -m dlip eval-bundle BUNDLE --data IMAGE_ROOT --compare-run RUN --limit-images 50`` (exit status 0 when every
caption and answer is identical).
"""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from dlip.config import DataConfig
from dlip.eval.evaluate import EvalSettings, evaluate, write_metrics
from dlip.export.contract import GRAPHS, MANIFEST_FILE, graph_specs
from dlip.eval.bundle import compare_decoding, evaluate_bundle, headline_table
from dlip.export.export import export_run
from dlip.export.manifest import sha256_file, validate_bundle
from dlip.infer import tasks
from dlip.infer.backend import answer_context, tokenize, with_first_token
from dlip.infer.ort_backend import OrtBackend
from dlip.infer.torch_backend import TorchBackend
from dlip.run_folder import load_run

TOL = 1e-4
SETTINGS = EvalSettings(k=4, num_beams=3)


@pytest.fixture(scope="module")
def exported(micro_run, tmp_path_factory):
    """A copy of the micro run (so its metrics.json is ours), evaluated in PyTorch, then exported with int8."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(micro_run, run)
    loaded = load_run(run)
    metrics = evaluate(loaded.model, loaded.tokenizer, loaded.config, SETTINGS, progress=False)
    write_metrics(metrics, run, "micro")
    bundle = export_run(run, run.parent / "bundle", int8=True, progress=False)
    return {"run": run, "bundle": bundle, "metrics": metrics, "loaded": loaded}


@pytest.fixture(scope="module")
def ort_model(exported):
    return OrtBackend(exported["bundle"])


@pytest.fixture(scope="module")
def random_bundle(tmp_path_factory):
    """A random-init micro bundle written through the CLI, as make-fixtures.sh does."""
    from dlip.cli import main

    out = tmp_path_factory.mktemp("fixture") / "micro"
    assert main(["export", "--random-init", "--preset", "micro", "--seed", "0", "--out", str(out)]) == 0
    return out


def _rng():
    return np.random.default_rng()  # fresh inputs every run


def _text(rng, b, length, first, vocab):
    ids = rng.integers(7, vocab, (b, length))
    ids[:, 0] = first
    mask = np.ones((b, length), dtype=np.int64)
    for i in range(b):
        mask[i, rng.integers(2, length + 1):] = 0  # random right padding, at least 2 real tokens
    return ids, mask


def _close(a, b):
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.abs(a - b).max() <= TOL, np.abs(a - b).max()


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("b", [1, 3])
@torch.no_grad()
def test_encoder_graphs_match_pytorch(exported, ort_model, b):
    model, rng, sp = exported["loaded"].model, _rng(), ort_model.special
    v, s = ort_model.dims.vocab_size, ort_model.dims.image_size
    pixels = rng.standard_normal((b, 3, s, s)).astype(np.float32)
    embeds, feats = ort_model.encode_images(pixels)
    t_embeds = model.encode_image(torch.from_numpy(pixels)).last_hidden
    _close(embeds, t_embeds)
    _close(feats, model.image_feature(t_embeds))

    ids, mask = _text(rng, b, int(rng.integers(3, 12)), sp.cls, v)
    (text_feat,) = ort_model.run("text", ids, mask)
    _close(text_feat, model.text_feature(model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask)).last_hidden))

    enc_ids = with_first_token(ids, sp.enc)
    fused = model.fuse(torch.from_numpy(enc_ids), torch.from_numpy(mask), t_embeds).last_hidden
    _close(ort_model.itm_logits(embeds, enc_ids, mask), model.itm_logits(fused))
    _close(ort_model.question_states(embeds, enc_ids, mask), fused)


@pytest.mark.parametrize("b", [1, 3])
@torch.no_grad()
def test_cached_decoder_steps_match_uncached_forward(exported, ort_model, b):
    """Steps of 1-3 new tokens over a growing cache (the first with P=0) vs one uncached PyTorch forward, for image
    tokens (captions) and padded question states (VQA)."""
    model, rng, sp = exported["loaded"].model, _rng(), ort_model.special
    d = ort_model.dims
    length = 7
    ids = rng.integers(7, d.vocab_size, (b, length))
    ids[:, 0] = sp.dec
    q_ids, q_mask = _text(rng, b, 6, sp.enc, d.vocab_size)
    image = rng.standard_normal((b, d.image_tokens, d.vision_width)).astype(np.float32)
    states = ort_model.question_states(image, q_ids, q_mask)
    for enc, enc_mask in ((image, np.ones(image.shape[:2], dtype=np.int64)), (states, q_mask)):
        full = model.decode(torch.from_numpy(ids), torch.ones(b, length, dtype=torch.long), torch.from_numpy(enc),
                            torch.from_numpy(enc_mask)).logits
        cross = ort_model.cross_kv(enc)  # once for every step
        t_cross = model.decoder_cross_key_values(torch.from_numpy(enc))
        for (key, value), (t_key, t_value) in zip(zip(cross[::2], cross[1::2]), t_cross, strict=True):
            _close(key, t_key)
            _close(value, t_value)
            assert key.shape == (b, d.decoder_heads, enc.shape[1], d.decoder_head_dim)
        past, start = ort_model.empty_past(b), 0
        for end in (1, 3, 4, 7):
            positions = np.broadcast_to(np.arange(start, end), (b, end - start))
            logits, past = ort_model.decoder_step(ids[:, start:end], positions, np.ones((b, end), dtype=np.int64),
                                                  enc_mask, past, cross)
            _close(logits, full[:, start:end])
            assert all(p.shape == (b, d.decoder_heads, end, d.decoder_head_dim) for p in past)
            start = end


def test_greedy_captions_and_answers_identical_to_pytorch(exported, ort_model, shapes_dir):
    loaded = exported["loaded"]
    result = compare_decoding(TorchBackend(loaded.model, loaded.tokenizer), ort_model, loaded.config.data, limit=50,
                              progress=False)
    assert result["images"] == 8 and result["questions"] > 8  # every test image of the fixture
    assert result["captions_identical"] == result["images"], result["mismatches"]
    assert result["answers_identical"] == result["questions"], result["mismatches"]


@torch.no_grad()
def test_random_init_bundle_decodes_like_pytorch(random_bundle):
    """Random weights give varied tokens: greedy and beam search over random images, ids compared exactly."""
    bundle = OrtBackend(random_bundle)
    model = _random_micro_model(bundle, seed=0)
    torch_backend = TorchBackend(model, bundle.tokenizer)
    rng = _rng()
    pixels = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    embeds, _ = bundle.encode_images(pixels)
    t_embeds = model.encode_image(torch.from_numpy(pixels)).last_hidden
    _close(embeds, t_embeds)
    for beams in (1, 3):  # greedy, beam search
        assert tasks.caption_ids(bundle, embeds, 12, beams) == tasks.caption_ids(torch_backend, t_embeds, 12, beams)


def _random_micro_model(bundle, seed):
    """The weights ``export_random("micro", seed=seed)`` exported: same seed, same construction."""
    from dlip.config import model_preset
    from dlip.model.med import BlipMED

    torch.manual_seed(seed)
    return BlipMED(model_preset("micro").with_vocab(bundle.tokenizer.vocab_size, bundle.special.pad)).eval()


# ------------------------------------------------------------------------------------------------ evaluation
def test_bundle_evaluation_matches_pytorch_headline(exported, ort_model, shapes_dir):
    data = DataConfig(image_root=str(shapes_dir))
    got = evaluate_bundle(ort_model, data, SETTINGS, progress=False)
    ref = exported["metrics"]
    manifest_metrics = ort_model.manifest["metrics"]
    assert {k: manifest_metrics[k] for k in ref["headline"]} == ref["headline"]  # copied from metrics.json
    assert manifest_metrics["summary"]["settings"]["k"] == SETTINGS.k
    n = len(ref["caption"]["greedy"]["examples"])  # 8 images: one flipped rank moves R@1 by 100 / 8
    for key in ("retrieval_tr1", "retrieval_ir1"):
        assert abs(got["headline"][key] - manifest_metrics[key]) <= 100 / n / 2, key
    assert "caption_exact_set" in manifest_metrics  # Shapes data: the captions graded against the scene graphs
    for key in ("caption_bleu4", "caption_cider", "caption_exact_set", "vqa_acc"):  # identical decoding: scores
        assert got["headline"][key] == manifest_metrics[key], key
        assert got["sampling_error"][key] == ref["sampling_error"][key], key  # and identical standard errors
    assert set(got["sampling_error"]) == set(ref["sampling_error"])
    table = headline_table(got, manifest_metrics)
    assert f"| vqa_acc | {got['headline']['vqa_acc']:.2f} (+-{got['sampling_error']['vqa_acc']:.2f}) |" in table
    for name in ("greedy", "beam3"):
        assert got["caption"][name]["examples"] == ref["caption"][name]["examples"]
        assert got["caption"][name]["correctness"] == ref["caption"][name]["correctness"]
    assert got["vqa"]["acc_rank"] == ref["vqa"]["acc_rank"]


def test_manifest_fields(exported, ort_model):
    m, run = ort_model.manifest, exported["run"]
    assert m["format_version"] == 4 and m["name"] == "bundle" and m["tasks"] == ["retrieval", "captioning", "vqa"]
    assert m["tokenizer"]["fusion_first_token"] == "enc"  # a run's model reads [ENC] first (BLIP)
    assert m["model"]["vqa_decoder_reads_image"] is False
    assert m["source"]["checkpoint_sha256"] == sha256_file(run / "checkpoints" / "last.pt")
    assert m["source"]["random_init"] is False
    bundle_files = {p.name for p in exported["bundle"].iterdir()} - {MANIFEST_FILE}
    # the tokenizer, fp32 and int8 graphs, and the weights with their model config
    assert set(m["files"]) == bundle_files and len(bundle_files) == 1 + 2 * len(GRAPHS) + 2
    assert m["preprocessing"]["image_size"] == 32 and m["preprocessing"]["scale"] == "1/255"
    assert m["tokenizer"]["special_tokens"]["enc"] == 5 and m["tokenizer"]["max_caption_tokens"] == 20
    model = exported["loaded"].model
    assert m["params"]["total"] == sum(p.numel() for p in model.parameters())
    assert sum(v for k, v in m["params"].items() if k != "total") == m["params"]["total"]
    decoder = m["graphs"]["decoder"]
    assert [t["name"] for t in decoder["inputs"]][:4] == ["input_ids", "position_ids", "attention_mask",
                                                          "encoder_mask"]
    assert [t["name"] for t in decoder["inputs"]][4:8] == ["past_key_0", "past_value_0", "past_key_1", "past_value_1"]
    assert [t["name"] for t in decoder["inputs"]][8:] == ["cross_key_0", "cross_value_0", "cross_key_1",
                                                          "cross_value_1"]
    assert decoder["outputs"][1] == {"name": "present_key_0", "dtype": "float32", "shape": ["B", 2, "P+T", 16]}
    cross_kv = m["graphs"]["cross_kv"]
    assert cross_kv["inputs"] == [{"name": "encoder_hidden", "dtype": "float32", "shape": ["B", "M", 32]}]
    assert [t["name"] for t in cross_kv["outputs"]] == [t["name"] for t in decoder["inputs"]][8:]
    assert cross_kv["outputs"][0] == {"name": "cross_key_0", "dtype": "float32", "shape": ["B", 2, "M", 16]}


def test_random_init_fixture_is_small_and_has_no_metrics(random_bundle):
    m = validate_bundle(random_bundle)
    assert m["metrics"] == {} and m["source"]["random_init"] is True and m["source"]["run"] is None
    assert sum(p.stat().st_size for p in random_bundle.iterdir()) < 1_000_000


# ------------------------------------------------------------------------------------------------ rejection
@pytest.fixture
def bundle_copy(exported, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(exported["bundle"], dst)
    return dst


def _rewrite_manifest(path, edit):
    m = json.loads((path / MANIFEST_FILE).read_text())
    edit(m)
    (path / MANIFEST_FILE).write_text(json.dumps(m))


def test_rejects_missing_file(bundle_copy):
    (bundle_copy / "decoder.onnx").unlink()
    with pytest.raises(ValueError, match=r"decoder\.onnx: missing file"):
        validate_bundle(bundle_copy)
    with pytest.raises(ValueError, match=r"decoder\.onnx"):
        OrtBackend(bundle_copy)


def test_rejects_checksum_mismatch(bundle_copy):
    with open(bundle_copy / "tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(ValueError, match=r"tokenizer\.json: sha256 mismatch"):
        validate_bundle(bundle_copy)


def test_rejects_graph_whose_inputs_differ_from_manifest(bundle_copy):
    """itm.onnx replaced by the text graph, checksums updated so only the graph check can catch it."""
    shutil.copy(bundle_copy / "text.onnx", bundle_copy / "itm.onnx")
    digest = sha256_file(bundle_copy / "itm.onnx")

    def edit(m):
        m["files"]["itm.onnx"] = m["graphs"]["itm"]["sha256"] = digest
    _rewrite_manifest(bundle_copy, edit)
    with pytest.raises(ValueError, match=r"itm\.onnx: graph inputs .* do not match the manifest"):
        validate_bundle(bundle_copy)


def test_rejects_manifest_that_differs_from_contract_or_is_missing(bundle_copy):
    _rewrite_manifest(bundle_copy, lambda m: m["graphs"]["text"]["inputs"][0].update(name="ids"))
    with pytest.raises(ValueError, match=r"manifest\.json: graphs\.text\.inputs differ from the contract"):
        validate_bundle(bundle_copy)
    (bundle_copy / MANIFEST_FILE).unlink()
    with pytest.raises(ValueError, match=r"manifest\.json: missing file"):
        validate_bundle(bundle_copy)


# ------------------------------------------------------------------------------------------------ int8 and CLI
def test_int8_variant_is_quantised_and_runs(exported, ort_model):
    m = ort_model.manifest
    for graph in GRAPHS:
        entry = m["graphs"][graph]
        model = onnx.load(str(exported["bundle"] / entry["int8"]["file"]))
        assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in model.graph.node), graph
    int8 = OrtBackend(exported["bundle"], int8=True)
    rng = _rng()
    pixels = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    embeds, feats = int8.encode_images(pixels)
    ref_embeds, ref_feats = ort_model.encode_images(pixels)
    assert embeds.shape == ref_embeds.shape and np.isfinite(embeds).all()
    assert (feats * ref_feats).sum(axis=1).min() > 0.9  # cosine to the float32 feature
    captions = tasks.generate_captions(int8, embeds, int8.max_caption_tokens, num_beams=2)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    questions = ["what color is the circle?", "how many shapes are there?"]
    assert len(tasks.answer_questions(int8, embeds, questions, int8.max_text_tokens, int8.max_answer_tokens)) == 2


def test_graph_specs_name_every_dynamic_axis():
    from dlip.export.contract import ModelDims

    dims = ModelDims(32, 17, 32, 32, 32, 2, 2, 16, 100)
    axes = graph_specs(dims)["decoder"].dynamic_axes()
    assert axes["attention_mask"] == {0: "B", 1: "P+T"} and axes["past_value_1"] == {0: "B", 2: "P"}
    assert axes["logits"] == {0: "B", 1: "T"} and axes["position_ids"] == {0: "B", 1: "T"}
    assert axes["cross_value_1"] == {0: "B", 2: "M"} and "encoder_hidden" not in axes
    cross = graph_specs(dims)["cross_kv"].dynamic_axes()
    assert cross["encoder_hidden"] == {0: "B", 1: "M"} and cross["cross_key_0"] == {0: "B", 2: "M"}


def test_cli_eval_bundle_and_errors(exported, shapes_dir, capsys):
    from dlip.cli import main

    assert main(["eval-bundle", str(exported["bundle"]), "--data", str(shapes_dir), "--k", "4",
                 "--limit-images", "4", "--limit-questions", "4"]) == 0
    assert "| retrieval_tr1 |" in capsys.readouterr().out
    assert main(["eval-bundle", str(exported["bundle"]), "--data", str(shapes_dir),
                 "--compare-run", str(exported["run"]), "--limit-images", "3"]) == 0
    assert main(["export", "--out", str(exported["run"].parent / "x")]) == 2
    assert main(["export", str(exported["run"]), "--out", str(exported["bundle"])]) == 2  # exists: no overwrite
    err = capsys.readouterr().err
    assert "pass a run folder" in err and "exists and is not empty" in err


def test_a_model_whose_answer_decoder_reads_the_image_says_so_and_answers_like_pytorch(tmp_path):
    import dataclasses

    from dlip.config import model_preset
    from dlip.data.tokenizer import TextTokenizer, train_wordpiece
    from dlip.export.export import builtin_corpus, write_bundle
    from dlip.export.manifest import read_manifest
    from dlip.model.med import BlipMED

    tokenizer = TextTokenizer(train_wordpiece(builtin_corpus(), vocab_size=120))
    cfg = model_preset("micro").with_vocab(tokenizer.vocab_size, tokenizer.special.pad)
    torch.manual_seed(0)
    model = BlipMED(dataclasses.replace(cfg, vqa_decoder_reads_image=True)).eval()
    out = write_bundle(model, tokenizer, tmp_path / "b", source={}, metrics={}, max_text_tokens=35,
                       max_answer_tokens=10, progress=False)
    m = read_manifest(out)
    assert m["format_version"] == 4 and m["model"]["vqa_decoder_reads_image"] is True
    bundle = OrtBackend(out)
    pixels = _rng().standard_normal((4, 3, 32, 32)).astype(np.float32)
    embeds, _ = bundle.encode_images(pixels)
    questions = ["what color is the circle?", "where is the star?", "how many squares are there?", "is there a cross?"]
    with torch.no_grad():
        t_embeds = model.encode_image(torch.from_numpy(pixels)).last_hidden
        expected = tasks.answer_questions(TorchBackend(model, tokenizer), t_embeds, questions, 35, 10)
        assert tasks.answer_questions(bundle, embeds, questions, 35, 10) == expected  # greedy answers, end to end
        # the first decoder step's logits over the question states + image tokens, ONNX vs PyTorch
        q_ids, q_mask = tokenize(bundle, questions, 35)
        enc_ids = with_first_token(q_ids, tokenizer.special.enc)
        ctx, ctx_mask = answer_context(bundle, embeds, q_ids, q_mask)
        assert ctx.shape[1] == q_ids.shape[1] + embeds.shape[1]
        bos = np.full((4, 1), tokenizer.special.dec, dtype=np.int64)
        got, _ = bundle.decoder_step(bos, np.zeros((4, 1), dtype=np.int64), np.ones((4, 1), dtype=np.int64),
                                     ctx_mask, bundle.empty_past(4), bundle.cross_kv(ctx))
        t_states = model.fuse(torch.from_numpy(enc_ids), torch.from_numpy(q_mask), t_embeds).last_hidden
        t_ctx, t_mask = model.answer_context(t_states, torch.from_numpy(q_mask), t_embeds)
        want = model.decode(torch.from_numpy(bos), torch.ones(4, 1, dtype=torch.long), t_ctx, t_mask).logits
        _close(got, want)
        # the question states alone give other logits: the image tokens are read
        alone = model.decode(torch.from_numpy(bos), torch.ones(4, 1, dtype=torch.long), t_states,
                             torch.from_numpy(q_mask)).logits
        assert (want - alone).abs().max() > 1e-3


@pytest.mark.parametrize("vision", [dict(stem="conv"), dict(stem="conv", output_pos_embed=True)])
def test_a_conv_stem_model_exports_and_its_vision_graph_matches_pytorch(tmp_path, vision):
    import dataclasses

    from dlip.config import model_preset
    from dlip.data.tokenizer import TextTokenizer, train_wordpiece
    from dlip.export.export import builtin_corpus, write_bundle
    from dlip.model.med import BlipMED

    tokenizer = TextTokenizer(train_wordpiece(builtin_corpus(), vocab_size=120))
    cfg = model_preset("micro").with_vocab(tokenizer.vocab_size, tokenizer.special.pad)
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, **vision))
    torch.manual_seed(0)
    model = BlipMED(cfg)
    with torch.no_grad():  # running statistics other than the initial 0 / 1, as after training
        for m in model.visual_encoder.patch_embed:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    out = write_bundle(model, tokenizer, tmp_path / "b", source={}, metrics={}, max_text_tokens=35,
                       max_answer_tokens=10, progress=False)
    bundle = OrtBackend(out)
    pixels = _rng().standard_normal((3, 3, 32, 32)).astype(np.float32)
    embeds, feats = bundle.encode_images(pixels)
    with torch.no_grad():
        t_embeds = model.encode_image(torch.from_numpy(pixels)).last_hidden
        _close(embeds, t_embeds)
        _close(feats, model.image_feature(t_embeds))
        torch_backend = TorchBackend(model, tokenizer)
        assert tasks.generate_captions(bundle, embeds) == tasks.generate_captions(torch_backend, t_embeds)


def test_manifest_format_versions(tmp_path, random_bundle):
    from dlip.export.manifest import read_manifest

    def edited(name, change):
        d = tmp_path / name
        shutil.copytree(random_bundle, d)
        m = json.loads((d / MANIFEST_FILE).read_text())
        change(m)
        (d / MANIFEST_FILE).write_text(json.dumps(m))
        return d

    m = read_manifest(random_bundle)
    assert m["format_version"] == 4 and m["model"]["vqa_decoder_reads_image"] is False  # always written
    with pytest.raises(ValueError, match="format_version 4 needs model.vqa_decoder_reads_image"):
        read_manifest(edited("v4", lambda m: m["model"].pop("vqa_decoder_reads_image")))
    with pytest.raises(ValueError, match="format_version 4 needs .*tokenizer.fusion_first_token"):
        read_manifest(edited("v4-enc", lambda m: m["tokenizer"].pop("fusion_first_token")))
    with pytest.raises(ValueError, match="format_version must be one of 3, 4, got 5"):
        read_manifest(edited("v5", lambda m: m.update(format_version=5)))
    v3 = edited("v3", lambda m: (m.update(format_version=3), m["tokenizer"].pop("fusion_first_token")))
    assert validate_bundle(v3)["format_version"] == 3  # still read: every graph, [ENC] first
    for version in (1, 2):  # the decoder read encoder_hidden at every step: refused, saying how to re-export
        old = edited(f"v{version}", lambda m, v=version: m.update(format_version=v))
        for read in (read_manifest, validate_bundle, OrtBackend):
            with pytest.raises(ValueError, match=rf"bundle format {version} is no longer read .*re-export it: "
                                                 rf"`python -m dlip export --random-init --preset micro --seed 0"):
                read(old)
        assert validate_bundle(old, older_formats=True)["format_version"] == version  # for `dlip export BUNDLE`


def test_the_format_message_says_how_to_re_export_each_kind_of_bundle():
    from dlip.export.contract import format_problem

    run = {"format_version": 1, "source": {"run": "/runs/student", "random_init": False}}
    assert format_problem(run, "models/s").endswith(
        "re-export it: `python -m dlip recover-weights models/s` then `python -m dlip export models/s --out models/s "
        "--overwrite`, or `python -m dlip export /runs/student --out models/s --overwrite` from its run folder")
    weights = dict(run, format_version=2, weights={"file": "weights.safetensors", "config": "model.json"})
    assert format_problem(weights, "b").endswith("re-export it: `python -m dlip export b --out b --overwrite`")
    assert format_problem(dict(run, format_version=3)) is None


# ------------------------------------------------------------------------------------------------ format 3 decoder
def _decoder_inputs(model, rng, b, p, t, m):
    d = model.cfg.decoder
    heads, hd = d.num_heads, d.hidden_size // d.num_heads
    ids = torch.from_numpy(rng.integers(7, d.vocab_size, (b, t)))
    past = tuple((torch.randn(b, heads, p, hd), torch.randn(b, heads, p, hd)) for _ in range(d.num_layers))
    enc = torch.randn(b, m, model.cfg.vision.hidden_size)
    enc_mask = torch.ones(b, m, dtype=torch.long)
    enc_mask[0, -2:] = 0
    return ids, past, enc, enc_mask


@torch.no_grad()
def test_a_padded_cache_row_gives_the_logits_it_gives_alone(random_bundle):
    """Rows with 1, 3 and 5 real cached positions in one batch of P=5 (padding at the start, in the middle, none):
    each row's logits and new keys/values, through the PyTorch wrapper and the exported graph, are those of the row
    decoded alone with its real cache only (to 1e-5)."""
    from dlip.export.wrappers import CrossKVGraph, DecoderGraph

    bundle = OrtBackend(random_bundle)
    model = _random_micro_model(bundle, seed=0)
    rng = _rng()
    b, p, t, m = 3, 5, 2, 6
    ids, past, enc, enc_mask = _decoder_inputs(model, rng, b, p, t, m)
    real = [[3], [0, 2, 4], [0, 1, 2, 3, 4]]  # the real cached positions of each row
    mask = torch.zeros(b, p + t, dtype=torch.long)
    mask[:, p:] = 1
    for r, keep in enumerate(real):
        mask[r, keep] = 1
    positions = mask[:, :p].sum(dim=1, keepdim=True) + torch.arange(t)  # each row after its own real positions
    cross = CrossKVGraph(model)(enc)
    flat_past = [x for kv in past for x in kv]
    batch = DecoderGraph(model)(ids, positions, mask, enc_mask, *flat_past, *cross)
    onnx_batch = bundle.decoder_step(ids.numpy(), positions.numpy(), mask.numpy(), enc_mask.numpy(),
                                     [x.numpy() for x in flat_past], [x.numpy() for x in cross])
    for r, keep in enumerate(real):
        alone_past = [x[r:r + 1][:, :, keep] for x in flat_past]
        alone = model.decode(ids[r:r + 1], torch.ones(1, len(keep) + t, dtype=torch.long), enc[r:r + 1],
                             enc_mask[r:r + 1], past_key_values=tuple(zip(alone_past[::2], alone_past[1::2])),
                             use_cache=True)
        for got in (batch[0], onnx_batch[0]):
            got = got.numpy() if isinstance(got, torch.Tensor) else got
            assert np.abs(got[r:r + 1] - alone.logits.numpy()).max() <= 1e-5, r
        new_kv = [x for kv in alone.past_key_values for x in kv]
        for got, fed, want in zip(onnx_batch[1], flat_past, new_kv, strict=True):  # past as fed, then the new
            assert got.shape == (b, want.shape[1], p + t, want.shape[3])
            np.testing.assert_array_equal(got[r, :, :p], fed[r].numpy())
            assert np.abs(got[r:r + 1, :, p:] - want[:, :, len(keep):].numpy()).max() <= 1e-5, r


@torch.no_grad()
def test_position_ids_shift_positions_as_pytorch_does(random_bundle):
    """Tokens fed at positions k.. with an empty cache give the logits PyTorch gives after k cached positions that
    are all masked out (it numbers new tokens after the cache): position_ids is what moves a token along."""
    from dlip.export.wrappers import CrossKVGraph, DecoderGraph

    bundle = OrtBackend(random_bundle)
    model = _random_micro_model(bundle, seed=0)
    rng = _rng()
    b, k, t, m = 2, 4, 3, 5
    ids, past, enc, enc_mask = _decoder_inputs(model, rng, b, k, t, m)
    masked = torch.cat([torch.zeros(b, k, dtype=torch.long), torch.ones(b, t, dtype=torch.long)], dim=1)
    want = model.decode(ids, masked, enc, enc_mask, past_key_values=past, use_cache=True).logits
    cross = CrossKVGraph(model)(enc)
    empty = [x[:, :, :0] for kv in past for x in kv]
    positions = k + torch.arange(t).expand(b, t)
    got = DecoderGraph(model)(ids, positions, torch.ones(b, t, dtype=torch.long), enc_mask, *empty, *cross)[0]
    assert (got - want).abs().max() <= 1e-5
    onnx_got = bundle.decoder_step(ids.numpy(), positions.numpy(), np.ones((b, t), dtype=np.int64),
                                   enc_mask.numpy(), [x.numpy() for x in empty], [x.numpy() for x in cross])[0]
    assert np.abs(onnx_got - want.numpy()).max() <= 1e-5
    unshifted = DecoderGraph(model)(ids, torch.arange(t).expand(b, t), torch.ones(b, t, dtype=torch.long), enc_mask,
                                    *empty, *cross)[0]
    assert (unshifted - want).abs().max() > 1e-3  # the positions are read
