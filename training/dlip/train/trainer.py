"""The training command: tokenizer, model, then each configured stage (pre-training, VQA fine-tuning), logging,
checkpoints and the loss plot in the run folder. Runs plain or under ``torchrun`` (DistributedDataParallel)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import CAPTION_TERMS, LOSS_TERMS, VQA_TERMS, ModelConfig, StageConfig, TrainConfig, model_preset, to_dict
from ..data.annotations import load_caption_train, load_vqa
from ..data.tokenizer import SpecialTokens, TextTokenizer, train_wordpiece
from ..data.transforms import ImagePreprocess
from ..model.med import BlipMED
from ..run_folder import RunFolder, load_run, save_checkpoint
from . import distributed as dist
from .batches import (CaptionBatch, CaptionCollate, VQABatch, VQACollate, caption_dataset, infinite_loader,
                      vqa_dataset, vqa_sample_weights)
from .objectives import pretrain_forward, total_loss, vqa_forward
from .plot import plot_losses
from .logger import MetricLogger
from .schedule import cosine_with_warmup, make_optimizer


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


def preprocess_for(model_cfg: ModelConfig) -> ImagePreprocess:
    return ImagePreprocess(model_cfg.vision.image_size)


def train(cfg: TrainConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Trains a model as configured; returns the run folder. With ``cfg.distill`` set, the model is a DLIP student
    of ``cfg.distill.teacher`` (whose tokenizer it shares) and the stages' distillation weights apply."""
    info = dist.setup()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + info.rank)
        teacher = start = None
        if cfg.init_from is not None:
            if cfg.distill is not None:
                raise ValueError("init_from and distill cannot be combined: use distill.init for a student")
            start = load_run(cfg.init_from)
            tokenizer = start.tokenizer
            cfg = dataclasses.replace(cfg, model=start.config.model)
        elif cfg.distill is not None:
            from ..distill.models import load_teacher

            teacher, tokenizer = load_teacher(cfg.distill.teacher)
            teacher = teacher.to(info.device)
        else:
            tokenizer = build_tokenizer(cfg)
        cfg = dataclasses.replace(cfg, model=resolve_model_config(cfg, tokenizer))
        if teacher is not None and cfg.model.vision.image_size != teacher.cfg.vision.image_size:
            raise ValueError(f"student image_size {cfg.model.vision.image_size} differs from the teacher's "
                             f"{teacher.cfg.vision.image_size}: set model.vision.image_size")
        run = RunFolder.create(out, to_dict(cfg), overwrite=overwrite) if info.is_main else None
        dist.barrier()
        run = run or RunFolder.open(out)
        if info.is_main:
            tokenizer.save(run.tokenizer_path)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = BlipMED(cfg.model)
        if start is not None:
            model.load_state_dict(start.model.state_dict())
        if teacher is not None:
            from ..distill.models import init_student

            init_student(model, teacher, cfg.distill.init)
        model = model.to(info.device)
        torch.manual_seed(cfg.seed + info.rank)
        logger = MetricLogger(run) if info.is_main else None
        step0 = 0
        if teacher is not None:  # one set of width maps shared by every stage
            from ..distill.step import make_projector

            union = {k: max(s.weights.get(k, 0) for s in cfg.stages) for k in LOSS_TERMS}
            projector = make_projector(model, teacher, union).to(info.device)
        for stage in cfg.stages:
            if teacher is None:
                step = trainable = TrainStep(model, tokenizer.special, stage.weights)
            else:
                from ..distill.step import DistillStep

                step = trainable = DistillStep(model, teacher, tokenizer.special, stage.weights, cfg.distill,
                                               projector=projector)
            step0 = run_stage(step, trainable, stage, cfg, tokenizer, info, run, logger, step0, progress and info.is_main,
                              model.state_dict)
        if info.is_main:
            plot_losses(run.log_jsonl, run.plot_path)
        return run.path
    finally:
        dist.cleanup()


def stage_loaders(stage: StageConfig, cfg: TrainConfig, tokenizer: TextTokenizer, info: dist.DistInfo,
                  step0: int):
    """Infinite caption / VQA batch iterators for the tasks a stage trains (None where its weights are 0)."""
    w = stage.weights
    preprocess = preprocess_for(cfg.model)
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


def run_stage(step_module: nn.Module, trainable: nn.Module, stage: StageConfig, cfg: TrainConfig,
              tokenizer: TextTokenizer, info: dist.DistInfo, run: RunFolder, logger: MetricLogger | None, step0: int,
              progress: bool, model_state) -> int:
    """Trains ``stage.steps`` steps of ``step_module`` (forward(captions, vqa) -> named losses), updating the
    parameters of ``trainable`` that require grad; checkpoints ``model_state()``. Returns the global step after."""
    captions, vqa = stage_loaders(stage, cfg, tokenizer, info, step0)
    set_trainable(trainable, stage.trainable, stage.frozen)
    ddp_step = dist.wrap_ddp(step_module, info)
    optimizer = make_optimizer(trainable, stage.lr, stage.weight_decay)
    params = [p for p in trainable.parameters() if p.requires_grad]
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
        if logger is not None and (step % cfg.log_every == 0 or i == stage.steps - 1):
            elapsed = time.time() - t0
            logger.log(step=step, stage=stage.name, lr=lr, losses={k: v.item() for k, v in losses.items()},
                       wall_time=elapsed, samples_per_sec=seen * info.world_size / max(elapsed, 1e-9))
        if info.is_main and (step % cfg.checkpoint_every == 0 or i == stage.steps - 1):
            save_checkpoint(run, model_state(), step, {"stage": stage.name})
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
            out = pretrain_forward(self.model, captions.pixel_values, captions.input_ids, captions.attention_mask,
                                   captions.image_ids, self.special, self.weights)
            losses.update(out.losses)
        if vqa is not None:
            vqa_losses, *_ = vqa_forward(self.model, vqa.pixel_values, vqa.question_ids, vqa.question_mask,
                                         vqa.answer_ids, vqa.answer_mask, vqa.answer_weights, vqa.n_answers,
                                         self.special)
            losses.update(vqa_losses)
        return losses
