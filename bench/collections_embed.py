"""The collections benchmark's vectors: the default model's own ITC embeddings of real Shapes images, not random ones.

Renders N Shapes scenes in memory (the generator of ``python -m dlip data synth``: its scene sampler and renderer with
the same pixel noise, seed ``--seed`` of the train split, so an image draw the model was not trained on when the seed is
not 0), preprocesses them as the bundle's manifest says (PIL bicubic, as ``dlip eval-bundle``), and runs the bundle's
vision graph in batches with onnxruntime, in-process: nothing is written per image. Also embeds the first caption of
every Shapes test image with the text graph: the text-to-image queries of the recall and latency runs.

    python bench/collections_embed.py --bundle models/dlip-student --n 100000 --queries data/bench-collections \
        --out .cache/bench-collections/dlip-student-100000

Writes into the folder ``--out``: ``image_feat.f32`` (N, E) and ``query_feat.f32`` (Q, E), little-endian float32 rows
as the graphs return them (L2-normalised), and ``meta.json``: n, dim, the query texts, the model's name and weights
checksum (so a stale folder is never reused for another model) and the times spent rendering and in the vision graph.
Run with training/.venv's Python (it imports the ``dlip`` package from training/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from dlip.data.shapes import image_rngs, render  # noqa: E402
from dlip.data.shapes_scene import sample_scene  # noqa: E402
from dlip.infer.backend import tokenize  # noqa: E402
from dlip.infer.ort_backend import OrtBackend  # noqa: E402
from tqdm import tqdm  # noqa: E402

NOISE_SIGMA = 3.0  # dlip data synth's default


def render_pixels(backend: OrtBackend, indices: range, seed: int) -> np.ndarray:
    """Scenes ``indices`` of the train split of ``seed`` -> (B, 3, S, S) float32 model inputs."""
    out = []
    for i in indices:
        scene_rng, _text_rng, noise_rng = image_rngs(seed, "train", i)
        image = render(sample_scene(scene_rng), noise_rng, NOISE_SIGMA)
        out.append(backend.preprocess(image).numpy())
    return np.stack(out)


def write(out: Path, image_feat: np.ndarray, query_feat: np.ndarray, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    image_feat.astype("<f4").tofile(out / "image_feat.f32")
    query_feat.astype("<f4").tofile(out / "query_feat.f32")
    (out / "meta.json").write_text(json.dumps(meta))  # last: its presence means the folder is complete


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--n", type=int, required=True, help="images to embed")
    p.add_argument("--seed", type=int, default=1, help="Shapes seed (the training data is seed 0)")
    p.add_argument("--queries", required=True, help="Shapes image root holding annotations/caption_test.json")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokens", action="store_true",
                   help="also write image_tokens.f16: each image's tokens (N, T, Dv) as float16, for ITM re-ranking")
    args = p.parse_args()
    if args.n < 1:
        raise SystemExit(f"--n must be >= 1, got {args.n}")

    backend = OrtBackend(args.bundle, threads=args.threads)
    weights = backend.manifest["files"].get("weights.safetensors") or backend.manifest["graphs"]["vision"]["sha256"]
    started = time.perf_counter()
    feats = np.empty((args.n, backend.dims.embed_dim), dtype=np.float32)  # (N, E)
    render_s = encode_s = 0.0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tokens = open(Path(args.out) / "image_tokens.f16", "wb") if args.tokens else None
    for s in tqdm(range(0, args.n, args.batch), desc="embed images", unit="batch", dynamic_ncols=True):
        idx = range(s, min(s + args.batch, args.n))
        t0 = time.perf_counter()
        pixels = render_pixels(backend, idx, args.seed)  # (B, 3, S, S)
        t1 = time.perf_counter()
        embeds, feats[s:s + len(idx)] = backend.encode_images(pixels)  # (B, T, Dv), image_feat (B, E)
        if tokens is not None:
            tokens.write(embeds.astype("<f2").tobytes())
        encode_s += time.perf_counter() - t1
        render_s += t1 - t0

    if tokens is not None:
        tokens.close()
    caps = json.loads((Path(args.queries) / "annotations/caption_test.json").read_text())
    first: dict[str, str] = {}
    for c in caps:
        first.setdefault(c["image"], c["caption"] if isinstance(c["caption"], str) else c["caption"][0])
    queries = [first[k] for k in sorted(first)]
    ids, mask = tokenize(backend, queries, backend.max_text_tokens)
    query_feat = np.concatenate([backend.encode_texts(ids[i:i + 256], mask[i:i + 256])
                                 for i in range(0, len(queries), 256)])  # (Q, E)

    total = time.perf_counter() - started
    meta = {"n": args.n, "dim": int(feats.shape[1]), "seed": args.seed, "model": backend.manifest["name"],
            "weights_sha256": weights, "image_tokens": backend.dims.image_tokens if args.tokens else None,
            "vision_width": backend.dims.vision_width, "render_s": round(render_s, 1),
            "vision_graph_s": round(encode_s, 1),
            "total_s": round(total, 1), "images_per_s_vision_graph": round(args.n / encode_s, 1),
            "queries": queries}
    write(Path(args.out), feats, query_feat.astype(np.float32), meta)
    print(json.dumps({k: v for k, v in meta.items() if k != "queries"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
