"""Command line: ``python -m dlip <command> ...``. Thin: parses arguments and calls the library.

Bad input (missing files, annotation JSON of the wrong shape, unknown config keys) ends with a one-line
``error: ...`` naming the file or key and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import INIT_PARTS, TASK_TERMS, DistillConfig, TrainConfig, train_config_from_dict
from .jsonfile import read_json


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="make data sets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="render the Shapes benchmark (COCO-Karpathy / VQAv2 formats)")
    s.add_argument("--out", required=True, help="output folder (becomes the image root)")
    s.add_argument("--n", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"), default=(20000, 1000, 1000),
                   help="images per split (default 20000 1000 1000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--noise", type=float, default=3.0, help="pixel noise sigma (<= 6)")
    s.add_argument("--workers", type=int, default=2, help="rendering processes")
    s.add_argument("--renderer", choices=("v1", "v2"), default="v2",
                   help="v2 (default; what the shipped model was trained and scored on): anti-aliasing, colour "
                        "shades, background gradients and texture, slight rotation, blur, JPEG "
                        "(dlip/data/render_v2.py); v1: flat colours and hard edges (the earlier recipes of "
                        "training/report/HISTORY.md)")
    pt = data_sub.add_parser("perturb", help="render a Shapes split again with camera and encoder perturbations "
                                             "(anti-aliasing, blur, other sizes, noise, low-quality JPEG)")
    pt.add_argument("--data", required=True, help="Shapes image root from `data synth` (needs scenes_SPLIT.jsonl)")
    pt.add_argument("--out", required=True, help="output folder (becomes the image root of the perturbed split)")
    pt.add_argument("--seed", type=int, default=0, help="seed of the per-image perturbation strengths")
    pt.add_argument("--split", default="test", help="split to perturb (default test)")
    pt.add_argument("--workers", type=int, default=2, help="rendering processes")
    pt.add_argument("--overwrite", action="store_true", help="replace a perturbed set this command wrote before")
    pt.add_argument("--preset", choices=("hard", "camera"), default="hard",
                    help="hard (default): rotation, shades, textured background, occluding strokes, then blur, noise "
                         "and JPEG at about the models' 64 px input; camera: the earlier split (anti-aliasing, blur, "
                         "noise, JPEG at 128-512 px), which the 64 px resize mostly averages away")


def _add_tokenizer(sub) -> None:
    p = sub.add_parser("tokenizer", help="train a lowercase WordPiece tokenizer on a data set's training text")
    p.add_argument("--data", required=True, help="image root holding annotations/ (Shapes layout) or use --config")
    p.add_argument("--config", help="JSON training config whose 'data' section names the files")
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--out", required=True, help="tokenizer.json to write")


def _add_run_args(p, config_help: str, preset_help: str) -> None:
    """Flags shared by the commands that train a run folder (train, distill)."""
    p.add_argument("--config", help=config_help)
    p.add_argument("--data", help="image root (data.image_root)")
    p.add_argument("--preset", help=preset_help)
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--steps", type=int, nargs="+", help="steps per stage, overriding the config; a stage's "
                   "warmup_steps is capped at a tenth of its steps (a note says so)")
    p.add_argument("--batch-size", type=int, help="batch size of every stage")
    p.add_argument("--limit-images", type=int, help="train on the first N images only")
    p.add_argument("--threads", type=int, help="torch threads per process")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="pre-train (ITC, ITM, LM) and fine-tune for VQA; works under torchrun")
    _add_run_args(p, "JSON training config (see training/configs/); flags below override it",
                  "model size preset from dlip/presets.json")
    p.add_argument("--init-from", help="start from this run folder's weights and tokenizer (fine-tuning)")
    p.add_argument("--init-vision", help="start the image encoder from this vision.pt (dlip pretrain-vision); "
                   "overrides the config's init_vision ('none': from random weights)")
    p.add_argument("--stop-after", type=int, help="stop at this global step, the config's learning-rate schedule "
                   "unchanged (a snapshot of the full run, e.g. to compare recipes early)")


def _add_pretrain_vision(sub) -> None:
    p = sub.add_parser("pretrain-vision", help="pre-train a teacher's image encoder on the training scene graphs "
                       "(what each image token's cell holds), the stage BLIP gets from ImageNet; writes vision.pt for "
                       "a training config's init_vision")
    p.add_argument("--config", required=True, help="the teacher's training config (its model's image encoder, "
                   "data.augment and seed are used)")
    p.add_argument("--data", help="image root with scenes_train.jsonl / scenes_val.jsonl (dlip data synth)")
    p.add_argument("--out", required=True, help="folder to write vision.pt and pretrain.jsonl into")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, help="torch threads")


def _add_terms_report(sub) -> None:
    p = sub.add_parser("terms-report", help="the ablation table (the four headline metrics with sampling errors, "
                       "the DLIP terms each run used) from distillation runs already trained and evaluated")
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN", help="a row: its label and run folder")
    p.add_argument("--out", required=True, help="markdown file whose 'terms' block is filled (e.g. REPORT.md)")


def _add_distill(sub) -> None:
    p = sub.add_parser("distill", help="DLIP: train a compact student from a teacher (run folder or HF BLIP dirs)")
    p.add_argument("--teacher", required=True, action="append",
                   help="teacher run folder or Hugging Face BLIP checkpoint directory; repeat for several HF "
                        "checkpoints (retrieval, captioning, VQA): each distillation term comes from the first one "
                        "that holds the parts it reads, and a term none holds is refused")
    _add_run_args(p, "JSON distillation config (see training/configs/shapes_distill.json)",
                  "student size preset from dlip/presets.json")
    p.add_argument("--init", help="student initialisation: random | teacher | select (weight selection) | a run folder")
    p.add_argument("--init-parts", nargs="+", choices=INIT_PARTS,
                   help="with --init teacher / select: only these parts start from the teacher (default: all)")
    p.add_argument("--no-distill", action="store_true",
                   help="the control: zero every distillation weight (same student, data and steps)")


def _count_or_all(value: str) -> int | None:
    """``all`` -> None (no limit); else a positive integer."""
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'all', got {value!r}")
    return int(value)


def _add_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="short distillations over a grid of DLIP settings, evaluated, in one table")
    p.add_argument("--teacher", required=True, action="append",
                   help="teacher run folder or Hugging Face BLIP checkpoint directory; repeat for several HF "
                        "checkpoints, as with distill")
    p.add_argument("--config", required=True, help="base distillation config (e.g. configs/shapes_distill.json)")
    p.add_argument("--grid", required=True, help="grid rows (e.g. configs/ablation_grid.json)")
    p.add_argument("--data", help="image root (data.image_root)")
    p.add_argument("--out", required=True, help="folder for one run per row, ablation.md and ablation.json")
    p.add_argument("--steps", type=int, nargs="+", help="steps per stage of every row (short runs)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit-images", type=int, help="train on the first N images only")
    p.add_argument("--eval-images", type=_count_or_all, default=None, metavar="N|all",
                   help="score every row on the first N test images and questions (default: all, the whole split)")
    p.add_argument("--k", type=int, default=16, help="ITM re-ranks the top-k ITC candidates")
    p.add_argument("--threads", type=int)
    p.add_argument("--overwrite", action="store_true", help="rerun rows that already have results")
    p.add_argument("--report", help="also fill the ablation block of this markdown file (e.g. REPORT.md)")
    p.set_defaults(preset=None, init=None, init_parts=None, no_distill=False)
    _add_vqa_rank(p)


def _add_vqa_rank(p) -> None:
    p.add_argument("--no-vqa-rank", dest="vqa_rank", action="store_false",
                   help="skip VQA answers ranked over the training answers (the generated answers are the headline)")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score a run on the test split; writes metrics.json and metrics.md into it")
    p.add_argument("run", help="run folder")
    p.add_argument("--k", type=int, default=16, help="ITM re-ranks the top-k ITC candidates (default 16)")
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--limit-images", type=int)
    p.add_argument("--limit-questions", type=int)
    p.add_argument("--threads", type=int)
    _add_vqa_rank(p)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="fill the results block of a report from evaluated run folders")
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN",
                   help="a row: its label and its evaluated run folder (repeat; the first row's baselines are shown)")
    p.add_argument("--reference-tr1", type=float, metavar="TR1",
                   help="the previous teacher's numbers: its TR@1 (ITM re-ranked, headline.retrieval_tr1 of its "
                        "metrics.json); adds the bar TR@1 >= TR1 (no bar without it)")
    p.add_argument("--reference-ir1", type=float, metavar="IR1",
                   help="the previous teacher's numbers: its IR@1 (headline.retrieval_ir1); adds the bar IR@1 >= IR1")
    p.add_argument("--reference-run", metavar="RUN",
                   help="instead of typing them, read the previous teacher's TR@1 and IR@1 from this evaluated run "
                        "folder's metrics.json")
    p.add_argument("--out", required=True, help="markdown file whose results block is replaced")


def _add_distill_report(sub) -> None:
    p = sub.add_parser("distill-report", help="the distillation table: teacher, DLIP student and control (and "
                                              "optionally a second, smaller student with its own control), with "
                                              "ONNX Runtime CPU latency of their bundles measured in the same run")
    p.add_argument("--teacher", required=True, metavar="NAME=RUN=BUNDLE", help="label, evaluated run, its bundle")
    p.add_argument("--student", required=True, metavar="NAME=RUN=BUNDLE")
    p.add_argument("--control", required=True, metavar="NAME=RUN=BUNDLE",
                   help="the same student trained the same steps without any distillation term")
    p.add_argument("--student2", metavar="NAME=RUN=BUNDLE",
                   help="optional second, smaller student (target: <= 6%% of the teacher's parameters); needs "
                        "--control2")
    p.add_argument("--control2", metavar="NAME=RUN=BUNDLE",
                   help="the second student trained the same steps without any distillation term")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--out", required=True, help="markdown file whose distillation block is replaced")


def _add_int8_report(sub) -> None:
    p = sub.add_parser("int8-report", help="the int8 table: a bundle's int8 graphs next to its fp32 graphs on the "
                                           "test split, per headline metric")
    p.add_argument("--fp32", required=True, help="`eval-bundle BUNDLE --out` JSON")
    p.add_argument("--int8", required=True, help="`eval-bundle BUNDLE --int8 --out` JSON (the same bundle)")
    p.add_argument("--bundle", help="the bundle directory, to state the size of both sets of graphs")
    p.add_argument("--out", required=True, help="markdown file whose int8 block is replaced (or appended)")


def _add_robustness_report(sub) -> None:
    p = sub.add_parser("robustness-report", help="the robustness table: clean vs perturbed test split (`data "
                                                 "perturb`) per model, drops with standard errors, issue 23's check "
                                                 "(exact set and VQA acc drop <= 3 points) and the check against the "
                                                 "teacher")
    p.add_argument("--row", action="append", required=True, metavar="NAME=CLEAN_JSON=PERTURBED_JSON",
                   help="a row: label, `eval-bundle --out` JSON on the clean and on the perturbed split, each with "
                        "the headline caption_exact_set (repeat; the first row is the teacher the others are checked "
                        "against)")
    p.add_argument("--out", required=True, help="markdown file whose robustness block is replaced (or appended)")


def _add_correctness_report(sub) -> None:
    p = sub.add_parser("correctness-report", help="the caption correctness table: beam captions graded against the "
                                                  "scene graphs, and VQA by question type, per model and split")
    p.add_argument("--row", action="append", required=True, metavar="NAME=JSON",
                   help="a row: label and an `eval-bundle --out` JSON (or a run's metrics.json) on Shapes (repeat)")
    p.add_argument("--out", required=True, help="markdown file whose correctness block is replaced (or appended)")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write an ONNX model bundle (dlip/export/FORMAT.md) from a run folder, a "
                                      "Hugging Face BLIP checkpoint folder, or again from a bundle that carries its "
                                      "weights")
    p.add_argument("run", nargs="?", help="run folder, Hugging Face BLIP checkpoint folder (save_pretrained of "
                                          "BlipForImageTextRetrieval, BlipForConditionalGeneration or "
                                          "BlipForQuestionAnswering, with its processor), or a bundle directory that "
                                          "carries its weights (omit with --random-init)")
    p.add_argument("--out", required=True, help="bundle directory to create (e.g. models/NAME)")
    p.add_argument("--name", help="model label in the manifest (default: the source bundle's name, else the --out "
                                  "folder name)")
    p.add_argument("--version", help="model version string in the manifest (default: the source bundle's, else 1)")
    p.add_argument("--int8", action="store_true", default=None,
                   help="also write dynamic-quantised *.int8.onnx graphs (default from a bundle: as the source)")
    p.add_argument("--fp16", action="store_true", default=None,
                   help="also write float16 *.fp16.onnx graphs for GPUs (LayerNorm and Softmax kept in float32; "
                        "default from a bundle: as the source)")
    p.add_argument("--external-data-above", type=int, default=None, metavar="BYTES",
                   help="keep a graph's weights in ONNX external data (NAME.onnx.data) when they pass this many bytes "
                        "(default 1.8e9, under protobuf's 2 GB limit)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--random-init", action="store_true", help="random weights (test fixtures) instead of a run")
    p.add_argument("--preset", default="micro", help="with --random-init: model size preset")
    p.add_argument("--data", help="with --random-init: train the tokenizer on this image root's training text "
                                  "(default: a tiny built-in corpus)")
    p.add_argument("--vocab-size", type=int, default=300, help="with --random-init: tokenizer vocabulary limit")
    p.add_argument("--seed", type=int, default=0, help="with --random-init: weight initialisation seed")


def _add_recover_weights(sub) -> None:
    p = sub.add_parser("recover-weights", help="give a bundle exported before bundles carried weights its weights, "
                                               "recovered from its graphs and checked by exporting them again")
    p.add_argument("bundle", help="bundle directory (rewritten in place once the check passes)")
    p.add_argument("--preset", help="model preset of the bundle (default: the manifest's source.preset)")


def _add_eval_bundle(sub) -> None:
    p = sub.add_parser("eval-bundle", help="score a model bundle with onnxruntime on the test split")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--data", required=True, help="image root holding annotations/ (Shapes layout)")
    p.add_argument("--config", help="JSON training config whose 'data' section names the annotation files")
    p.add_argument("--k", type=int, default=16, help="ITM re-ranks the top-k ITC candidates (default 16)")
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--limit-images", type=int)
    p.add_argument("--limit-questions", type=int)
    p.add_argument("--int8", action="store_true", help="score the *.int8.onnx graphs")
    p.add_argument("--fp16", action="store_true", help="score the *.fp16.onnx graphs (on the CPU: slow)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--out", help="also write the metrics as JSON to this file")
    p.add_argument("--compare-run", metavar="RUN",
                   help="instead of scoring: check that greedy captions and VQA answers of the bundle equal those "
                        "of this run's PyTorch model on the first --limit-images (default 50) test images/questions")
    _add_vqa_rank(p)


def _add_latency(sub) -> None:
    p = sub.add_parser("latency", help="ONNX Runtime CPU latency of bundles: image encode, caption, VQA")
    p.add_argument("bundle", nargs="+", metavar="NAME=DIR", help="bundles to compare, side by side in one run")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--out", help="also write the markdown table here")


def _add_hf_stand_in(sub) -> None:
    p = sub.add_parser("hf-stand-in", help="write a random-weight Hugging Face BLIP checkpoint (save_pretrained, "
                                            "with its BlipProcessor) to try the real-checkpoint path without weights")
    p.add_argument("--class", dest="kind", required=True, choices=("retrieval", "captioning", "vqa"),
                   help="BlipForImageTextRetrieval, BlipForConditionalGeneration or BlipForQuestionAnswering")
    p.add_argument("--size", default="tiny", choices=("tiny", "base"),
                   help="tiny: 32 px, width 32, seconds; base: BlipConfig() (BLIP-base sizes), about a minute")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint directory to write")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlip", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data(sub)
    _add_tokenizer(sub)
    _add_train(sub)
    _add_pretrain_vision(sub)
    _add_terms_report(sub)
    _add_distill(sub)
    _add_ablate(sub)
    _add_eval(sub)
    _add_report(sub)
    _add_distill_report(sub)
    _add_robustness_report(sub)
    _add_int8_report(sub)
    _add_correctness_report(sub)
    _add_export(sub)
    _add_recover_weights(sub)
    _add_eval_bundle(sub)
    _add_latency(sub)
    _add_hf_stand_in(sub)
    return parser


def load_config_file(path: str | None) -> TrainConfig:
    if path is None:
        return TrainConfig()
    return train_config_from_dict(read_json(path, "config file"), where=str(path))


def train_config_from_args(args) -> TrainConfig:
    cfg = load_config_file(args.config)
    if args.data:
        cfg.data.image_root = args.data
    if args.preset:
        cfg.preset = args.preset
    if args.steps:
        if len(args.steps) != len(cfg.stages):
            raise ValueError(f"--steps got {len(args.steps)} values for {len(cfg.stages)} stages "
                             f"({', '.join(s.name for s in cfg.stages)})")
        for stage, n in zip(cfg.stages, args.steps):
            stage.steps = n
            warmup = min(stage.warmup_steps, max(n // 10, 1))  # a short run should not be all warm-up
            if warmup != stage.warmup_steps:
                print(f"note: --steps {n}: stage {stage.name!r} warms up for {warmup} steps instead of "
                      f"{stage.warmup_steps} (at most a tenth of its steps)", file=sys.stderr)
                stage.warmup_steps = warmup
    if args.batch_size:
        for stage in cfg.stages:
            stage.batch_size = args.batch_size
    if args.limit_images:
        cfg.data.limit_images = args.limit_images
    if args.threads:
        cfg.threads = args.threads
    if getattr(args, "init_from", None):
        cfg.init_from = args.init_from
    if getattr(args, "init_vision", None):
        cfg.init_vision = None if args.init_vision == "none" else args.init_vision
    if not cfg.data.image_root:
        raise ValueError("no data: pass --data IMAGE_ROOT or set data.image_root in --config")
    return cfg


def distill_config_from_args(args) -> TrainConfig:
    cfg = train_config_from_args(args)
    if cfg.distill is None:
        cfg.distill = DistillConfig()
    teachers = args.teacher  # --teacher repeats (action="append")
    cfg.distill.teacher = teachers[0] if len(teachers) == 1 else list(teachers)
    init = args.init or cfg.distill.init
    parts = list(args.init_parts) if args.init_parts else cfg.distill.init_parts
    cfg.distill = dataclasses.replace(cfg.distill, init=init, init_parts=parts)  # validated again
    if args.no_distill:
        for stage in cfg.stages:
            stage.weights = {k: (v if k in TASK_TERMS else 0.0) for k, v in stage.weights.items()}
    return cfg


# ---------------------------------------------------------------------------------------------------------------------
# Commands: one function each, ``cmd_<name>(args) -> exit status``
# ---------------------------------------------------------------------------------------------------------------------


def cmd_data(args) -> int:
    if args.data_command == "perturb":
        from .data.perturb import perturb

        counts = perturb(args.data, args.out, seed=args.seed, split=args.split, workers=args.workers,
                         overwrite=args.overwrite, preset=args.preset)
        print(f"wrote {counts} to {args.out}")
        return 0
    from .data.shapes import synth

    counts = synth(args.out, n_train=args.n[0], n_val=args.n[1], n_test=args.n[2], seed=args.seed,
                   noise_sigma=args.noise, workers=args.workers, renderer=args.renderer)
    print(f"wrote {counts} to {args.out}")
    return 0


def cmd_tokenizer(args) -> int:
    from .train.trainer import build_tokenizer

    cfg = load_config_file(args.config)
    cfg.data.image_root = args.data
    cfg.data.vocab_size = args.vocab_size
    tok = build_tokenizer(cfg)
    tok.save(args.out)
    print(f"wrote {args.out} ({tok.vocab_size} tokens)")
    return 0


def cmd_train(args) -> int:
    from .train.trainer import train

    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be >= 1, got {args.stop_after}")
    path = train(train_config_from_args(args), args.out, overwrite=args.overwrite, stop_after=args.stop_after)
    print(f"run folder: {path}")
    return 0


def cmd_pretrain_vision(args) -> int:
    from .train.trainer import resolve_vision_config
    from .train.vision_pretrain import pretrain_vision

    cfg = load_config_file(args.config)
    root = args.data or cfg.data.image_root
    if not root:
        raise ValueError("no data: pass --data IMAGE_ROOT or set data.image_root in --config")
    if args.steps < 1 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be >= 1")
    path = pretrain_vision(resolve_vision_config(cfg), root, args.out, steps=args.steps, batch_size=args.batch_size,
                           lr=args.lr, augment=cfg.data.augment, seed=cfg.seed, threads=args.threads or cfg.threads)
    print(f"wrote {path}")
    return 0


def cmd_distill(args) -> int:
    from .train.trainer import train

    path = train(distill_config_from_args(args), args.out, overwrite=args.overwrite)
    print(f"run folder: {path}")
    return 0


def cmd_ablate(args) -> int:
    from .ablate import ablate
    from .eval.evaluate import EvalSettings

    grid = read_json(args.grid, "grid file")
    if not isinstance(grid, list) or not all(isinstance(r, dict) and "name" in r for r in grid):
        raise ValueError(f"{args.grid}: expected a list of rows, each with a 'name'")
    settings = EvalSettings(k=args.k, limit_images=args.eval_images, limit_questions=args.eval_images,
                            vqa_rank=args.vqa_rank)
    cfg = distill_config_from_args(args)
    table = ablate(cfg, grid, Path(args.out), settings, overwrite=args.overwrite)
    print(table.read_text())
    if args.report:
        from .eval.report import write_block

        write_block(Path(args.report), "ablation", table.read_text().rstrip())  # the table and its caption
        print(f"wrote the ablation block of {args.report}")
    return 0


def cmd_terms_report(args) -> int:
    from .ablate import ablation_table, runs_caption, runs_results
    from .eval.report import write_block

    runs = []
    for spec in args.run:
        name, sep, path = spec.rpartition("=")
        if not sep or not name or not path:
            raise ValueError(f"--run {spec!r}: expected NAME=RUN")
        runs.append((name, Path(path)))
    results = runs_results(runs)
    table = ablation_table(results) + "\n" + runs_caption(results)
    print(table)
    write_block(Path(args.out), "terms", table.rstrip())
    print(f"wrote the terms block of {args.out}")
    return 0


def cmd_latency(args) -> int:
    from .eval.latency import bundle_latency, latency_table

    results = {}
    for item in args.bundle:
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep else (Path(item).name, item)
        results[name] = bundle_latency(path, tuple(args.batch_sizes), args.repeats, args.threads)
    table = latency_table(results)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


def cmd_report(args) -> int:
    from .eval.report import write_report

    runs = {}
    for item in args.run:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--run {item!r}: expected NAME=RUN_FOLDER")
        runs[name] = Path(path)
    reference_tr1, reference_ir1 = args.reference_tr1, args.reference_ir1
    source = "given on the command line (`--reference-tr1`, `--reference-ir1`)"
    if args.reference_run:
        from .run_folder import RunFolder

        if reference_tr1 is not None or reference_ir1 is not None:
            raise ValueError("--reference-run reads TR@1 and IR@1 from the run: give it or --reference-tr1 / "
                             "--reference-ir1, not both")
        head = RunFolder(args.reference_run).read_metrics().get("headline", {})
        if "retrieval_tr1" not in head or "retrieval_ir1" not in head:
            raise ValueError(f"--reference-run {args.reference_run}: its metrics.json has no headline TR@1 / IR@1")
        reference_tr1, reference_ir1 = head["retrieval_tr1"], head["retrieval_ir1"]
        source = f"from {RunFolder(args.reference_run).metrics_path}"
    write_report(runs, Path(args.out), reference_tr1, reference_ir1, source)
    print(f"wrote the results block of {args.out}")
    return 0


def _three_fields(item: str, expected: str, flag: str = "") -> list[str]:
    """``A=B=C`` -> [A, B, C], each non-empty, or a ValueError saying what was expected."""
    parts = item.split("=")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{flag}{item!r}: expected {expected}")
    return parts


def cmd_distill_report(args) -> int:
    from .eval.latency import bundle_latency
    from .eval.report import distill_markdown, load_distill_metrics, write_block

    if (args.student2 is None) != (args.control2 is None):
        raise ValueError("--student2 and --control2 go together: a second student needs its own control")
    items = [args.teacher, args.student, args.control] + ([args.student2, args.control2] if args.student2 else [])
    runs, bundles, latency = {}, {}, {}
    for item in items:
        name, run, bundle = _three_fields(item, "NAME=RUN_FOLDER=BUNDLE_DIR")
        if name in runs:
            raise ValueError(f"the label {name!r} is given twice: each row needs its own label")
        runs[name], bundles[name] = Path(run), bundle
    load_distill_metrics(runs)  # refuse metrics without sampling errors before minutes of latency measurement
    for name, bundle in bundles.items():
        latency[name] = bundle_latency(bundle, tuple(args.batch_sizes), args.repeats, args.threads)
    table = distill_markdown(runs, latency)
    write_block(Path(args.out), "distill", table)
    print(table)
    print(f"wrote the distill block of {args.out}")
    return 0


def cmd_int8_report(args) -> int:
    from .eval.int8 import graph_megabytes, int8_markdown, read_pair
    from .eval.report import machine, write_block
    from .export.manifest import read_manifest

    fp32, int8 = read_pair(args.fp32, args.int8)
    sizes = graph_megabytes(Path(args.bundle), read_manifest(Path(args.bundle))) if args.bundle else None
    table = int8_markdown(fp32, int8, machine(), sizes)
    write_block(Path(args.out), "int8", table, append=True)
    print(table)
    print(f"wrote the int8 block of {args.out}")
    return 0


def cmd_robustness_report(args) -> int:
    from .eval.report import machine, write_block
    from .eval.robustness import read_robustness_metrics, robustness_markdown

    rows = {}
    for item in args.row:
        name, clean, perturbed = _three_fields(item, "NAME=CLEAN_JSON=PERTURBED_JSON", flag="--row ")
        if name in rows:
            raise ValueError(f"--row {item!r}: the label {name!r} is used twice")
        rows[name] = (read_robustness_metrics(clean), read_robustness_metrics(perturbed))
    table = robustness_markdown(rows, machine())
    write_block(Path(args.out), "robustness", table, append=True)
    print(table)
    print(f"wrote the robustness block of {args.out}")
    return 0


def cmd_correctness_report(args) -> int:
    from .eval.correctness_report import correctness_markdown, read_correctness_metrics
    from .eval.report import machine, write_block

    rows = {}
    for item in args.row:
        name, sep, path = item.rpartition("=")
        if not sep or not name or not path:
            raise ValueError(f"--row {item!r}: expected NAME=JSON")
        if name in rows:
            raise ValueError(f"--row {item!r}: the label {name!r} is used twice")
        rows[name] = read_correctness_metrics(path)
    table = correctness_markdown(rows, machine())
    write_block(Path(args.out), "correctness", table, append=True)
    print(table)
    print(f"wrote the correctness block of {args.out}")
    return 0


def cmd_eval(args) -> int:
    import torch

    from .eval.evaluate import EvalSettings, evaluate, write_metrics
    from .run_folder import load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_run(args.run)
    settings = EvalSettings(k=args.k, num_beams=args.beams, limit_images=args.limit_images, vqa_rank=args.vqa_rank,
                            limit_questions=args.limit_questions)
    metrics = evaluate(loaded.model, loaded.tokenizer, loaded.config, settings)
    json_path, md_path = write_metrics(metrics, loaded.path, label=str(args.run))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def cmd_export(args) -> int:
    from .export.contract import MANIFEST_FILE
    from .export.export import export_bundle, export_random, export_run
    from .export.precision import EXTERNAL_DATA_BYTES
    from .hf.blip import hf_model_type, is_hf_blip_dir
    from .hf_bundle.export import export_hf

    version, int8, fp16 = args.version or "1", bool(args.int8), bool(args.fp16)
    large = {"external_data_above": args.external_data_above or EXTERNAL_DATA_BYTES}
    if args.random_init:
        if args.run:
            raise ValueError(f"export: pass either a run folder ({args.run}) or --random-init, not both")
        out = export_random(args.preset, args.out, data_root=args.data, seed=args.seed, vocab_size=args.vocab_size,
                            name=args.name, version=version, int8=int8, fp16=fp16, overwrite=args.overwrite, **large)
    elif not args.run:
        raise ValueError("export: pass a run folder, or --random-init --preset NAME for random weights")
    elif (Path(args.run) / MANIFEST_FILE).is_file():
        out = export_bundle(args.run, args.out, name=args.name, version=args.version, int8=args.int8,
                            fp16=args.fp16, overwrite=args.overwrite, **large)
    elif is_hf_blip_dir(args.run) or hf_model_type(args.run) is not None:
        if not is_hf_blip_dir(args.run):
            raise ValueError(f"{args.run}: a Hugging Face checkpoint of model_type {hf_model_type(args.run)!r}; "
                             f"export reads BLIP ones (BlipForImageTextRetrieval, BlipForConditionalGeneration, "
                             f"BlipForQuestionAnswering)")
        out = export_hf(args.run, args.out, name=args.name, version=version, int8=int8, fp16=fp16,
                        overwrite=args.overwrite, **large)
    else:
        out = export_run(args.run, args.out, name=args.name, version=version, int8=int8, fp16=fp16,
                         overwrite=args.overwrite, **large)
    total = sum(p.stat().st_size for p in Path(out).iterdir())
    print(f"wrote bundle {out} ({total / 1e6:.2f} MB)")
    parity = json.loads((Path(out) / MANIFEST_FILE).read_text()).get("parity")
    if parity:  # an HF checkpoint: what the export measured against transformers
        diffs = ", ".join(f"{k} {v:.2g}" for k, v in parity["max_abs_diff"].items())
        print(f"parity with {parity['reference']}: max abs diff {diffs}; greedy sequences equal "
              f"{parity['greedy_equal']}/{parity['greedy_total']}")
    return 0


def cmd_recover_weights(args) -> int:
    from .export.recover import recover_bundle_weights

    out = recover_bundle_weights(args.bundle, preset=args.preset)
    print(f"{out}: weights recovered from its graphs, checked against them, written into the bundle")
    return 0


def cmd_eval_bundle(args) -> int:
    from .eval.evaluate import EvalSettings
    from .eval.bundle import compare_decoding, evaluate_bundle, headline_table
    from .infer.ort_backend import OrtBackend

    if args.int8 and args.fp16:
        raise ValueError("eval-bundle: pass --int8 or --fp16, not both")
    bundle = OrtBackend(args.bundle, threads=args.threads, precision="int8" if args.int8 else
                        "fp16" if args.fp16 else "fp32")
    data = load_config_file(args.config).data
    data.image_root = args.data
    data.max_text_tokens, data.max_answer_tokens = bundle.max_text_tokens, bundle.max_answer_tokens
    if args.compare_run:
        from .infer.torch_backend import TorchBackend
        from .run_folder import load_run

        loaded = load_run(args.compare_run)
        result = compare_decoding(TorchBackend(loaded.model, loaded.tokenizer), bundle, data,
                                  limit=args.limit_images or 50)
        print(json.dumps(result, indent=2))
        same = (result.get("captions_identical") == result.get("images")
                and result.get("answers_identical") == result.get("questions"))
        return 0 if same else 1
    settings = EvalSettings(k=args.k, num_beams=args.beams, max_caption_tokens=bundle.max_caption_tokens,
                            vqa_rank=args.vqa_rank,
                            limit_images=args.limit_images, limit_questions=args.limit_questions)
    metrics = evaluate_bundle(bundle, data, settings)
    print(headline_table(metrics, bundle.manifest["metrics"]))
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        print(f"wrote {args.out}")
    return 0


def cmd_hf_stand_in(args) -> int:
    from .hf.stand_in import write_stand_in

    out = write_stand_in(args.out, args.kind, args.size, args.seed)
    print(f"wrote {out} (random weights: for trying the path and measuring speed, never quality)")
    return 0


# Command name -> its function; the parser's subcommands and this table name the same commands.
COMMANDS = {
    "data": cmd_data,
    "tokenizer": cmd_tokenizer,
    "train": cmd_train,
    "pretrain-vision": cmd_pretrain_vision,
    "terms-report": cmd_terms_report,
    "distill": cmd_distill,
    "ablate": cmd_ablate,
    "eval": cmd_eval,
    "report": cmd_report,
    "distill-report": cmd_distill_report,
    "robustness-report": cmd_robustness_report,
    "int8-report": cmd_int8_report,
    "export": cmd_export,
    "recover-weights": cmd_recover_weights,
    "eval-bundle": cmd_eval_bundle,
    "correctness-report": cmd_correctness_report,
    "latency": cmd_latency,
    "hf-stand-in": cmd_hf_stand_in,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:  # bad input; DataError is a ValueError. A bug keeps its traceback
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
