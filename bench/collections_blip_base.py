"""Random-weight ONNX graphs at BLIP-base size, for the cost side of ITM re-ranking (what one query's top k costs).

The repository's model code (training/dlip, BLIP's architecture) built at the sizes of Salesforce's BLIP-base
(ViT-B/16 at 384 px: 577 image tokens x 768; a 12-layer BERT-base text encoder with cross-attention in every layer;
ITC embeddings of 256), with random weights: the numbers it gives are times and bytes, never quality. Only the graphs
the re-ranking needs are exported, through the same export code (and I/O contract) as a real bundle:

- ``vision.onnx``: pixels (B, 3, 384, 384) -> image tokens (B, 577, 768) and ITC features: the recompute path;
- ``itm.onnx``: image tokens (B, 577, 768) + text ids -> ITM logits (B, 2): the re-ranking itself.

    python bench/collections_blip_base.py --out .cache/bench-collections/blip-base-random

Prints the dims as JSON. Run with training/.venv's Python. `dlip export --random-init` takes only the repository's
presets (none is BLIP-base size), hence this script.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

import torch  # noqa: E402
from dlip.config import ModelConfig, TextConfig, VisionConfig  # noqa: E402
from dlip.export.contract import ModelDims  # noqa: E402
from dlip.export.export import export_graph  # noqa: E402
from dlip.model.med import BlipMED  # noqa: E402

# Salesforce BLIP-base (model_base.pth / HF Salesforce/blip-itm-base-coco): ViT-B/16, BERT-base, vocab 30524
BLIP_BASE = ModelConfig(
    vision=VisionConfig(image_size=384, patch_size=16, hidden_size=768, num_layers=12, num_heads=12,
                        intermediate_size=3072, layer_norm_eps=1e-6),
    text=TextConfig(vocab_size=30524, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                    max_position_embeddings=512),
    # the decoder is not exported; one layer keeps the random model small in memory
    decoder=TextConfig(vocab_size=30524, hidden_size=768, num_layers=1, num_heads=12, intermediate_size=3072,
                       max_position_embeddings=512),
    embed_dim=256,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--graphs", default="vision,itm")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = BlipMED(BLIP_BASE).eval()
    dims = ModelDims.from_config(model.cfg)
    for graph in args.graphs.split(","):
        export_graph(model, graph, out / f"{graph}.onnx", dims)
    info = {"image_size": dims.image_size, "image_tokens": dims.image_tokens, "vision_width": dims.vision_width,
            "embed_dim": dims.embed_dim, "params": sum(p.numel() for p in model.parameters()),
            "graphs": args.graphs.split(",")}
    (out / "dims.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
