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

export interface InProcessCeiling {
  concurrency: number; // requests preprocessed at once: the server's connections at saturation
  batch: number; // rows per graph run: the largest batch the server formed for the task's graphs at saturation
  requests: number; // requests done in the measured window
  throughput_rps: number; // requests / wall time of the measured window
  cpu_ms_per_request: number; // CPU time of this process per request (all threads)
  graphs_ms_per_request: number; // graph wall time per request, measured inside the loop
  preprocess_ms_per_request: number; // preprocessing wall time per request (decode, resize, normalise; tokenise)
}

/**
 * The in-process ceiling: a measured end-to-end loop doing a request's whole work in this process on the same cores,
 * with no HTTP, JSON, queue or worker thread. Each iteration takes `concurrency` requests (PNG bytes of the
 * workload, as the server has them after base64) and preprocesses them all at once with the server's code
 * (src/preprocess/image.ts; VQA questions tokenised too), as the server does its concurrent requests; then it runs
 * every graph of the task on those rows in batches of `batch`, decoding as the server does. The next iteration's
 * preprocessing runs while this one's graphs run (the server overlaps them too). Throughput: requests over the
 * measured window's wall time.
 */
export async function inProcessCeiling(
  model: RawModel,
  images: Buffer[],
  questions: string[],
  task: CeilingTask,
  concurrency: number,
  batch: number,
  timing: { minRuns: number; minSeconds: number },
  warm = true, // false: the sessions already ran these batch sizes (no unmeasured iteration first)
): Promise<InProcessCeiling> {
  const spec = imageSpec(model.manifest.preprocessing, 40_000_000);
  const tk = model.manifest.tokenizer;
  const N = model.manifest.model.image_tokens;
  const reads = model.manifest.model.vqa_decoder_reads_image === true;
  let next = 0; // request index into the workload, cycling
  const prep = async () => {
    const idx = Array.from({ length: concurrency }, () => next++ % images.length);
    const t0 = performance.now();
    const pixels = await Promise.all(idx.map((i) => preprocessImage(images[i], spec)));
    const ids =
      task === "vqa"
        ? idx.map((i) => model.tokenizer.encodeWithFirst(questions[i], tk.max_text_tokens, model.special.enc))
        : [];
    return { pixels, ids, ms: performance.now() - t0 };
  };
  const graphs = async (all: Float32Array[], allIds: number[][]) => {
    const t0 = performance.now();
    for (let at = 0; at < all.length; at += batch) {
      const rows = await model.encodeImages(all.slice(at, at + batch));
      if (task === "caption")
        await model.generate(captionRows(rows, N, { numBeams: 1, maxTokens: tk.max_caption_tokens, minTokens: 1 }));
      if (task === "vqa") {
        const states = await model.questionStates(rows, allIds.slice(at, at + batch));
        const row = { numBeams: 1, maxTokens: tk.max_answer_tokens, minTokens: 0 };
        await model.generate(states.map((s, i) => ({ ...answerContext(s, rows[i], reads, N), row })));
      }
    }
    return performance.now() - t0;
  };
  if (warm) {
    // warm-up: one whole iteration, unmeasured
    const first = await prep();
    await graphs(first.pixels, first.ids);
  }
  let pending = prep();
  let done = 0;
  let graphMs = 0;
  let prepMs = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  while (done < timing.minRuns * concurrency || performance.now() - start < timing.minSeconds * 1000) {
    const ready = await pending;
    pending = prep(); // overlapped with this iteration's graphs
    graphMs += await graphs(ready.pixels, ready.ids);
    prepMs += ready.ms;
    done += concurrency;
  }
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await pending; // the last prefetch (outside the window) finishes before anything else runs
  return {
    concurrency,
    batch,
    requests: done,
    throughput_rps: round(done / seconds),
    cpu_ms_per_request: round((cpu.user + cpu.system) / 1000 / done),
    graphs_ms_per_request: round(graphMs / done),
    preprocess_ms_per_request: round(prepMs / done),
  };
}
