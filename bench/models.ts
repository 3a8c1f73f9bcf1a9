// Part 1, models: onnxruntime-node latency and throughput of each graph of the student and the teacher bundle (fp32
// and, where the bundle has them, int8) at each batch size; end to end per image (encode + caption, encode + VQA);
// parameters from the manifests and FLOPs per graph. The student/teacher speed ratio is the headline.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { GRAPHS, type GraphName, type Manifest } from "../src/bundle/manifest.js";
import { answerContext, type Feeds } from "../src/inference/graphs.js";
import { graphGflops } from "./flops.js";
import type { BenchOptions } from "./options.js";
import { captionRows, DECODER_PAST, hasInt8, RawModel, take, type ModelInputs, type Variant } from "./raw.js";
import type { Stamp } from "./stamp.js";
import { measure, round } from "./timing.js";
import { venvPython, type Workload } from "./workload.js";

export interface GraphPoint {
  batch: number;
  latency_ms: number; // median per run
  throughput_rows_s: number; // rows (images, texts, pairs, decoder rows) per second, from the median run time
  runs: number;
}

export interface E2EPoint {
  batch: number;
  ms_per_batch: number; // median
  ms_per_image: number;
  images_per_s: number;
  tokens: number; // decoded per image (fixed: the manifest's maximum, so both models do the same decoding work)
}

export interface VariantResult {
  graphs: Record<GraphName, GraphPoint[]>;
  e2e: { caption: E2EPoint[]; vqa: E2EPoint[] };
}

export interface BundleResult {
  role: "student" | "teacher";
  dir: string;
  name: string;
  version: string;
  random_init: boolean;
  size_mb: { fp32: number; int8: number | null };
  int8_source: "bundle" | "quantised by the benchmark (the exporter's settings)";
  params: Record<string, number> | null; // from the manifest
  gflops: Record<GraphName, number>; // one run at batch 1 (decoder: one token after DECODER_PAST positions)
  manifest_costs: unknown; // the evaluation's cost table (metrics.summary.costs), when the manifest has one
  variants: Partial<Record<Variant, VariantResult>>;
}

export interface ModelsResult {
  part: "models";
  stamp: Stamp;
  settings: {
    threads: number;
    batch_sizes: number[];
    decoder_past: number;
    images: number;
    min_runs: number;
    min_seconds: number;
  };
  bundles: { student: BundleResult; teacher: BundleResult | null };
  teacher_note: string | null; // why the teacher is missing, and how to get it
  ratios: Record<string, number>; // teacher ms / student ms per image, same batch and variant
}

function bundleSizeMb(dir: string, int8: boolean): number {
  const files = readdirSync(dir).filter((f) => f.endsWith(".onnx") && f.includes(".int8.") === int8);
  return round(files.reduce((n, f) => n + statSync(path.join(dir, f)).size, 0) / 1e6);
}

const ortFeeds = (f: Feeds) =>
  Object.fromEntries(Object.entries(f).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]));

async function timeVariant(
  model: RawModel,
  inputs: ModelInputs,
  opts: BenchOptions,
  log: (s: string) => void,
): Promise<VariantResult> {
  const timing = { minRuns: opts.minRuns, minSeconds: opts.minSeconds };
  const graphs = {} as Record<GraphName, GraphPoint[]>;
  const label = `${path.basename(model.dir)} ${model.variant}`;
  for (const g of GRAPHS) {
    graphs[g] = [];
    for (const B of opts.batchSizes) {
      const feeds = ortFeeds(model.graphFeeds(g, inputs, B)); // built once: the timing is the graph's alone
      const t = await measure(() => model.run(g, feeds), timing);
      graphs[g].push({
        batch: B,
        latency_ms: t.median_ms,
        throughput_rows_s: round((1000 * B) / t.median_ms),
        runs: t.runs,
      });
      log(`models: ${label} ${g} b${B}: ${t.median_ms} ms`);
    }
  }
  const e2e: VariantResult["e2e"] = { caption: [], vqa: [] };
  for (const B of [...new Set([1, Math.max(...opts.batchSizes)])]) {
    for (const [task, { fn, tokens }] of Object.entries(endToEnd(model, inputs, B)) as [
      keyof typeof e2e,
      EndToEndTask,
    ][]) {
      const t = await measure(fn, timing);
      e2e[task].push({
        batch: B,
        ms_per_batch: t.median_ms,
        ms_per_image: round(t.median_ms / B),
        images_per_s: round((1000 * B) / t.median_ms),
        tokens,
      });
      log(`models: ${label} ${task} end to end b${B}: ${round(t.median_ms / B)} ms per image`);
    }
  }
  return { graphs, e2e };
}

export interface EndToEndTask {
  fn: () => Promise<unknown>;
  tokens: number; // decoded per image
}

/**
 * End to end for B images of the prepared inputs: encode + caption, encode + question + answer. Fixed lengths (the
 * manifest's caps, [SEP] forbidden until then): equal decoding work for every model, trained or random.
 */
export function endToEnd(model: RawModel, inputs: ModelInputs, B: number): Record<"caption" | "vqa", EndToEndTask> {
  const N = model.manifest.model.image_tokens;
  const tk = model.manifest.tokenizer;
  const pixels = take(inputs.pixels, B);
  const questions = take(inputs.questionIds, B);
  const capRow = { numBeams: 1, maxTokens: tk.max_caption_tokens, minTokens: tk.max_caption_tokens };
  const ansRow = { numBeams: 1, maxTokens: tk.max_answer_tokens, minTokens: tk.max_answer_tokens };
  const caption = async () => model.generate(captionRows(await model.encodeImages(pixels), N, capRow));
  const vqa = async () => {
    const images = await model.encodeImages(pixels);
    const states = await model.questionStates(images, questions);
    const reads = model.manifest.model.vqa_decoder_reads_image === true;
    return model.generate(states.map((s, i) => ({ ...answerContext(s, images[i], reads, N), row: ansRow })));
  };
  return { caption: { fn: caption, tokens: capRow.maxTokens }, vqa: { fn: vqa, tokens: ansRow.maxTokens } };
}

/** bench/quantize.py (training/.venv) writes GRAPH.int8.onnx for each graph of the bundle into `out`. */
function quantiseBundle(dir: string, m: Manifest, out: string): Record<GraphName, string> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  const files = GRAPHS.map((g) => path.join(dir, m.graphs[g]!.file));
  execFileSync(venvPython(root), [path.join(root, "bench/quantize.py"), out, ...files], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  return Object.fromEntries(
    GRAPHS.map((g) => [g, path.join(out, `${path.basename(m.graphs[g]!.file, ".onnx")}.int8.onnx`)]),
  ) as Record<GraphName, string>;
}

async function benchBundle(
  role: "student" | "teacher",
  dir: string,
  w: Workload,
  opts: BenchOptions,
  scratch: string,
  log: (s: string) => void,
): Promise<BundleResult> {
  const fp32 = await RawModel.load(dir, "fp32", opts.threads);
  const m = fp32.manifest;
  const inputs = await fp32.prepare(w);
  const gflops = {} as Record<GraphName, number>;
  for (const g of GRAPHS)
    gflops[g] = round(await graphGflops(path.join(dir, m.graphs[g]!.file), ortFeeds(fp32.graphFeeds(g, inputs, 1))));
  const variants: BundleResult["variants"] = { fp32: await timeVariant(fp32, inputs, opts, log) };
  await fp32.release();
  let int8Files: Record<GraphName, string> | undefined;
  if (!hasInt8(m)) {
    log(`models: ${path.basename(dir)} has no int8 graphs; quantising them as dlip export --int8 does`);
    int8Files = quantiseBundle(dir, m, path.join(scratch, role));
  }
  const int8 = await RawModel.load(dir, "int8", opts.threads, int8Files);
  variants.int8 = await timeVariant(int8, inputs, opts, log);
  await int8.release();
  const summary = (m.metrics as { summary?: { costs?: unknown } }).summary;
  return {
    role,
    dir,
    name: m.name,
    version: m.version,
    random_init: (m.source as { random_init?: boolean } | undefined)?.random_init === true,
    size_mb: { fp32: bundleSizeMb(dir, false), int8: bundleSizeMb(int8Files ? path.join(scratch, role) : dir, true) },
    int8_source: int8Files ? "quantised by the benchmark (the exporter's settings)" : "bundle",
    params: m.params ?? null,
    gflops,
    manifest_costs: summary?.costs ?? null,
    variants,
  };
}

/** Teacher ms per image / student ms per image, for each task, variant and end-to-end batch size. */
export function speedRatios(s: BundleResult, t: BundleResult | null): Record<string, number> {
  const out: Record<string, number> = {};
  if (!t) return out;
  for (const v of ["fp32", "int8"] as const) {
    const sv = s.variants[v];
    const tv = t.variants[v];
    if (!sv || !tv) continue;
    for (const task of ["caption", "vqa"] as const) {
      for (const p of sv.e2e[task]) {
        const q = tv.e2e[task].find((x) => x.batch === p.batch);
        if (q) out[`${task}_${v}_b${p.batch}`] = round(q.ms_per_image / p.ms_per_image);
      }
    }
  }
  return out;
}

export async function runModels(
  opts: BenchOptions,
  w: Workload,
  teacher: { dir: string | null; note: string | null },
  stamp: Stamp,
  log: (s: string) => void,
): Promise<ModelsResult> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), "dlip-bench-int8-"));
  let student: BundleResult;
  let teacherResult: BundleResult | null;
  try {
    student = await benchBundle("student", opts.student, w, opts, scratch, log);
    teacherResult = teacher.dir ? await benchBundle("teacher", teacher.dir, w, opts, scratch, log) : null;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return {
    part: "models",
    stamp,
    settings: {
      threads: opts.threads,
      batch_sizes: opts.batchSizes,
      decoder_past: DECODER_PAST,
      images: w.images.length,
      min_runs: opts.minRuns,
      min_seconds: opts.minSeconds,
    },
    bundles: { student, teacher: teacherResult },
    teacher_note: teacher.note,
    ratios: speedRatios(student, teacherResult),
  };
}
