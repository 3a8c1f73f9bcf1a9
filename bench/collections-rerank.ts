// ITM re-ranking of a collection search's top k: what each candidate costs when its image tokens are stored (fp16,
// fetched and widened to fp32, then the ITM graph) against keeping the image and recomputing its tokens (decode and
// resize the stored image, the vision graph, then the ITM graph). Measured at the default model's size (its own
// bundle) and at BLIP-base size (577 tokens x 768: random-weight graphs from bench/collections_blip_base.py, built
// by the repository's model code; they give times and bytes, not quality). The database side (fetching k token rows
// or k images) is measured per store in bench/collections.ts; this file times the compute.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { readManifest } from "../src/bundle/manifest.js";
import { fusedFeeds, visionFeeds } from "../src/inference/graphs.js";
import { imageSpec, preprocessImage } from "../src/preprocess/image.js";
import { TextTokenizer } from "../src/preprocess/text.js";
import { decodeHalf, encodeHalf } from "../src/collections/tokens.js";
import { sessionOptions } from "./raw.js";
import { measure, round, type Timing } from "./timing.js";

export interface RerankSize {
  model: string;
  random_weights: boolean;
  image_size: number; // px, side
  image_tokens: number; // T
  width: number; // Dv
  k: number; // candidates re-ranked per query
  tokens_bytes_fp16: number; // one item's stored tokens: T * Dv * 2
  image_bytes: number; // one item's stored image: mean PNG size of the workload's Shapes images
  itm: Timing; // ITM graph on (k, T, Dv)
  widen_fp16: Timing; // k items' fp16 tokens -> fp32
  preprocess: Timing; // k stored images -> pixels (the server's decode + resize)
  vision: Timing; // vision graph on k images
  stored_compute_ms: number; // widen + itm (medians)
  recompute_compute_ms: number; // preprocess + vision + itm (medians)
}

interface Graphs {
  model: string;
  random: boolean;
  vision: string;
  itm: string;
  imageSize: number;
  tokens: number;
  width: number;
}

/** The BLIP-base size graphs, exported once into `dir` (a few minutes; about 0.9 GB). */
export function blipBaseGraphs(root: string, dir: string, log: (s: string) => void): Graphs {
  if (!existsSync(path.join(dir, "itm.onnx")) || !existsSync(path.join(dir, "dims.json"))) {
    log(`exporting random-weight BLIP-base size vision and ITM graphs into ${path.relative(root, dir)}`);
    execFileSync(
      path.join(root, "training/.venv/bin/python"),
      [path.join(root, "bench/collections_blip_base.py"), "--out", dir],
      {
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
  }
  const d = JSON.parse(readFileSync(path.join(dir, "dims.json"), "utf8")) as {
    image_size: number;
    image_tokens: number;
    vision_width: number;
  };
  return {
    model: "BLIP-base size",
    random: true,
    vision: path.join(dir, "vision.onnx"),
    itm: path.join(dir, "itm.onnx"),
    imageSize: d.image_size,
    tokens: d.image_tokens,
    width: d.vision_width,
  };
}

export function bundleGraphs(dir: string): Graphs {
  const m = readManifest(dir);
  return {
    model: m.name,
    random: false,
    vision: path.join(dir, m.graphs.vision!.file),
    itm: path.join(dir, m.graphs.itm!.file),
    imageSize: m.preprocessing.image_size,
    tokens: m.model.image_tokens,
    width: m.model.vision_width,
  };
}

/** Times one size's re-rank compute for `k` candidates of one query (the bundle `tokenizerBundle` gives text ids). */
export async function measureRerank(
  g: Graphs,
  tokenizerBundle: string,
  images: Buffer[],
  caption: string,
  k: number,
  threads: number,
  timing: { minRuns: number; minSeconds: number },
): Promise<RerankSize> {
  const m = readManifest(tokenizerBundle);
  const tk = TextTokenizer.fromFile(path.join(tokenizerBundle, m.tokenizer.file), m.tokenizer.special_tokens);
  const ids = tk.encodeWithFirst(caption, m.tokenizer.max_text_tokens, m.tokenizer.special_tokens.enc);
  const spec = imageSpec({ ...m.preprocessing, image_size: g.imageSize }, 40_000_000);
  const batch = Array.from({ length: k }, (_, i) => images[i % images.length]);
  const vision = await ort.InferenceSession.create(g.vision, sessionOptions(threads));
  const itm = await ort.InferenceSession.create(g.itm, sessionOptions(threads));
  const run = async (s: ort.InferenceSession, feeds: ReturnType<typeof visionFeeds>) =>
    s.run(Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, new ort.Tensor(t.type, t.data, t.dims)])));
  try {
    const pixels = await Promise.all(batch.map((b) => preprocessImage(b, spec)));
    const out = await run(vision, visionFeeds(pixels, g.imageSize));
    const embeds = out.image_embeds.data as Float32Array; // (k, T, Dv)
    const per = g.tokens * g.width;
    // the stored form, and back: what the server does with each candidate's kept tokens (collections/tokens.ts)
    const stored = Array.from({ length: k }, (_, i) => encodeHalf(embeds.subarray(i * per, (i + 1) * per)));
    let widened = stored.map(decodeHalf);
    const rows = () => widened.map((e) => ({ embeds: e, ids }));
    const t = {
      widen_fp16: await measure(async () => {
        widened = stored.map(decodeHalf);
      }, timing),
      itm: await measure(() => run(itm, fusedFeeds(rows(), m.tokenizer.special_tokens.pad, g.tokens, g.width)), timing),
      preprocess: await measure(() => Promise.all(batch.map((b) => preprocessImage(b, spec))), timing),
      vision: await measure(() => run(vision, visionFeeds(pixels, g.imageSize)), timing),
    };
    return {
      model: g.model,
      random_weights: g.random,
      image_size: g.imageSize,
      image_tokens: g.tokens,
      width: g.width,
      k,
      tokens_bytes_fp16: per * 2,
      image_bytes: Math.round(images.reduce((a, b) => a + b.length, 0) / images.length),
      ...t,
      stored_compute_ms: round(t.widen_fp16.median_ms + t.itm.median_ms),
      recompute_compute_ms: round(t.preprocess.median_ms + t.vision.median_ms + t.itm.median_ms),
    };
  } finally {
    await vision.release();
    await itm.release();
  }
}
