"""A Hugging Face BLIP checkpoint as a bundle, as it is (``python -m dlip export HF_DIR --out models/NAME``).

The checkpoint's weights are mapped onto the project's ``BlipMED`` (``dlip.hf.load_hf_blip``, checked against
transformers by ``tests/test_hf_blip.py``) and exported through the same graph wrappers as a trained run, so the
server runs one graph contract whatever the source. What differs is written into the manifest:

- ``tasks``: the one task the checkpoint's class was trained for (``TASKS_OF``); only that task's graphs are
  written. The other parts of ``BlipMED`` keep random weights and are in no graph.
- ``tokenizer.fusion_first_token = "cls"``: transformers feeds the processor's ids (``[CLS] text [SEP]``) to the
  image-grounded text encoder unchanged (ITM, VQA questions), where BLIP itself put [ENC] first.
- ``preprocessing``: the checkpoint's image processor settings (preprocessor_config.json, or the
  ``image_processor`` of processor_config.json): size, mean, std, resample; anything the server cannot reproduce is
  refused.
- token limits: texts up to the text model's ``max_position_embeddings`` (transformers does not truncate);
  captions and answers up to the new tokens ``generate`` allows (``generation_budget``).

Before the bundle is moved into place, ``parity.check_parity`` runs its graphs on onnxruntime against
transformers' own model and refuses it when they differ by more than the stated tolerance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..data.tokenizer import TextTokenizer
from ..hf.blip import CAPTIONING, RETRIEVAL, VQA, HFTeacher, load_hf_blip
from ..model.params import param_counts
from ..export.contract import TASKS
from ..export.manifest import sha256_file
from ..export.precision import EXTERNAL_DATA_BYTES

# the task each HF class serves, and the parts of the checkpoint it needs (dlip.hf.blip.PARTS)
TASKS_OF = {RETRIEVAL: ("retrieval",), CAPTIONING: ("captioning",), VQA: ("vqa",)}
NEEDS = {"retrieval": ("vision", "text_encoder", "vision_proj", "text_proj", "itm_head"),
         "captioning": ("vision", "text_decoder"), "vqa": ("vision", "text_encoder", "text_decoder")}
assert all(t in TASKS for ts in TASKS_OF.values() for t in ts)

_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's numbering, as transformers stores it
DEFAULT_NEW_TOKENS = 20  # transformers' generate without a max_length: 20 new tokens


def export_hf(hf_dir: str | Path, out: str | Path, name: str | None = None, version: str = "1", int8: bool = False,
              fp16: bool = False, overwrite: bool = False, progress: bool = True,
              external_data_above: int = EXTERNAL_DATA_BYTES, check: bool = True) -> Path:
    """Exports the HF BLIP checkpoint folder ``hf_dir`` to the bundle ``out``, checked against transformers
    (``check``) before it is written."""
    import transformers

    from ..export.export import write_bundle
    from .parity import check_parity

    hf_dir = Path(hf_dir)
    teacher = load_hf_blip(hf_dir)
    tasks = TASKS_OF[teacher.architecture]
    for task in tasks:
        absent = [p for p in NEEDS[task] if p not in teacher.loaded]
        if absent:
            raise ValueError(f"{hf_dir}: a {teacher.architecture} checkpoint serves {task}, but its weights lack "
                             f"{', '.join(absent)}")
    tokenizer = TextTokenizer.from_pretrained_dir(hf_dir)
    sp = tokenizer.special
    for role, want in (("dec", teacher.bos_token_id), ("sep", teacher.sep_token_id), ("pad", teacher.pad_token_id)):
        if want is not None and getattr(sp, role) != want:
            raise ValueError(f"{hf_dir}: the tokenizer's {role} id {getattr(sp, role)} differs from config.json's "
                             f"text_config ({want})")
    cfg = teacher.model.cfg
    budget = generation_budget(hf_dir, cfg.decoder.max_position_embeddings)
    source = {"run": None, "checkpoint_sha256": _weights_sha256(hf_dir), "random_init": False, "preset": None,
              "hf_checkpoint": str(hf_dir.resolve()), "hf_architecture": teacher.architecture,
              "transformers_version": transformers.__version__}
    return write_bundle(
        teacher.model, tokenizer, out, name=name, version=version, source=source, metrics={},
        max_text_tokens=cfg.text.max_position_embeddings, max_answer_tokens=budget, max_caption_tokens=budget,
        int8=int8, fp16=fp16, weights=False, overwrite=overwrite, progress=progress, tasks=tasks,
        fusion_first_token="cls", preprocessing=preprocessing_from_hf(hf_dir, cfg.vision.image_size),
        external_data_above=external_data_above, params=checkpoint_params(teacher),
        check=(lambda bundle: check_parity(bundle, hf_dir, teacher.architecture)) if check else None)


def checkpoint_params(teacher: HFTeacher) -> dict[str, int]:
    """The manifest's ``params``: the parts the checkpoint holds (the model's others are random, in no graph, and
    count 0); ``heads`` are the ITC projections and the ITM head (no HF class holds BLIP's temperature)."""
    counts = param_counts(teacher.model)
    model = teacher.model
    held = {"vision": "vision" in teacher.loaded, "text_encoder": "text_encoder" in teacher.loaded,
            "text_decoder": "text_decoder" in teacher.loaded}
    out = {part: counts[part] if held[part] else 0 for part in held}
    out["heads"] = sum(sum(p.numel() for p in getattr(model, name).parameters())
                       for name in ("vision_proj", "text_proj", "itm_head") if name in teacher.loaded)
    return {"total": sum(out.values()), **out}


def preprocessing_from_hf(hf_dir: Path, image_size: int) -> dict[str, Any]:
    """The manifest's ``preprocessing`` from the checkpoint's image processor settings; a ValueError names the
    setting the server cannot reproduce."""
    where, cfg = _image_processor_config(hf_dir)

    def refuse(what: str) -> ValueError:
        return ValueError(f"{where}: {what}; the server resizes to S x S, scales by 1/255 and normalises")

    if not cfg.get("do_resize", True):
        raise refuse("do_resize is false")
    size = cfg.get("size", {"height": image_size, "width": image_size})
    if not isinstance(size, dict) or set(size) != {"height", "width"} or size["height"] != size["width"]:
        raise refuse(f"size {size} is not a square {{height, width}}")
    if size["height"] != image_size:
        raise ValueError(f"{where}: size {size['height']} differs from the vision model's image_size {image_size}")
    for flag in ("do_center_crop", "do_pad"):
        if cfg.get(flag):
            raise refuse(f"{flag} is set")
    if cfg.get("do_rescale", True) is not True or not math.isclose(cfg.get("rescale_factor", 1 / 255), 1 / 255):
        raise refuse(f"rescaling is {cfg.get('do_rescale')} x {cfg.get('rescale_factor')}, not 1/255")
    resample = cfg.get("resample", 3)
    if resample not in _RESAMPLE:
        raise refuse(f"resample {resample} is not bicubic (3) or bilinear (2)")
    if cfg.get("do_convert_rgb", True) is not True:
        raise refuse("do_convert_rgb is false")
    normalize = cfg.get("do_normalize", True)
    mean = cfg.get("image_mean") if normalize else [0.0, 0.0, 0.0]
    std = cfg.get("image_std") if normalize else [1.0, 1.0, 1.0]
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        raise refuse(f"image_mean {mean} / image_std {std} are not 3 values each")
    return {"image_size": image_size, "mean": [float(m) for m in mean], "std": [float(s) for s in std],
            "resample": _RESAMPLE[resample], "alpha": "composite_white", "grayscale": "replicate", "exif": "apply",
            "layout": "NCHW", "scale": "1/255"}


def _image_processor_config(hf_dir: Path) -> tuple[Path, dict[str, Any]]:
    """preprocessor_config.json (the Hub's BLIP checkpoints), else processor_config.json's ``image_processor``
    (what transformers 5 ``BlipProcessor.save_pretrained`` writes)."""
    for fname, key in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        path = hf_dir / fname
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: invalid JSON ({err})") from None
            data = data.get(key) if key and isinstance(data, dict) else data
            if isinstance(data, dict):
                return path, data
    raise ValueError(f"{hf_dir}: no image processor settings (preprocessor_config.json, or processor_config.json "
                     f"with image_processor): save the checkpoint's BlipProcessor beside it")


def generation_budget(hf_dir: Path, max_positions: int) -> int:
    """New tokens a caption or answer may have, [SEP] included, as transformers 5's ``generate`` counts them after
    the one [DEC] prompt token: generation_config.json's ``max_new_tokens``; else its ``max_length`` less the prompt;
    else 20 new tokens, within the decoder's ``max_positions``."""
    path = hf_dir / "generation_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    if cfg.get("max_new_tokens"):
        return int(cfg["max_new_tokens"])
    if cfg.get("max_length"):
        return int(cfg["max_length"]) - 1
    return min(DEFAULT_NEW_TOKENS, max_positions - 1)


def _weights_sha256(hf_dir: Path) -> str | None:
    for fname in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"):
        if (hf_dir / fname).is_file():
            return sha256_file(hf_dir / fname)
    return None
