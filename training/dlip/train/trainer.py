"""The training command: tokenizer, model, then each configured stage (pre-training, VQA fine-tuning), logging,
checkpoints and the loss plot in the run folder. Runs plain or under ``torchrun`` (DistributedDataParallel)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import (
    CAPTION_TERMS,
    LOSS_TERMS,
    VQA_TERMS,
    ModelConfig,
    StageConfig,
    TrainConfig,
    VisionConfig,
    model_preset,
    to_dict,
)
from ..data.annotations import load_caption_train, load_vqa
from ..data.batches import CaptionBatch, CaptionCollate, VQABatch, VQACollate
from ..data.tokenizer import SpecialTokens, TextTokenizer, train_wordpiece
from ..data.transforms import Degrade, ImagePreprocess
from ..distill.models import init_student_from
from ..distill.step import DistillStep, make_projector
from ..distill.teachers import Teacher, assign_terms, load_teachers
from ..distill.terms import HiddenProjector
from ..model.med import BlipMED
from ..objectives import pretrain_forward, total_loss, vqa_forward
from ..run_folder import RunFolder, load_run, save_checkpoint
from . import distributed as dist
from .batches import caption_dataset, infinite_loader, vqa_dataset, vqa_sample_weights
from .logger import MetricLogger
from .plot import plot_losses
from .schedule import cosine_with_warmup, make_optimizer
from .vision_pretrain import load_vision_init


def build_tokenizer(cfg: TrainConfig) -> TextTokenizer:
    """Loads ``data.tokenizer`` or trains a WordPiece vocabulary on the training captions, questions and answers."""
    if cfg.data.tokenizer:
        return TextTokenizer.from_file(cfg.data.tokenizer)
    texts = [p.caption for p in load_caption_train(cfg.data.path(cfg.data.train_captions))]
    if cfg.data.train_vqa:
        for item in load_vqa(cfg.data.path(cfg.data.train_vqa)):
            texts.append(item.question)
            texts.extend(item.answers)
    return TextTokenizer(train_wordpiece(texts, vocab_size=cfg.data.vocab_size))


def resolve_model_config(cfg: TrainConfig, tokenizer: TextTokenizer) -> ModelConfig:
    base = cfg.model if cfg.model is not None else model_preset(cfg.preset)
    return base.with_vocab(tokenizer.vocab_size, tokenizer.special.pad)


def resolve_vision_config(cfg: TrainConfig) -> VisionConfig:
    """The image encoder a training config builds (its model section, else its preset's)."""
    return (cfg.model if cfg.model is not None else model_preset(cfg.preset)).vision


def preprocess_for(model_cfg: ModelConfig, augment: dict | None = None) -> ImagePreprocess:
    """The model's preprocessing; with ``augment`` (``data.augment``) the train-time degradation before it."""
    return ImagePreprocess(model_cfg.vision.image_size, augment=Degrade(**augment) if augment else None)


@dataclass
class Models:
    """What a run trains, built once before its stages: the resolved config, the tokenizer, the model, and when
    distilling the frozen teachers, which teacher each distillation term comes from, and the student -> teacher
    width maps (one set shared by every stage)."""

    cfg: TrainConfig  # with the resolved ``model`` section
    tokenizer: TextTokenizer
    model: BlipMED
    teachers: list[Teacher] = dataclasses.field(default_factory=list)
    sources: dict[str, int] = dataclasses.field(default_factory=dict)  # term -> index in ``teachers``
    projector: HiddenProjector | None = None

    @property
    def teacher(self) -> BlipMED | None:
        """The first teacher's model (the only one of a single-teacher run); None when not distilling."""
        return self.teachers[0].model if self.teachers else None

    def step(self, stage: StageConfig) -> nn.Module:
        """One stage's forward pass as a module (forward(captions, vqa) -> named losses); its parameters that
        require grad are the ones the stage trains."""
        if not self.teachers:
            return TrainStep(self.model, self.tokenizer.special, stage.weights)
        return DistillStep(self.model, [t.model for t in self.teachers], self.tokenizer.special, stage.weights,
                           self.cfg.distill, projector=self.projector, sources=self.sources)


def build_models(cfg: TrainConfig, info: dist.DistInfo) -> Models:
    """The tokenizer and the model of a run, on ``info.device``: a fresh model (tokenizer from ``data.tokenizer``
    or trained), the weights of ``init_from``, or a DLIP student of ``distill.teacher`` (whose tokenizer it shares).
    The model's initial weights are the same on every rank.

    Distilling, every term with a weight > 0 in some stage is assigned its teacher here, before any step: a term no
    teacher holds the parts for raises ``ValueError`` (``teachers.assign_terms``)."""
    teachers: list[Teacher] = []
    sources: dict[str, int] = {}
    start = None
    if cfg.init_from is not None:
        if cfg.distill is not None:
            raise ValueError("init_from and distill cannot be combined: use distill.init for a student")
        start = load_run(cfg.init_from)
        tokenizer = start.tokenizer
        cfg = dataclasses.replace(cfg, model=start.config.model)
    elif cfg.distill is not None:
        if cfg.data.tokenizer:
            raise ValueError(f"data.tokenizer {cfg.data.tokenizer!r} with distill: a student shares its teacher's "
                             f"tokenizer (the distillation terms compare the two models on the same token ids); "
                             f"remove data.tokenizer")
        teachers = load_teachers(cfg.distill.teachers)
        union = {k: max(s.weights.get(k, 0) for s in cfg.stages) for k in LOSS_TERMS}
        sources = assign_terms(teachers, union)
        for t in teachers:
            t.model.to(info.device)
        tokenizer = teachers[0].tokenizer
    else:
        tokenizer = build_tokenizer(cfg)
    cfg = dataclasses.replace(cfg, model=resolve_model_config(cfg, tokenizer))
    if teachers and cfg.model.vision.image_size != teachers[0].model.cfg.vision.image_size:
        raise ValueError(f"student image_size {cfg.model.vision.image_size} differs from the teacher's "
                         f"{teachers[0].model.cfg.vision.image_size}: set model.vision.image_size")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = BlipMED(cfg.model)
    if start is not None:
        model.load_state_dict(start.model.state_dict())
    if cfg.init_vision is not None:
        if start is not None or teachers:
            raise ValueError("init_vision starts a fresh model's image encoder; it cannot be combined with init_from "
                             "or distill")
        model.visual_encoder.load_state_dict(load_vision_init(cfg.init_vision, cfg.model.vision))
    if teachers:
        init_student_from(model, teachers, cfg.distill.init, cfg.distill.init_parts)
    model = model.to(info.device)
    torch.manual_seed(cfg.seed + info.rank)
    projector = None
    if teachers:
        projector = make_projector(model, [t.model for t in teachers], union, sources).to(info.device)
    return Models(cfg, tokenizer, model, teachers, sources, projector)


@dataclass
class RunContext:
    """What every stage of a run shares."""

    models: Models
    info: dist.DistInfo
    run: RunFolder
    logger: MetricLogger | None  # the main process only
    progress: bool  # progress bars (the main process only)


def train(cfg: TrainConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Trains a model as configured; returns the run folder. With ``cfg.distill`` set, the model is a DLIP student
    of ``cfg.distill.teacher`` (whose tokenizer it shares) and the stages' distillation weights apply."""
    info = dist.setup()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + info.rank)
        models = build_models(cfg, info)
        run = RunFolder.create(out, to_dict(models.cfg), overwrite=overwrite) if info.is_main else None
        dist.barrier()
        run = run or RunFolder.open(out)
        if info.is_main:
            models.tokenizer.save(run.tokenizer_path)
        ctx = RunContext(models, info, run, MetricLogger(run) if info.is_main else None, progress and info.is_main)
        step0 = 0
        for stage in models.cfg.stages:
            step0 = run_stage(ctx, stage, step0, stop_after)
            if stop_after is not None and step0 >= stop_after:
                break
        if info.is_main:
            plot_losses(run.log_jsonl, run.plot_path)
        return run.path
    finally:
        dist.cleanup()


def stage_loaders(stage: StageConfig, ctx: RunContext, step0: int):
    """Infinite caption / VQA batch iterators for the tasks a stage trains (None where its weights are 0)."""
    cfg, tokenizer, info, w = ctx.models.cfg, ctx.models.tokenizer, ctx.info, stage.weights
    preprocess = preprocess_for(cfg.model, cfg.data.augment)
    captions = vqa = None
    if any(w.get(k, 0) > 0 for k in CAPTION_TERMS):
        ds = caption_dataset(cfg.data, preprocess)
        captions = infinite_loader(ds, CaptionCollate(tokenizer, cfg.data.max_text_tokens), stage.batch_size, info,
                                   cfg.seed + step0, cfg.num_workers)
    if any(w.get(k, 0) > 0 for k in VQA_TERMS):
        ds = vqa_dataset(cfg.data, preprocess)
        vqa = infinite_loader(ds, VQACollate(tokenizer, cfg.data.max_text_tokens, cfg.data.max_answer_tokens),
                              stage.batch_size, info, cfg.seed + step0 + 1, cfg.num_workers,
                              weights=vqa_sample_weights(ds, cfg.data.vqa_type_weights))
    return captions, vqa


def run_stage(ctx: RunContext, stage: StageConfig, step0: int, stop_after: int | None = None) -> int:
    """Trains ``stage.steps`` steps of the stage's step module (``Models.step``), updating its parameters that
    require grad; checkpoints the model. Returns the global step after. ``stop_after``: stop (and checkpoint) at that
    global step, the learning-rate schedule unchanged (a snapshot of a longer run)."""
    cfg, info, progress = ctx.models.cfg, ctx.info, ctx.progress
    step_module = ctx.models.step(stage)
    captions, vqa = stage_loaders(stage, ctx, step0)
    set_trainable(step_module, stage.trainable, stage.frozen)
    ddp_step = dist.wrap_ddp(step_module, info)
    optimizer = make_optimizer(step_module, stage.lr, stage.weight_decay)
    params = [p for p in step_module.parameters() if p.requires_grad]
    step_module.train()
    t0, seen = time.time(), 0
    bar = tqdm(range(stage.steps), desc=stage.name, disable=not progress, dynamic_ncols=True)
    for i in bar:
        lr = cosine_with_warmup(i, stage.steps, stage.warmup_steps, stage.lr, stage.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        cap_batch = next(captions).to(info.device) if captions is not None else None
        vqa_batch = next(vqa).to(info.device) if vqa is not None else None
        losses = ddp_step(cap_batch, vqa_batch)
        seen += sum(b.pixel_values.shape[0] for b in (cap_batch, vqa_batch) if b is not None)
        loss = total_loss(losses, stage.weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if stage.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
        optimizer.step()
        step = step0 + i + 1
        if progress:
            bar.set_postfix({k.removesuffix("_loss"): f"{v.item():.3f}" for k, v in losses.items()})
        if ctx.logger is not None and (step % cfg.log_every == 0 or i == stage.steps - 1):
            elapsed = time.time() - t0
            ctx.logger.log(step=step, stage=stage.name, lr=lr, losses={k: v.item() for k, v in losses.items()},
                           wall_time=elapsed, samples_per_sec=seen * info.world_size / max(elapsed, 1e-9))
        last = i == stage.steps - 1 or step == stop_after
        if info.is_main and (step % cfg.checkpoint_every == 0 or last):
            save_checkpoint(ctx.run, ctx.models.model.state_dict(), step, {"stage": stage.name})
        if step == stop_after:
            return step
    return step0 + stage.steps


def set_trainable(module: nn.Module, parts: list[str] | None, frozen: list[str] | None = None) -> None:
    """Updates only parameters whose dotted name contains one of ``parts`` as a component (all when None), minus
    those containing one of ``frozen``."""
    names = [name for name, _ in module.named_parameters()]
    for part in (parts or []) + (frozen or []):
        if not any(part in name.split(".") for name in names):
            raise ValueError(f"stage trainable/frozen part '{part}' matches no parameter")
    for name, p in module.named_parameters():
        components = name.split(".")
        keep = parts is None or any(part in components for part in parts)
        p.requires_grad_(keep and not any(part in components for part in frozen or []))


class TrainStep(nn.Module):
    """One step's forward pass as a module, so DistributedDataParallel wraps it and synchronises gradients."""

    def __init__(self, model: BlipMED, special: SpecialTokens, weights: dict[str, float]):
        super().__init__()
        self.model, self.special, self.weights = model, special, weights

    def forward(self, captions: CaptionBatch | None, vqa: VQABatch | None) -> dict[str, torch.Tensor]:
        losses = {}
        if captions is not None:
            losses.update(pretrain_forward(self.model, captions, self.special, self.weights).losses)
        if vqa is not None:
            vqa_losses, *_ = vqa_forward(self.model, vqa, self.special)
            losses.update(vqa_losses)
        return losses
