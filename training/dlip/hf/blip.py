"""Loads a Hugging Face BLIP checkpoint directory (``save_pretrained`` of ``BlipForImageTextRetrieval``,
``BlipForConditionalGeneration`` or ``BlipForQuestionAnswering``) as our ``BlipMED``, to serve as a DLIP teacher.

The HF config becomes our ``ModelConfig`` and every checkpoint tensor is copied through an explicit name table (ours
<- HF). Which parts a checkpoint holds depends on its class; the others keep their random initialisation and are
listed in ``HFTeacher.missing``:

==============================  ======  ============  ============  ===========================  ========
class                           vision  text_encoder  text_decoder  vision/text_proj, itm_head   tasks
==============================  ======  ============  ============  ===========================  ========
BlipForImageTextRetrieval       yes     yes           -             yes                          itc, itm
BlipForConditionalGeneration    yes     -             yes           -                            lm
BlipForQuestionAnswering        yes     yes           yes           -                            vqa
==============================  ======  ============  ============  ===========================  ========

No HF class holds BLIP's ITC temperature (``temp``): HF's retrieval model returns the raw cosine similarity. A
``temp`` tensor in the checkpoint is loaded; otherwise ``cfg.temp`` is kept, so ``ITCOutput.sim_i2t *
model.clamped_temp()`` is what HF returns as ``itm_score`` with ``use_itm_head=False``.

Token ids: HF's ``forward`` methods pass the ids they are given straight to the text stacks. To reproduce them, give
our methods the same ids (the processor's ``[CLS] ... [SEP]``):

- retrieval ITC (``use_itm_head=False``): ``model.itc(pixels, ids, mask)`` / ``model.encode_text(ids, mask)``;
- retrieval ITM (``use_itm_head=True``): ``model.itm_logits(model.fuse(ids, mask, image_embeds).last_hidden)``.
  HF keeps the [CLS] id here; Salesforce's BLIP swapped in [ENC] (``bos_token_id + 1`` in its tokenizer). Set
  ``ids[:, 0]`` yourself if you want BLIP's convention;
- captioning: ``model.decode(ids, mask, image_embeds).logits``. HF's ``forward`` keeps ``ids[:, 0]`` as given; HF's
  ``generate`` (and BLIP's training) put [DEC] (``bos_token_id``) first and drop the prompt's final [SEP]. Teacher
  logits for distillation should use [DEC] first, as the checkpoint was trained that way;
- VQA: question states ``model.fuse(q_ids, q_mask, image_embeds).last_hidden`` (HF keeps [CLS]; BLIP used [ENC]);
  answer logits ``model.decode(a_ids, a_mask, question_states, encoder_mask).logits``. HF's ``forward`` with
  ``labels`` feeds the labels themselves as decoder input (no shift, no [DEC] overwrite); ``generate`` starts from
  [DEC]. HF (5.24) drops ``encoder_attention_mask`` on its way to the cross-attention (``BlipTextAttention`` passes
  it as ``attention_mask``, which cross-attention ignores), so its decoder also attends to padded question tokens:
  ``encoder_mask=None`` reproduces HF, ``encoder_mask=q_mask`` reproduces Salesforce's BLIP. The two agree when the
  questions are unpadded (HF's own ``generate`` passes an all-ones mask).

HF's LM loss is ``dlip.losses.lm_loss(logits, ids, labels != -100, cfg.label_smoothing)``: ``label_smoothing`` is
copied from the HF text config (0.0 by default, where BLIP trained with 0.1).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig, TextConfig, VisionConfig
from ..model.med import BlipMED

RETRIEVAL = "BlipForImageTextRetrieval"
CAPTIONING = "BlipForConditionalGeneration"
VQA = "BlipForQuestionAnswering"
ARCHITECTURES = (RETRIEVAL, CAPTIONING, VQA)

PARTS = ("vision", "text_encoder", "text_decoder", "vision_proj", "text_proj", "itm_head", "temp")

# Checkpoint keys that carry no weights and are skipped: position-id buffers that older checkpoints saved.
IGNORED_SUFFIXES = ("embeddings.position_ids",)

# ----------------------------------------------------------------------------------------------------- name table
# (our sub-module, HF sub-module) inside one layer; each expands to .weight and .bias.
_VISION_LAYER = (("norm1", "layer_norm1"), ("attn.qkv", "self_attn.qkv"), ("attn.proj", "self_attn.projection"),
                 ("norm2", "layer_norm2"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"))
_TEXT_ATTENTION = (("query", "self.query"), ("key", "self.key"), ("value", "self.value"),
                   ("out", "output.dense"), ("norm", "output.LayerNorm"))
_TEXT_FFN = (("fc1", "intermediate.dense"), ("fc2", "output.dense"), ("ffn_norm", "output.LayerNorm"))

# One entry: our parameter name -> HF key candidates, first present wins (several only for the tied LM head).
Table = dict[str, tuple[str, ...]]


def _linear(table: Table, ours: str, hf: str) -> None:
    for p in ("weight", "bias"):
        table[f"{ours}.{p}"] = (f"{hf}.{p}",)


def vision_table(num_layers: int) -> Table:
    t: Table = {
        "visual_encoder.patch_embed.weight": ("vision_model.embeddings.patch_embedding.weight",),
        "visual_encoder.patch_embed.bias": ("vision_model.embeddings.patch_embedding.bias",),
        "visual_encoder.cls_token": ("vision_model.embeddings.class_embedding",),
        "visual_encoder.pos_embed": ("vision_model.embeddings.position_embedding",),
    }
    for i in range(num_layers):
        for ours, hf in _VISION_LAYER:
            _linear(t, f"visual_encoder.blocks.{i}.{ours}", f"vision_model.encoder.layers.{i}.{hf}")
    _linear(t, "visual_encoder.norm", "vision_model.post_layernorm")
    return t


def text_table(ours: str, hf: str, cfg: TextConfig) -> Table:
    """BERT stack ``ours`` (``text_encoder`` / ``text_decoder``) <- HF ``BlipTextModel`` at prefix ``hf``."""
    t: Table = {
        f"{ours}.word_embed.weight": (f"{hf}.embeddings.word_embeddings.weight",),
        f"{ours}.pos_embed.weight": (f"{hf}.embeddings.position_embeddings.weight",),
    }
    _linear(t, f"{ours}.embed_norm", f"{hf}.embeddings.LayerNorm")
    for i in range(cfg.num_layers):
        o, h = f"{ours}.layers.{i}", f"{hf}.encoder.layer.{i}"
        for a, b in _TEXT_ATTENTION:
            _linear(t, f"{o}.self_attn.{a}", f"{h}.attention.{b}")
            if cfg.has_cross_attention(i):
                _linear(t, f"{o}.cross_attn.{a}", f"{h}.crossattention.{b}")
        for a, b in _TEXT_FFN:
            _linear(t, f"{o}.{a}", f"{h}.{b}")
    return t


def lm_head_table(tied: bool) -> Table:
    """BERT LM head. HF ties ``decoder.weight`` to the word embeddings and ``decoder.bias`` to ``predictions.bias``;
    ``save_pretrained`` then writes only the tie sources, older ``.bin`` files both (HF unties them if they differ,
    so an explicit ``decoder.*`` key wins)."""
    cls = "text_decoder.cls.predictions"
    t: Table = {}
    _linear(t, "text_decoder.lm_head.dense", f"{cls}.transform.dense")
    _linear(t, "text_decoder.lm_head.norm", f"{cls}.transform.LayerNorm")
    t["text_decoder.lm_head.decoder.weight"] = (f"{cls}.decoder.weight",) + (
        ("text_decoder.bert.embeddings.word_embeddings.weight",) if tied else ())
    t["text_decoder.lm_head.decoder.bias"] = (f"{cls}.decoder.bias", f"{cls}.bias")
    return t


def name_table(cfg: ModelConfig, tied: bool) -> dict[str, Table]:
    """The full mapping, split by part (see ``PARTS``): part -> {our parameter name: HF key candidates}."""
    return {
        "vision": vision_table(cfg.vision.num_layers),
        "text_encoder": text_table("text_encoder", "text_encoder", cfg.text),
        "text_decoder": {**text_table("text_decoder", "text_decoder.bert", cfg.decoder), **lm_head_table(tied)},
        "vision_proj": {"vision_proj.weight": ("vision_proj.weight",), "vision_proj.bias": ("vision_proj.bias",)},
        "text_proj": {"text_proj.weight": ("text_proj.weight",), "text_proj.bias": ("text_proj.bias",)},
        "itm_head": {"itm_head.weight": ("itm_head.weight",), "itm_head.bias": ("itm_head.bias",)},
        "temp": {"temp": ("temp",)},
    }


# ------------------------------------------------------------------------------------------------------- teacher
@dataclass
class HFTeacher:
    """A loaded HF BLIP checkpoint. ``model`` is frozen (eval, no grad) unless loaded with ``freeze=False``."""

    model: BlipMED
    architecture: str  # one of ARCHITECTURES
    loaded: tuple[str, ...]  # parts (see PARTS) copied from the checkpoint
    missing: tuple[str, ...]  # parts left randomly initialised (``temp``: left at cfg.temp)
    bos_token_id: int | None  # [DEC]: first decoder token (HF generate)
    sep_token_id: int | None  # [SEP]: ends generation (HF generate's eos)
    pad_token_id: int | None
    source: Path

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg

    def _has(self, *parts: str) -> bool:
        return all(p in self.loaded for p in parts)

    @property
    def has_itc(self) -> bool:
        """Unimodal image/text features and their cosine similarity (the temperature may be the default)."""
        return self._has("vision", "text_encoder", "vision_proj", "text_proj")

    @property
    def has_itm(self) -> bool:
        return self._has("vision", "text_encoder", "itm_head")

    @property
    def has_lm(self) -> bool:
        """Captioning: a decoder trained to cross-attend to image tokens (a VQA decoder attends to question states)."""
        return self.architecture != VQA and self._has("vision", "text_decoder")

    @property
    def has_vqa(self) -> bool:
        """Question encoding fused with the image, then answer decoding over the question states."""
        return self.architecture == VQA and self._has("vision", "text_encoder", "text_decoder")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in ("itc", "itm", "lm", "vqa") if getattr(self, f"has_{t}"))


def is_hf_blip_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory whose ``config.json`` says ``"model_type": "blip"``."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        with open(cfg) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "blip"


def hf_model_type(path: str | Path) -> str | None:
    """config.json's ``model_type`` where ``path`` is a Hugging Face checkpoint (``architectures`` or
    ``model_type`` in its config.json), else None (a run folder's config.json has neither)."""
    try:
        data = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not ({"architectures", "model_type"} & set(data)):
        return None
    return str(data.get("model_type"))


def load_hf_blip(path: str | Path, freeze: bool = True) -> HFTeacher:
    """Builds a ``BlipMED`` from an HF BLIP ``save_pretrained`` directory (config.json + model.safetensors, a
    sharded ``model.safetensors.index.json`` or pytorch_model.bin). Weights are cast to float32 on the CPU.

    Raises ``ValueError`` naming the file for a missing config or weights file, naming the key for a checkpoint key
    that the name table does not know, a tensor of the wrong shape, or a part present only in part.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"HF BLIP checkpoint directory {path} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"missing {config_file}")
    try:
        with open(config_file) as f:
            raw = json.load(f)
    except ValueError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != "blip":
        found = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{config_file}: model_type is {found!r}, expected 'blip'")
    hf_cfg = _blip_config(raw, config_file)
    cfg = model_config_from_hf(hf_cfg)
    state = read_state_dict(path)
    tied = bool(hf_cfg.tie_word_embeddings or hf_cfg.text_config.tie_word_embeddings)
    table = name_table(cfg, tied)
    _check_known(state, table, path)

    model = BlipMED(cfg)
    params = dict(model.named_parameters())
    loaded = []
    for part, entries in table.items():
        if not any(k in state for cands in entries.values() for k in cands):
            continue
        with torch.no_grad():
            for ours, cands in entries.items():
                key = next((k for k in cands if k in state), None)
                if key is None:
                    raise ValueError(f"{path}: checkpoint has part '{part}' but lacks key '{cands[0]}'")
                _copy(params[ours], state[key], key, path)
        loaded.append(part)

    architecture = _architecture(raw, loaded, path)
    if freeze:
        model.requires_grad_(False)
        model.eval()
    text = hf_cfg.text_config
    return HFTeacher(model=model, architecture=architecture, loaded=tuple(loaded),
                     missing=tuple(p for p in PARTS if p not in loaded), bos_token_id=text.bos_token_id,
                     sep_token_id=text.sep_token_id, pad_token_id=text.pad_token_id, source=path)


# ------------------------------------------------------------------------------------------------------- helpers
def _blip_config(raw: dict[str, Any], config_file: Path):
    from transformers import BlipConfig  # imported lazily: slow, and only this loader needs it

    try:
        return BlipConfig.from_dict(raw)
    except (TypeError, ValueError) as err:  # strict dataclass validation of field types
        raise ValueError(f"{config_file}: not a valid BlipConfig ({err})") from None


def _square(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"HF vision_config.{name} {value} is not square")
        value = value[0]
    return int(value)


def model_config_from_hf(hf_cfg) -> ModelConfig:
    """HF ``BlipConfig`` -> our ``ModelConfig``. Encoder and decoder share HF's single text config; cross-attention
    sits in every text layer when ``is_decoder`` (HF's default), in none otherwise."""
    v, t = hf_cfg.vision_config, hf_cfg.text_config
    for where, act in (("vision_config", v.hidden_act), ("text_config", t.hidden_act)):
        if act != "gelu":
            raise ValueError(f"HF {where}.hidden_act {act!r} is not supported (only exact 'gelu')")
    if t.encoder_hidden_size != v.hidden_size:
        raise ValueError(f"HF text_config.encoder_hidden_size {t.encoder_hidden_size} != vision hidden_size "
                         f"{v.hidden_size}")
    vision = VisionConfig(image_size=_square(v.image_size, "image_size"),
                          patch_size=_square(v.patch_size, "patch_size"), hidden_size=v.hidden_size,
                          num_layers=v.num_hidden_layers, num_heads=v.num_attention_heads,
                          intermediate_size=v.intermediate_size, layer_norm_eps=v.layer_norm_eps)
    text = TextConfig(vocab_size=t.vocab_size, hidden_size=t.hidden_size, num_layers=t.num_hidden_layers,
                      num_heads=t.num_attention_heads, intermediate_size=t.intermediate_size,
                      max_position_embeddings=t.max_position_embeddings, fusion_layers=-1 if t.is_decoder else 0,
                      layer_norm_eps=t.layer_norm_eps, pad_token_id=t.pad_token_id if t.pad_token_id is not None else 0)
    return ModelConfig(vision=vision, text=text, decoder=dataclasses.replace(text),
                       embed_dim=hf_cfg.image_text_hidden_size, label_smoothing=t.label_smoothing)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """All tensors of a checkpoint directory, from safetensors (single or sharded) or pytorch_model.bin."""
    single, legacy = path / "model.safetensors", path / "pytorch_model.bin"
    index = path / "model.safetensors.index.json"
    if single.is_file() or index.is_file():
        from safetensors.torch import load_file

        if single.is_file():
            return load_file(str(single))
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            if not (path / shard).is_file():
                raise ValueError(f"missing {path / shard} (listed in {index})")
            state.update(load_file(str(path / shard)))
        return state
    if legacy.is_file():
        state = torch.load(legacy, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{legacy} holds a {type(state).__name__}, expected a state dict")
        return state
    raise ValueError(f"missing {single} (or {legacy}): no weights in the checkpoint directory")


def _check_known(state: dict[str, Tensor], table: dict[str, Table], path: Path) -> None:
    known = {k for entries in table.values() for cands in entries.values() for k in cands}
    for key in sorted(state):
        if key not in known and not key.endswith(IGNORED_SUFFIXES):
            raise ValueError(f"{path}: checkpoint key '{key}' has no counterpart in our model (unmapped)")


def _copy(param: torch.nn.Parameter, value: Tensor, key: str, path: Path) -> None:
    if value.shape != param.shape and not (value.numel() == param.numel() == 1):  # temp: () or (1,)
        raise ValueError(f"{path}: checkpoint key '{key}' has shape {tuple(value.shape)}, our model expects "
                         f"{tuple(param.shape)}")
    param.copy_(value.reshape(param.shape).to(param.dtype))


def _architecture(raw: dict[str, Any], loaded: list[str], path: Path) -> str:
    """The HF class from config.json's ``architectures``, else inferred from the parts present."""
    names = raw.get("architectures") or []
    if names:
        if names[0] not in ARCHITECTURES:
            raise ValueError(f"{path}: architecture {names[0]!r} is not supported (expected one of "
                             f"{', '.join(ARCHITECTURES)})")
        return names[0]
    if "text_decoder" in loaded:
        return VQA if "text_encoder" in loaded else CAPTIONING
    return RETRIEVAL
