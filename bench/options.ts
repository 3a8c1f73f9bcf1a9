// Benchmark options: command-line flags over defaults (full run, or --quick for a smoke test on the micro fixture),
// validated once; unknown flags are refused. Paths are relative to the repository root (npm runs scripts there).
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { defaultThreadsPerWorker } from "../src/config.js";
import type { Variant } from "./raw.js";

export const PARTS = ["models", "server", "collections", "full"] as const;
export const DEFAULT_PARTS: Part[] = ["models", "server"]; // collections and full (tens of minutes each) only when asked
export type Part = (typeof PARTS)[number];
const VARIANTS: readonly Variant[] = ["fp32", "int8"];
export const ENDPOINTS = ["embed_image", "embed_text", "caption", "vqa", "rank"] as const;
export type Endpoint = (typeof ENDPOINTS)[number];

export interface BenchOptions {
  parts: Part[]; // which parts run (each writes its own JSON; the report is rebuilt from every JSON present)
  out: string; // results directory
  student: string; // the student bundle: the default model the server is benchmarked with
  teacher: string | null; // the teacher bundle; null or a missing path: teacher rows are skipped, and the report says so
  exportTeacher: string | null; // run folder to export the teacher bundle from when it is missing (only when asked)
  images: string; // Shapes image root (python -m dlip data synth writes it when it lacks images)
  imageCount: number; // the first N Shapes test images are the request images
  quick: boolean;
  batchSizes: number[]; // raw onnxruntime batch sizes (models part)
  minRuns: number; // raw timings: at least this many runs ...
  minSeconds: number; // ... and at least this long (s), after one warm-up run
  concurrency: number[]; // HTTP connections per load point
  durationS: number; // seconds per load point
  warmupS: number; // unmeasured load before each point (s)
  endpoints: Endpoint[];
  batchingConcurrency: number; // connections of the batching off/on comparison
  continuousConcurrency: number; // connections of the continuous batching on/off comparison (captions)
  memoryRequests: number; // requests of the resident-memory stability run
  workers: number; // the server's WORKERS (1 unless --server-env WORKERS=N)
  threads: number; // onnxruntime intra-op threads: the server's THREADS_PER_WORKER (and its default), raw runs too
  port: number; // where the benchmarked server listens (127.0.0.1)
  plots: boolean;
  cpuProfile: boolean; // also run the default server under node --cpu-prof and summarise where its time goes
  serverEnv: Record<string, string>; // settings for every server started (WORKERS, THREADS_PER_WORKER, ...)
  // the full part (bench/full.ts): BLIP-base teacher vs DLIP student, random weights
  fullDir: string; // holds teacher/ and student/ (exported by bench/full_bundles.py when missing)
  fullVariants: Variant[];
  fullBatchSizes: number[]; // raw onnxruntime, per graph and end to end
  fullConcurrency: number[]; // server connections per point
  fullRequestsPerConnection: number; // measured requests per connection and point (after one per connection)
  fullRawRuns: number; // raw timings: runs per model, alternating, after one warm-up run each
  fullCeilingRounds: number; // fp32: server and in-process windows in turn per model and task (int8: one each)
  fullImageCount: number; // request images (the first N Shapes test images)
  fullServer: boolean; // false: raw onnxruntime only
  note: string | null; // what else ran on the machine, as the person who started the run knows it (into the results)
}

const FULL = {
  student: "models/dlip-student",
  teacher: "runs/bundles/teacher",
  imageCount: 64,
  batchSizes: [1, 8, 32],
  minRuns: 5,
  minSeconds: 0.5,
  concurrency: [1, 4, 16, 64],
  durationS: 8,
  warmupS: 1,
  batchingConcurrency: 16,
  continuousConcurrency: 64,
  memoryRequests: 20_000,
};

// --quick: the micro test bundle, short points; for CI (well under a minute), never for numbers
const QUICK: typeof FULL = {
  student: "test/fixtures/micro",
  teacher: "",
  imageCount: 8,
  batchSizes: [1, 8],
  minRuns: 2,
  minSeconds: 0.02,
  concurrency: [1, 4],
  durationS: 0.5,
  warmupS: 0.2,
  batchingConcurrency: 4,
  continuousConcurrency: 4,
  memoryRequests: 300,
};

export class OptionsError extends Error {}

export const USAGE = `usage: npm run bench -- [flags]      (npm run bench:models / bench:server / bench:collections run one part)

  --quick                  smoke test: micro fixture bundle, short points (CI)
  --parts LIST             models,server,collections,full (default: models,server; collections, full: see below)
  --out DIR                results directory (default: bench/results)
  --student DIR            student bundle, the default model (default: ${FULL.student})
  --teacher DIR            teacher bundle (default: ${FULL.teacher}; --quick: none); missing: teacher rows skipped
  --export-teacher RUN     when the teacher bundle is missing, export it from this run folder first
  --images DIR             Shapes image root (default: data/bench-shapes, generated when missing)
  --image-count N          request images: the first N Shapes test images (default: ${FULL.imageCount})
  --batch-sizes LIST       raw onnxruntime batch sizes (default: ${FULL.batchSizes.join(",")})
  --concurrency LIST       HTTP connections per load point (default: ${FULL.concurrency.join(",")})
  --duration S             seconds per load point (default: ${FULL.durationS})
  --endpoints LIST         ${ENDPOINTS.join(",")} (default: all)
  --memory-requests N      requests of the memory stability run (default: ${FULL.memoryRequests})
  --threads N              onnxruntime threads (default: the server's THREADS_PER_WORKER default)
  --port N                 port of the benchmarked server (default: 18080)
  --no-plots               skip the PNG plots
  --cpu-profile            also profile the default server (node --cpu-prof) under load
  --server-env K=V         a server setting for every server started, e.g. WORKERS=2 (repeatable)
  --note TEXT              what else ran on the machine (e.g. '6 other jobs shared the 2 cores'), into the results

full part (npm run bench:full = --parts full): BLIP-base teacher vs DLIP student, random weights, side by side
  --full-dir DIR           holds teacher/ and student/ (default: data/bench-full; exported when missing, ~2 min)
  --full-variants LIST     fp32,int8 (default: both)
  --full-batch-sizes LIST  raw onnxruntime batch sizes (default: 1,8)
  --full-concurrency LIST  server connections per point (default: 1,8)
  --full-requests N        measured requests per connection and point (default: 2)
  --full-runs N            raw runs per model and measurement, alternating (default: 3)
  --full-ceiling-rounds N  fp32: server and in-process windows in turn per model and task (default: 3)
  --full-no-server         raw onnxruntime only`;

function list<T extends string>(raw: string, allowed: readonly T[], flag: string): T[] {
  const xs = raw.split(",").map((s) => s.trim());
  for (const x of xs)
    if (!allowed.includes(x as T)) throw new OptionsError(`--${flag}: unknown '${x}' (${allowed.join(", ")})`);
  return xs as T[];
}

function ints(raw: string, flag: string, min = 1): number[] {
  const xs = raw.split(",").map((s) => s.trim());
  if (xs.some((x) => !/^\d+$/.test(x) || Number(x) < min))
    throw new OptionsError(`--${flag} must be integers >= ${min} separated by commas, got '${raw}'`);
  return xs.map(Number);
}

function num(raw: string, flag: string, min: number): number {
  const x = Number(raw);
  if (!Number.isFinite(x) || x < min) throw new OptionsError(`--${flag} must be a number >= ${min}, got '${raw}'`);
  return x;
}

/** K=V pairs of server settings (the variables of the README's configuration table). */
function serverEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(p);
    if (!m) throw new OptionsError(`--server-env must be NAME=VALUE (e.g. WORKERS=2), got '${p}'`);
    if (["MODELS_DIR", "PORT", "HOST"].includes(m[1]))
      throw new OptionsError(`--server-env ${m[1]} is set by the benchmark (--student, --teacher, --port)`);
    env[m[1]] = m[2];
  }
  return env;
}

export function parseOptions(argv: readonly string[], root: string): BenchOptions {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: "boolean" },
        parts: { type: "string" },
        out: { type: "string" },
        student: { type: "string" },
        teacher: { type: "string" },
        "export-teacher": { type: "string" },
        images: { type: "string" },
        "image-count": { type: "string" },
        "batch-sizes": { type: "string" },
        concurrency: { type: "string" },
        duration: { type: "string" },
        endpoints: { type: "string" },
        "memory-requests": { type: "string" },
        threads: { type: "string" },
        port: { type: "string" },
        "no-plots": { type: "boolean" },
        "cpu-profile": { type: "boolean" },
        "server-env": { type: "string", multiple: true },
        "full-dir": { type: "string" },
        "full-variants": { type: "string" },
        "full-batch-sizes": { type: "string" },
        "full-concurrency": { type: "string" },
        "full-requests": { type: "string" },
        "full-runs": { type: "string" },
        "full-ceiling-rounds": { type: "string" },
        "full-no-server": { type: "boolean" },
        note: { type: "string" },
        help: { type: "boolean" },
      },
    }));
  } catch (err) {
    throw new OptionsError((err as Error).message.split("\n")[0]);
  }
  if (values.help) throw new OptionsError(USAGE);
  const quick = values.quick === true;
  const d = quick ? QUICK : FULL;
  const str = (k: string) => (typeof values[k] === "string" ? (values[k] as string) : undefined);
  const abs = (p: string) => path.resolve(root, p);
  const teacher = str("teacher") ?? d.teacher;
  const concurrency = str("concurrency") ? ints(str("concurrency")!, "concurrency") : d.concurrency;
  const opts: BenchOptions = {
    parts: str("parts") ? list(str("parts")!, PARTS, "parts") : [...DEFAULT_PARTS],
    out: abs(str("out") ?? "bench/results"),
    student: abs(str("student") ?? d.student),
    teacher: teacher === "" ? null : abs(teacher),
    exportTeacher: str("export-teacher") ? abs(str("export-teacher")!) : null,
    images: abs(str("images") ?? "data/bench-shapes"),
    imageCount: str("image-count") ? ints(str("image-count")!, "image-count")[0] : d.imageCount,
    quick,
    batchSizes: str("batch-sizes") ? ints(str("batch-sizes")!, "batch-sizes") : d.batchSizes,
    minRuns: d.minRuns,
    minSeconds: d.minSeconds,
    concurrency,
    durationS: str("duration") ? num(str("duration")!, "duration", 0.2) : d.durationS,
    warmupS: d.warmupS,
    endpoints: str("endpoints") ? list(str("endpoints")!, ENDPOINTS, "endpoints") : [...ENDPOINTS],
    batchingConcurrency: d.batchingConcurrency,
    continuousConcurrency: d.continuousConcurrency,
    memoryRequests: str("memory-requests") ? ints(str("memory-requests")!, "memory-requests")[0] : d.memoryRequests,
    workers: 1,
    threads: str("threads") ? ints(str("threads")!, "threads")[0] : 0,
    port: str("port") ? ints(str("port")!, "port")[0] : 18080,
    plots: values["no-plots"] !== true,
    cpuProfile: values["cpu-profile"] === true,
    serverEnv: serverEnv((values["server-env"] as string[] | undefined) ?? []),
    fullDir: abs(str("full-dir") ?? "data/bench-full"),
    fullVariants: str("full-variants") ? list(str("full-variants")!, VARIANTS, "full-variants") : [...VARIANTS],
    fullBatchSizes: str("full-batch-sizes") ? ints(str("full-batch-sizes")!, "full-batch-sizes") : [1, 8],
    fullConcurrency: str("full-concurrency") ? ints(str("full-concurrency")!, "full-concurrency") : [1, 8],
    fullRequestsPerConnection: str("full-requests") ? ints(str("full-requests")!, "full-requests")[0] : 2,
    fullRawRuns: str("full-runs") ? ints(str("full-runs")!, "full-runs")[0] : 3,
    fullCeilingRounds: str("full-ceiling-rounds") ? ints(str("full-ceiling-rounds")!, "full-ceiling-rounds")[0] : 3,
    fullImageCount: 8,
    fullServer: values["full-no-server"] !== true,
    note: str("note") ?? null,
  };
  // the server's thread settings and the raw runs' agree: --threads is THREADS_PER_WORKER, and the reverse
  const env = opts.serverEnv;
  if (env.WORKERS !== undefined) opts.workers = ints(env.WORKERS, "server-env WORKERS")[0];
  if (env.THREADS_PER_WORKER !== undefined) {
    const t = ints(env.THREADS_PER_WORKER, "server-env THREADS_PER_WORKER")[0];
    if (opts.threads !== 0 && opts.threads !== t)
      throw new OptionsError(`--threads ${opts.threads} contradicts --server-env THREADS_PER_WORKER=${t}`);
    opts.threads = t;
  }
  if (opts.threads === 0) opts.threads = defaultThreadsPerWorker(os.availableParallelism(), opts.workers);
  if (opts.port > 65535) throw new OptionsError(`--port must be <= 65535, got ${opts.port}`);
  if (opts.batchSizes.some((b) => b > 256)) throw new OptionsError("--batch-sizes must be <= 256");
  return opts;
}
