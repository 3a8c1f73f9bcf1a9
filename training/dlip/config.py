"""Typed configuration: model sizes (presets live in ``presets.json``) and training settings.

Every config is a dataclass; ``from_dict`` rejects unknown keys with a ``ValueError`` naming the key, so a typo in a
config file fails loudly instead of being ignored. The resolved config of a run is written to its folder.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PRESETS_PATH = Path(__file__).with_name("presets.json")

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Builds dataclass ``cls`` from ``data``, recursing into nested dataclasses; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)  # the annotations as types (they are strings under `from __future__`)
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_type(hints[name])
        kwargs[name] = from_dict(sub, value, f"{where}.{name}") if sub is not None and value is not None else value
    try:
        return cls(**kwargs)
    except TypeError as err:  # a missing required field
        raise ValueError(f"{where}: {err}") from None


def _dataclass_type(ftype: Any) -> type | None:
    """The dataclass an annotation names (``X`` or ``X | None``), else None."""
    candidates = typing.get_args(ftype) if isinstance(ftype, types.UnionType) else (ftype,)
    found = [t for t in candidates if isinstance(t, type) and dataclasses.is_dataclass(t)]
    return found[0] if found else None


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


@dataclass
class VisionConfig:
    image_size: int = 64  # input side in pixels (square)
    patch_size: int = 8  # ViT patch side in pixels; tokens = (image_size / patch_size)^2 + 1 ([CLS])
    hidden_size: int = 256  # Dv
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024  # MLP width
    layer_norm_eps: float = 1e-5  # HF BLIP vision default
    # initial position embeddings (learned either way): "normal" (BLIP: truncated normal, std 0.02) or "sincos"
    # (2D sine-cosine of the patch's row and column, as MAE; the model knows where each patch is from step 0)
    pos_embed_init: str = "normal"
    # how pixels become patch tokens: "patch" (BLIP: one linear map of each patch_size x patch_size patch) or
    # "conv" (a convolutional stem: log2(patch_size) 3x3 stride-2 convolutions with BatchNorm and ReLU, then a 1x1
    # convolution to the width; Xiao et al. 2021, "Early convolutions help transformers see better")
    stem: str = "patch"
    # add the fixed 2D sine-cosine position table to the patch tokens again after the final LayerNorm ([CLS] gets
    # nothing), so the text side's cross-attention reads where each token is (as DETR adds spatial encodings where its
    # decoder reads the image). BLIP has no such term: False for real checkpoints.
    output_pos_embed: bool = False

    def __post_init__(self) -> None:
        if self.pos_embed_init not in ("normal", "sincos"):
            raise ValueError(f"vision.pos_embed_init must be 'normal' or 'sincos', not {self.pos_embed_init!r}")
        if self.stem not in ("patch", "conv"):
            raise ValueError(f"vision.stem must be 'patch' or 'conv', not {self.stem!r}")
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(f"vision.stem 'conv' needs a patch_size that is a power of 2, got {self.patch_size}")
        if self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision.hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class TextConfig:
    """A BERT stack, used as the text encoder (bidirectional) or the text decoder (causal)."""

    vocab_size: int = 1000
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 64  # longest token sequence, specials included
    fusion_layers: int = -1  # how many of the LAST layers have cross-attention to the image; -1 = all (BLIP)
    layer_norm_eps: float = 1e-12  # BERT default
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"text.hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if not -1 <= self.fusion_layers <= self.num_layers:
            raise ValueError(f"fusion_layers {self.fusion_layers} must be -1 or in [0, {self.num_layers}]")

    @property
    def num_fusion_layers(self) -> int:
        return self.num_layers if self.fusion_layers == -1 else self.fusion_layers

    def has_cross_attention(self, layer: int) -> bool:
        return layer >= self.num_layers - self.num_fusion_layers


@dataclass
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)  # text encoder (ITC unimodal, ITM fused)
    decoder: TextConfig = field(default_factory=TextConfig)  # causal text decoder (captioning / VQA answers)
    embed_dim: int = 128  # E: shared ITC embedding size
    temp: float = 0.07  # initial ITC temperature (learnable, clamped to [0.001, 0.5])
    label_smoothing: float = 0.1  # LM loss label smoothing (BLIP)
    hidden_act: str = "gelu"  # exact (erf) GELU everywhere, as BLIP
    # VQA: the answer decoder cross-attends to the image tokens as well as to the question states (concatenated).
    # BLIP's reads the question states only (False, and so every HF checkpoint). On Shapes, the answer decoder learns
    # "where is ..." questions from the question states alone only slowly; given the image tokens too, much faster.
    vqa_decoder_reads_image: bool = False

    def with_vocab(self, vocab_size: int, pad_token_id: int) -> ModelConfig:
        """Returns a copy whose text stacks use the tokenizer's vocabulary."""
        text = dataclasses.replace(self.text, vocab_size=vocab_size, pad_token_id=pad_token_id)
        decoder = dataclasses.replace(self.decoder, vocab_size=vocab_size, pad_token_id=pad_token_id)
        return dataclasses.replace(self, text=text, decoder=decoder)


def load_presets(path: Path = PRESETS_PATH) -> dict[str, dict[str, Any]]:
    with open(path) as f:
        return json.load(f)


def model_preset(name: str) -> ModelConfig:
    presets = load_presets()
    if name not in presets:
        raise ValueError(f"unknown preset '{name}' (known: {', '.join(sorted(presets))})")
    return from_dict(ModelConfig, presets[name]["model"], where=f"preset {name}")


@dataclass
class DataConfig:
    """Annotation files in BLIP's formats (COCO-Karpathy / Flickr30K captions, VQAv2), image paths relative to
    ``image_root``. ``python -m dlip data synth`` writes the Shapes benchmark in exactly this layout."""

    image_root: str = ""
    train_captions: str = "annotations/caption_train.json"  # relative paths are under image_root
    val_captions: str | None = "annotations/caption_val.json"
    test_captions: str | None = "annotations/caption_test.json"
    train_vqa: str | None = "annotations/vqa_train.json"
    test_vqa: str | None = "annotations/vqa_test.json"
    tokenizer: str | None = None  # a tokenizer.json; None = train one on the training text
    vocab_size: int = 1000  # for a trained tokenizer
    max_words: int = 30  # captions/questions are cut to this many words (BLIP's pre_caption)
    max_text_tokens: int = 35  # token budget of a caption or question, specials included
    max_answer_tokens: int = 10
    limit_images: int | None = None  # use only the first N training images (smoke tests)
    # VQA training questions are drawn with replacement in proportion to these weights, keyed by the annotation's
    # "question_type" (VQAv2's "what color", Shapes' "region"); unlisted types and untyped questions weigh 1. None:
    # every question once per epoch, shuffled
    vqa_type_weights: dict[str, float] | None = None
    # the captions the LM (captioning) objective learns: "all" of them, as BLIP; "first": each image's first caption
    # in the annotation file for every caption item (ITC/ITM still see every caption). On Shapes the first caption
    # always names every object, so the captioner learns to describe the whole scene instead of the most likely
    # template family
    lm_captions: str = "all"
    # train-time degradation (dlip.data.transforms.Degrade): {"p", "min_size", "blur", "jpeg": [low, high]}; None: off
    augment: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.lm_captions not in ("all", "first"):
            raise ValueError(f"data.lm_captions must be 'all' or 'first', got {self.lm_captions!r}")
        if self.augment is not None:
            from .data.transforms import Degrade

            try:
                Degrade(**self.augment)  # validates the keys and values now, not in a DataLoader worker
            except TypeError as err:
                raise ValueError(f"data.augment: {err} (keys: p, min_size, blur, jpeg)") from None
        for name, weight in (self.vqa_type_weights or {}).items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"data.vqa_type_weights: the weight of '{name}' must be a number >= 0, got {weight!r}")

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else Path(self.image_root) / p


# Loss weights a stage may set. Task terms: ITC/ITM/LM on caption batches, VQA on question batches. DLIP terms:
# hidden_* (representation), attn_* (self-attention maps), cross_* (cross-attention maps), out_* (teacher outputs).
CAPTION_TERMS = ("itc", "itm", "lm", "hidden_vision", "hidden_text", "hidden_fusion", "hidden_decoder",
                 "attn_vision", "attn_text", "attn_fusion", "attn_decoder", "cross_fusion", "cross_decoder",
                 "out_itc", "out_itm", "out_lm")
VQA_TERMS = ("vqa", "out_vqa")
LOSS_TERMS = CAPTION_TERMS + VQA_TERMS
TASK_TERMS = ("itc", "itm", "lm", "vqa")


@dataclass
class StageConfig:
    """One training stage. Loss weights: itc, itm, lm (captions) and vqa (question answering); 0 skips a term."""

    name: str = "pretrain"
    steps: int = 1000
    batch_size: int = 32  # images per step (VQA batches: questions per step)
    lr: float = 3e-4  # peak learning rate (AdamW, cosine decay after linear warm-up)
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    weights: dict[str, float] = field(default_factory=lambda: {"itc": 1.0, "itm": 1.0, "lm": 1.0, "vqa": 0.0})

    trainable: list[str] | None = None  # model parts to update (e.g. ["text_decoder"]); None = all
    frozen: list[str] | None = None  # model parts to keep fixed (applied after ``trainable``)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(f"stage {self.name}: unknown loss weight '{unknown[0]}' (known: {', '.join(LOSS_TERMS)})")


# Student parts that ``distill.init`` "teacher" / "select" can start from the teacher (dlip/distill/models.py):
# vision = visual_encoder + vision_proj; text = text_encoder + text_proj + itm_head; decoder = text_decoder.
INIT_PARTS = ("vision", "text", "decoder")


@dataclass
class DistillConfig:
    """DLIP: the teacher and how the student learns from it (term weights live in each stage's ``weights``)."""

    # a run folder of ours or a Hugging Face BLIP checkpoint directory, or a list of HF checkpoint directories
    # (e.g. retrieval, captioning, VQA): each distillation term comes from the first that holds the parts it reads
    teacher: str | list[str] = ""
    init: str = "random"  # "random" | "teacher" (every k-th teacher layer where widths match) | "select" (the same,
    # and the leading slice of each teacher tensor where the student is narrower: weight selection) | a run folder
    # with init "teacher" / "select": the parts started from the teacher (INIT_PARTS); the others keep their fresh
    # initialisation, and tensors of no part (the ITC temperature) come from the teacher only when every part does
    init_parts: list[str] = field(default_factory=lambda: list(INIT_PARTS))
    layer_map: dict[str, Any] = field(default_factory=lambda: {
        "vision": "uniform", "text": "uniform", "fusion": "uniform", "decoder": "uniform",
        "cross_fusion": "last", "cross_decoder": "uniform"})  # per part: "uniform" | "last[-k]" | [[i, j], ...]
    hidden_kind: str = "mse"  # representation distance: "mse" or "cosine"
    include_embeddings: bool = False  # also distill the embedding outputs (hidden state 0)
    temperature: float = 1.0  # ITM / LM logit distillation temperature (ITC uses each model's own)

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, str):  # a list: of one or more non-empty paths, each once
            dirs = self.teacher
            if not isinstance(dirs, list) or not dirs or not all(isinstance(d, str) and d for d in dirs):
                raise ValueError(f"distill.teacher must be a directory or a non-empty list of directories, "
                                 f"got {dirs!r}")
            if len(set(dirs)) != len(dirs):
                raise ValueError(f"distill.teacher lists a directory twice: {dirs}")
        if self.hidden_kind not in ("mse", "cosine"):
            raise ValueError(f"distill.hidden_kind '{self.hidden_kind}' must be 'mse' or 'cosine'")
        check_init_parts(self.init, self.init_parts)
        parts = {"vision", "text", "fusion", "decoder", "cross_fusion", "cross_decoder"}
        unknown = sorted(set(self.layer_map) - parts)
        if unknown:
            raise ValueError(f"distill.layer_map: unknown part '{unknown[0]}' (known: {', '.join(sorted(parts))})")


    @property
    def teachers(self) -> list[str]:
        """The teacher directories, in the order given ([] when not set yet)."""
        dirs = [self.teacher] if isinstance(self.teacher, str) else self.teacher
        return [d for d in dirs if d]


def check_init_parts(init: str, parts: list[str]) -> None:
    """``ValueError`` unless ``parts`` is a non-empty list of INIT_PARTS, limited only for init "teacher" / "select"."""
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"distill.init_parts must be a non-empty list of {', '.join(INIT_PARTS)}, got {parts!r} "
                         "(for no part from the teacher use init 'random')")
    unknown = [p for p in parts if p not in INIT_PARTS]
    if unknown:
        raise ValueError(f"distill.init_parts: unknown part {unknown[0]!r} (known: {', '.join(INIT_PARTS)})")
    if len(set(parts)) != len(parts):
        raise ValueError(f"distill.init_parts lists a part twice: {parts}")
    if set(parts) != set(INIT_PARTS) and init not in ("teacher", "select"):
        raise ValueError(f"distill.init_parts {parts} limits which parts start from the teacher, which only init "
                         f"'teacher' or 'select' does (init is {init!r})")


@dataclass
class TrainConfig:
    preset: str = "micro"
    model: ModelConfig | None = None  # resolved from the preset (with the tokenizer's vocabulary) when None
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    seed: int = 0
    log_every: int = 10  # steps between log records
    checkpoint_every: int = 500  # steps between checkpoints (and one at the end of every stage)
    num_workers: int = 1  # data-loading processes
    threads: int = 0  # torch intra-op threads per process; 0 = torch's default
    distill: DistillConfig | None = None  # set: train the preset as a DLIP student of distill.teacher
    init_from: str | None = None  # a run folder: start from its weights, model config and tokenizer (fine-tuning)
    # a vision.pt written by `dlip pretrain-vision` for this model's image encoder: the image encoder starts from it
    # (as BLIP's starts from an ImageNet-pretrained ViT), the rest from random weights
    init_vision: str | None = None


def train_config_from_dict(data: dict[str, Any], where: str = "config") -> TrainConfig:
    """``from_dict`` plus the list of stages (dataclass lists are not resolved generically)."""
    data = dict(data)
    stages = data.pop("stages", None)
    cfg = from_dict(TrainConfig, data, where)
    if stages is not None:
        if not isinstance(stages, list) or not stages:
            raise ValueError(f"{where}.stages: expected a non-empty list of stages")
        cfg.stages = [from_dict(StageConfig, s, f"{where}.stages[{i}]") for i, s in enumerate(stages)]
    return cfg
