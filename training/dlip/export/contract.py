"""The bundle contract in code: graph names, files, exact input/output names, dtypes and shapes (FORMAT.md).

This is the one place these names live: the export wrappers, the exporter, the manifest checks and the onnxruntime
model all read them from here, and the server mirrors them. Shapes mix fixed sizes (ints, from the model) with
symbolic names for dynamic axes (strings): ``B`` batch, ``L`` text tokens, ``Lq`` question tokens, ``T`` new decoder
tokens, ``P`` cached decoder positions, ``P+T`` past and new positions, ``M`` encoder tokens the decoder attends to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ModelConfig

# 1: the VQA answer decoder reads the question states (BLIP). 2: adds model.vqa_decoder_reads_image; where true, it
# reads the question states followed by the image tokens. A bundle is written as 1 unless it needs 2.
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)
OPSET = 17
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"

VISION, TEXT, ITM, VQA_ENCODER, DECODER = "vision", "text", "itm", "vqa_encoder", "decoder"
GRAPHS = (VISION, TEXT, ITM, VQA_ENCODER, DECODER)
TASKS = ["retrieval", "captioning", "vqa"]

FLOAT32, INT64 = "float32", "int64"
Dim = int | str


def graph_file(graph: str, int8: bool = False) -> str:
    """``vision.onnx`` / ``vision.int8.onnx``."""
    return f"{graph}.int8.onnx" if int8 else f"{graph}.onnx"


def past_names(layers: int) -> list[str]:
    """Decoder cache inputs in order: past_key_0, past_value_0, past_key_1, ..."""
    return [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


@dataclass(frozen=True)
class ModelDims:
    """The fixed sizes a bundle's graphs are built with (the manifest's ``model`` section plus the image size)."""

    image_size: int  # S: input side in pixels
    image_tokens: int  # N = 1 + (S / patch)^2
    vision_width: int  # Dv
    text_width: int  # Dt
    embed_dim: int  # E: ITC embedding size
    decoder_layers: int  # K
    decoder_heads: int  # H
    decoder_head_dim: int  # Dh
    vocab_size: int  # V

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> ModelDims:
        if cfg.text.hidden_size != cfg.vision.hidden_size:
            # the decoder cross-attends to image tokens (width Dv) for captions and to question states (Dt) for VQA
            raise ValueError(f"export needs text.hidden_size == vision.hidden_size (VQA feeds question states to "
                             f"the decoder's cross-attention), got {cfg.text.hidden_size} and {cfg.vision.hidden_size}")
        dec = cfg.decoder
        return cls(image_size=cfg.vision.image_size, image_tokens=cfg.vision.num_patches + 1,
                   vision_width=cfg.vision.hidden_size, text_width=cfg.text.hidden_size, embed_dim=cfg.embed_dim,
                   decoder_layers=dec.num_layers, decoder_heads=dec.num_heads,
                   decoder_head_dim=dec.hidden_size // dec.num_heads, vocab_size=dec.vocab_size)

    def manifest_model(self) -> dict[str, int]:
        """The manifest's ``model`` section (the image size lives under ``preprocessing``)."""
        return {"embed_dim": self.embed_dim, "image_tokens": self.image_tokens, "vision_width": self.vision_width,
                "text_width": self.text_width, "decoder_layers": self.decoder_layers,
                "decoder_heads": self.decoder_heads, "decoder_head_dim": self.decoder_head_dim,
                "vocab_size": self.vocab_size}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ModelDims:
        """Reads the dims back from a manifest (``model`` and ``preprocessing.image_size``)."""
        model = manifest["model"]
        return cls(image_size=manifest["preprocessing"]["image_size"],
                   **{k: model[k] for k in ("image_tokens", "vision_width", "text_width", "embed_dim",
                                            "decoder_layers", "decoder_heads", "decoder_head_dim", "vocab_size")})


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # "float32" | "int64"
    shape: tuple[Dim, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's ``dynamic_axes``: every symbolic dim of every input and output."""
        return {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
                for t in self.inputs + self.outputs}


def graph_specs(d: ModelDims) -> dict[str, GraphSpec]:
    """Every graph of FORMAT.md's table for a model of dims ``d``."""
    s, n, dv, dt, e = d.image_size, d.image_tokens, d.vision_width, d.text_width, d.embed_dim
    h, dh, v = d.decoder_heads, d.decoder_head_dim, d.vocab_size
    image_embeds = TensorSpec("image_embeds", FLOAT32, ("B", n, dv))

    def text_in(length: str) -> tuple[TensorSpec, TensorSpec]:
        return TensorSpec("input_ids", INT64, ("B", length)), TensorSpec("attention_mask", INT64, ("B", length))

    past = tuple(TensorSpec(name, FLOAT32, ("B", h, "P", dh)) for name in past_names(d.decoder_layers))
    present = tuple(TensorSpec(name, FLOAT32, ("B", h, "P+T", dh)) for name in present_names(d.decoder_layers))
    specs = [
        GraphSpec(VISION, (TensorSpec("pixel_values", FLOAT32, ("B", 3, s, s)),),
                  (image_embeds, TensorSpec("image_feat", FLOAT32, ("B", e)))),
        GraphSpec(TEXT, text_in("L"), (TensorSpec("text_feat", FLOAT32, ("B", e)),)),
        GraphSpec(ITM, (image_embeds, *text_in("L")), (TensorSpec("itm_logits", FLOAT32, ("B", 2)),)),
        GraphSpec(VQA_ENCODER, (image_embeds, *text_in("Lq")),
                  (TensorSpec("question_states", FLOAT32, ("B", "Lq", dt)),)),
        GraphSpec(DECODER,
                  (TensorSpec("input_ids", INT64, ("B", "T")), TensorSpec("attention_mask", INT64, ("B", "P+T")),
                   TensorSpec("encoder_hidden", FLOAT32, ("B", "M", dv)),
                   TensorSpec("encoder_mask", INT64, ("B", "M")), *past),
                  (TensorSpec("logits", FLOAT32, ("B", "T", v)), *present)),
    ]
    return {g.name: g for g in specs}
