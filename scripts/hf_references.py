"""Tiny Hugging Face BLIP checkpoints and what transformers itself answers with them, for the server test
test/routes/hf-checkpoints.test.ts (run with training/.venv's python, PYTHONPATH=training):

    python scripts/hf_references.py OUT

writes OUT/hf/{retrieval,captioning,vqa}/ (save_pretrained of each BLIP class with its BlipProcessor, random weights:
dlip.hf.stand_in's tiny stand-ins), OUT/images/*.png (two photos' worth of smooth random colour, not square, so resizing is exercised)
and OUT/references.json: greedy captions and answers from ``generate`` with the checkpoint's defaults, and ITC
cosines and ITM match logits from ``BlipForImageTextRetrieval``, each computed from the processor's own inputs
(PIL images in, the checkpoint's image processor and tokenizer) as a user of transformers would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dlip.hf.stand_in import CLASSES, write_stand_in

QUESTIONS = ["what color is the car?", "how many dogs are there?"]
TEXTS = ["a picture of a red car", "two dogs sitting on the grass"]


def images(out: Path) -> list[Path]:
    """Two smooth random RGB images of 48 x 40 pixels (upsampled noise), saved as PNG."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        small = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8), "RGB")
        path = out / f"image{i}.png"
        small.resize((48, 40), Image.Resampling.BILINEAR).save(path)
        paths.append(path)
    return paths


@torch.no_grad()
def main(out: Path) -> None:
    import transformers
    from transformers import BlipProcessor

    torch.set_num_threads(1)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pictures = [Image.open(p).convert("RGB") for p in images(out / "images")]
    refs: dict = {"images": [f"image{i}.png" for i in range(len(pictures))], "questions": QUESTIONS, "texts": TEXTS}
    for task, architecture in CLASSES.items():
        hf_dir = write_stand_in(out / "hf" / task, task, "tiny", seed=len(task))
        model = getattr(transformers, architecture).from_pretrained(str(hf_dir)).eval()
        processor = BlipProcessor.from_pretrained(str(hf_dir))

        def decode(ids, processor=processor) -> str:
            return processor.decode(ids, skip_special_tokens=True).strip()

        if task == "captioning":
            refs["captions"] = [decode(model.generate(**processor(images=p, return_tensors="pt"))[0])
                                for p in pictures]
        elif task == "vqa":
            refs["answers"] = [[decode(model.generate(**processor(images=p, text=q, return_tensors="pt"))[0])
                                for q in QUESTIONS] for p in pictures]
        else:
            refs["itc"], refs["itm"] = [], []  # per text, per image
            for t in TEXTS:
                itc, itm = [], []
                for p in pictures:
                    inputs = processor(images=p, text=t, return_tensors="pt")
                    itc.append(model(**inputs, use_itm_head=False).itm_score[0, 0].item())
                    itm.append(model(**inputs, use_itm_head=True).itm_score[0, 1].item())  # the match logit
                refs["itc"].append(itc)
                refs["itm"].append(itm)
    (out / "references.json").write_text(json.dumps(refs, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/hf_references.py OUT")
    main(Path(sys.argv[1]))
