"""The teachers of a distillation: one run folder of ours, or one or more Hugging Face BLIP checkpoints, and which of
them each distillation term is computed from.

No HF BLIP class holds a whole BLIP (``dlip.hf.blip``): a captioning checkpoint has the vision encoder and a caption
decoder; a VQA checkpoint the vision encoder, a text encoder fused with the image and an answer decoder that reads
question states; a retrieval checkpoint the vision encoder, the text encoder, the ITC projections and the ITM head.
Each distillation term therefore names the teacher parts it reads (``TERM_NEEDS``) and is computed from the first
teacher, in the order given, that holds all of them. A term no teacher holds is refused before the first step, naming
the term and what each teacher lacks: nothing is ever distilled from randomly initialised teacher weights.

The student keeps BLIP's single decoder: it learns captions from a captioning teacher's decoder (``out_lm``,
``hidden_decoder``, ``attn_decoder``, ``cross_decoder`` on caption batches) and answers from a VQA teacher's
(``out_vqa`` on question batches), as BLIP's own decoder is first pre-trained on captions, then fine-tuned on answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data.tokenizer import TextTokenizer
from ..hf.blip import VQA, is_hf_blip_dir, load_hf_blip
from ..model.med import BlipMED
from ..run_folder import load_run
from .step import teacher_frozen

# What a teacher can hold. The HF loader's parts (dlip.hf.blip.PARTS), with its text_decoder split by what the
# decoder was trained to read: image tokens (captioning) or question states (VQA).
CAPTION_DECODER, ANSWER_DECODER = "caption_decoder", "answer_decoder"
ALL_PARTS = ("vision", "text_encoder", CAPTION_DECODER, ANSWER_DECODER, "vision_proj", "text_proj", "itm_head",
             "temp")

# The teacher parts each distillation term reads. The task terms (itc, itm, lm, vqa) read no teacher. ITC's
# temperature is not required: no HF class holds it (out_itc then uses cfg.temp, see dlip.hf.blip).
TERM_NEEDS: dict[str, tuple[str, ...]] = {
    "hidden_vision": ("vision",),
    "attn_vision": ("vision",),
    "hidden_text": ("text_encoder",),
    "attn_text": ("text_encoder",),
    "hidden_fusion": ("vision", "text_encoder"),
    "attn_fusion": ("vision", "text_encoder"),
    "cross_fusion": ("vision", "text_encoder"),
    "hidden_decoder": ("vision", CAPTION_DECODER),
    "attn_decoder": ("vision", CAPTION_DECODER),
    "cross_decoder": ("vision", CAPTION_DECODER),
    "out_itc": ("vision", "text_encoder", "vision_proj", "text_proj"),
    "out_itm": ("vision", "text_encoder", "itm_head"),
    "out_lm": ("vision", CAPTION_DECODER),
    "out_vqa": ("vision", "text_encoder", ANSWER_DECODER),
}


@dataclass
class Teacher:
    """One frozen teacher model, its tokenizer, and the parts of it that hold trained weights (``ALL_PARTS``)."""

    model: BlipMED
    tokenizer: TextTokenizer
    source: str  # the directory it was loaded from
    parts: tuple[str, ...]
    kind: str  # "run folder" or the HF class name

    def lacks(self, needs: Sequence[str]) -> list[str]:
        return [p for p in needs if p not in self.parts]

    def holds_param(self, name: str) -> bool:
        """Whether student/teacher parameter ``name`` (e.g. ``text_decoder.layers.0.fc1.weight``) is trained here."""
        top = name.split(".", 1)[0]
        if top == "visual_encoder":
            return "vision" in self.parts
        if top == "text_decoder":
            return CAPTION_DECODER in self.parts or ANSWER_DECODER in self.parts
        return top in self.parts


def load_teacher(path: str | Path) -> Teacher:
    """A run folder of ours (every part) or a Hugging Face BLIP checkpoint directory (the parts its class holds)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no such teacher: {path}")
    if is_hf_blip_dir(path):
        hf = load_hf_blip(path, freeze=True)
        decoder = ANSWER_DECODER if hf.architecture == VQA else CAPTION_DECODER
        parts = tuple(decoder if p == "text_decoder" else p for p in hf.loaded)
        # a text stack the checkpoint does not hold is random: drop it (at BLIP-base 137M-161M parameters), so that
        # it holds no memory and no pass can read it. The small heads (projections, ITM) stay: an ITM pass run for
        # the fusion terms computes logits that no term reads unless the checkpoint holds the head.
        for stack in ("text_encoder", "text_decoder"):
            if stack not in hf.loaded:
                setattr(hf.model, stack, None)
        return Teacher(hf.model, TextTokenizer.from_pretrained_dir(path), str(path), parts, hf.architecture)
    loaded = load_run(path)
    return Teacher(teacher_frozen(loaded.model), loaded.tokenizer, str(path), ALL_PARTS, "run folder")


def load_teachers(paths: Sequence[str | Path]) -> list[Teacher]:
    """Loads every teacher; they must share one tokenizer (the terms compare models on the same token ids) and one
    input image size."""
    if not paths:
        raise ValueError("distill: no teacher given")
    teachers = [load_teacher(p) for p in paths]
    first = teachers[0]
    for t in teachers[1:]:
        if (t.tokenizer.tokenizer.get_vocab(with_added_tokens=True)
                != first.tokenizer.tokenizer.get_vocab(with_added_tokens=True)
                or t.tokenizer.special != first.tokenizer.special):
            raise ValueError(f"teachers {first.source} and {t.source} have different tokenizers (vocabulary or "
                             f"special token ids): a student can share only one")
        if t.model.cfg.vision.image_size != first.model.cfg.vision.image_size:
            raise ValueError(f"teachers {first.source} and {t.source} read images of different sizes "
                             f"({first.model.cfg.vision.image_size} and {t.model.cfg.vision.image_size} px)")
    return teachers


def assign_terms(teachers: Sequence[Teacher], weights: Mapping[str, float]) -> dict[str, int]:
    """Every distillation term with a weight > 0 -> the index of the first teacher that holds all the parts it reads.

    Raises ``ValueError`` (one line) naming every such term that no teacher holds the parts for, the parts it needs
    and what each teacher lacks.
    """
    sources, refused = {}, []
    for term, needs in TERM_NEEDS.items():
        if weights.get(term, 0) <= 0:
            continue
        index = next((i for i, t in enumerate(teachers) if not t.lacks(needs)), None)
        if index is None:
            lacking = "; ".join(f"{t.source} ({t.kind}) lacks {', '.join(t.lacks(needs))}" for t in teachers)
            refused.append(f"'{term}' needs the teacher parts {', '.join(needs)} [{lacking}]")
        else:
            sources[term] = index
    if refused:
        raise ValueError(f"no teacher can provide {len(refused)} distillation term(s): {'; '.join(refused)}. Add a "
                         f"--teacher that holds those parts, or set the terms' weights to 0")
    return sources
