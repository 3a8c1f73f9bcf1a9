// What the server could do at best: the same graphs run directly on onnxruntime-node in this process, at the batch
// sizes the server formed, with the server's feeds and decoding code (raw.ts). Also the key/value cache against
// decoding without it (the whole prefix fed at every step), as tokens per second.
import type { GraphName } from "../src/bundle/manifest.js";
import { imageSpec, preprocessImage } from "../src/preprocess/image.js";
import { answerContext } from "../src/inference/graphs.js";
import { captionRows, RawModel, take, type ModelInputs } from "./raw.js";
import { measure, round } from "./timing.js";

export interface CeilingResult {
  batches: Partial<Record<GraphName, number>>; // rows per run: the server's mean batch size at saturation, rounded
  ms_per_request: Partial<Record<GraphName, number>>; // run time / rows, per graph
  throughput_rps: number; // 1 / sum of the per-request times
  cpu_ms_per_request: number; // CPU time per request (all threads), to hold against the server's
}

export type CeilingTask = "embed_image" | "caption" | "vqa";

const GRAPHS_OF: Record<CeilingTask, GraphName[]> = {
  embed_image: ["vision"],
  caption: ["vision", "decoder"],
  vqa: ["vision", "vqa_encoder", "decoder"],
};

export function ceilingGraphs(task: CeilingTask): GraphName[] {
  return GRAPHS_OF[task];
}

/** Per-request time of each graph of `task` at the given batch sizes; caption and VQA rows decode as the server's. */
export async function ceiling(
  model: RawModel,
  inputs: ModelInputs,
  task: CeilingTask,
  batches: Partial<Record<GraphName, number>>,
  timing: { minRuns: number; minSeconds: number },
): Promise<CeilingResult> {
  const tk = model.manifest.tokenizer;
  const N = model.manifest.model.image_tokens;
  const ms: Partial<Record<GraphName, number>> = {};
  let cpu = 0;
  for (const g of GRAPHS_OF[task]) {
    const B = Math.max(1, batches[g] ?? 1);
    let fn: () => Promise<unknown>;
    if (g === "vision") {
      const pixels = take(inputs.pixels, B);
      fn = () => model.encodeImages(pixels);
    } else if (g === "vqa_encoder") {
      const images = take(inputs.images, B);
      const ids = take(inputs.questionIds, B);
      fn = () => model.questionStates(images, ids);
    } else if (task === "caption") {
      // the caption route's rows: greedy, at least one token, up to the model's cap
      const rows = captionRows(take(inputs.images, B), N, {
        numBeams: 1,
        maxTokens: tk.max_caption_tokens,
        minTokens: 1,
      });
      fn = () => model.generate(rows);
    } else {
      const images = take(inputs.images, B);
      const states = await model.questionStates(images, take(inputs.questionIds, B));
      const row = { numBeams: 1, maxTokens: tk.max_answer_tokens, minTokens: 0 }; // the VQA route's rows
      const reads = model.manifest.model.vqa_decoder_reads_image === true;
      const rows = states.map((s, i) => ({
        ...answerContext(s, images[i], reads, model.manifest.model.image_tokens),
        row,
      }));
      fn = () => model.generate(rows);
    }
    const t = await measure(fn, timing);
    ms[g] = round(t.median_ms / B);
    cpu += t.cpu_ms / B;
  }
  const total = Object.values(ms).reduce((a, b) => a + b, 0);
  return { batches, ms_per_request: ms, throughput_rps: round(1000 / total), cpu_ms_per_request: round(cpu) };
}

export interface PreprocessCost {
  concurrency: number; // images preprocessed at once (as concurrent requests are in the server)
  ms_per_image: number; // wall time
  cpu_ms_per_image: number; // CPU time, all threads (libvips decodes off the main thread)
}

/** The server's image preprocessing (decode, resize, normalise) of the workload's PNGs, outside any graph. */
export async function preprocessCost(
  model: RawModel,
  images: Buffer[],
  concurrency: number,
  timing: { minRuns: number; minSeconds: number },
): Promise<PreprocessCost> {
  const spec = imageSpec(model.manifest.preprocessing, 40_000_000);
  const batch = take(images, concurrency);
  const t = await measure(() => Promise.all(batch.map((b) => preprocessImage(b, spec))), timing);
  return {
    concurrency,
    ms_per_image: round(t.median_ms / concurrency),
    cpu_ms_per_image: round(t.cpu_ms / concurrency),
  };
}

export interface CachePoint {
  batch: number;
  length: "natural" | "max"; // captions end at [SEP] (natural), or run to the model's cap ([SEP] forbidden)
  tokens: number; // generated per run, all rows
  cached_tokens_per_s: number;
  uncached_tokens_per_s: number;
  ratio: number; // cached / uncached
  same_tokens: boolean; // both decodings produced the same captions (they should: same logits)
}

/** Greedy captions of `batch` images with and without the key/value cache. */
export async function cacheComparison(
  model: RawModel,
  inputs: ModelInputs,
  batch: number,
  length: CachePoint["length"],
  timing: { minRuns: number; minSeconds: number },
): Promise<CachePoint> {
  const cap = model.manifest.tokenizer.max_caption_tokens;
  const N = model.manifest.model.image_tokens;
  const row = { numBeams: 1, maxTokens: cap, minTokens: length === "max" ? cap : 1 };
  const rows = captionRows(take(inputs.images, batch), N, row);
  const cached = await model.generate(rows, true);
  const uncached = await model.generate(rows, false);
  const tokens = cached.results.reduce((n, r) => n + r.ids.length, 0);
  const same = cached.results.every((r, i) => r.ids.join() === uncached.results[i].ids.join());
  const tc = await measure(() => model.generate(rows, true), timing);
  const tu = await measure(() => model.generate(rows, false), timing);
  const cps = (1000 * tokens) / tc.median_ms;
  const ups = (1000 * tokens) / tu.median_ms;
  return {
    batch,
    length,
    tokens,
    cached_tokens_per_s: round(cps),
    uncached_tokens_per_s: round(ups),
    ratio: round(cps / ups),
    same_tokens: same,
  };
}
