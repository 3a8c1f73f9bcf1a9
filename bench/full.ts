// Part 3, full: the teacher at BLIP-base sizes against the DLIP student at the paper's scale (random weights, built by
// bench/full_bundles.py with the project's exporter), side by side in one run: raw onnxruntime per graph and end to
// end, then each model in its own server (ready time, resident memory, captions, VQA and image embeddings), and the
// in-process ceiling next to each server's saturation point; fp32 and int8. Every teacher/student ratio comes from
// measurements taken in turn (bench/timing.ts alternate; server points teacher then student), so that a load that
// comes and goes on a shared machine lands on both.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { GRAPHS, readManifest, type GraphName } from "../src/bundle/manifest.js";
import { defaultThreadsPerWorker } from "../src/config.js";
import type { Feeds } from "../src/inference/graphs.js";
import { inProcessCeiling, type CeilingTask, type InProcessCeiling } from "./ceiling.js";
import { endToEnd } from "./models.js";
import type { BenchOptions } from "./options.js";
import { point, requestSpec, type Point } from "./points.js";
import { RawModel, type ModelInputs, type Variant } from "./raw.js";
import { ensureBuilt, modelsDir, ServerProcess, type ServerSpec } from "./server-process.js";
import type { Stamp } from "./stamp.js";
import { alternate, quantile, round, type Timing } from "./timing.js";
import { venvPython, type Workload } from "./workload.js";

export const ROLES = ["teacher", "student"] as const;
export type Role = (typeof ROLES)[number];
export const FULL_TASKS = ["caption", "vqa", "embed_image"] as const;
export type FullTask = (typeof FULL_TASKS)[number];

export interface FullBundle {
  dir: string;
  name: string;
  random_init: boolean;
  params: Record<string, number> | null;
  size_mb: { fp32: number; int8: number };
  model: Record<string, unknown>; // the manifest's model section (widths, layers, vocabulary, image tokens)
  image_size: number;
}

export interface SideBySide {
  teacher_ms: number; // median wall time
  student_ms: number;
  ratio: number; // teacher / student, wall time
  // CPU time of this process per run (all threads, mean): what the other jobs on the machine do not change
  teacher_cpu_ms: number;
  student_cpu_ms: number;
  cpu_ratio: number; // teacher / student, CPU time
  runs: number; // per model
}

export interface FullGraphRow extends SideBySide {
  graph: GraphName;
  batch: number;
}

export interface FullE2ERow extends SideBySide {
  task: "caption" | "vqa";
  batch: number;
  tokens: number; // decoded per image, fixed
  teacher_ms_per_image: number;
  student_ms_per_image: number;
}

export interface FullServer {
  command: string;
  ready_s: number; // process start to the first 200 of /readyz (graphs loaded and warmed)
  rss_ready_mb: number;
  rss_end_mb: number; // after every point
  points: Record<FullTask, Point[]>;
  // server and in-process req/s: medians of the windows taken in turn (listed in `windows`)
  ceiling: Partial<
    Record<
      FullTask,
      InProcessCeiling & {
        server_rps: number;
        ratio: number;
        windows?: { server_rps: number[]; in_process_rps: number[] };
      }
    >
  >;
}

export interface FullVariant {
  raw_load_s: Record<Role, number>; // onnxruntime sessions of every graph created in this process
  graphs: FullGraphRow[];
  e2e: FullE2ERow[];
  servers: Record<Role, FullServer> | null;
  // student / teacher throughput at each concurrency, and teacher / student p50 at 1 connection
  server_ratios: Partial<
    Record<
      FullTask,
      {
        connections: number;
        throughput_ratio: number; // student / teacher req/s
        p50_ratio_c1: number;
        cpu_ratio: number; // teacher / student server CPU per request at that point (all threads)
        tokens: Record<Role, number | null>;
      }
    >
  >;
}

export interface FullResult {
  part: "full";
  stamp: Stamp;
  settings: {
    threads: number;
    batch_sizes: number[];
    concurrency: number[];
    requests_per_connection: number;
    raw_runs: number;
    ceiling_rounds: number; // server / in-process windows in turn per model and task (fp32; int8: 1)
    images: number;
    server_env: Record<string, string>;
    variants: Variant[];
    note: string | null; // --note: what else ran on the machine
  };
  bundles: Record<Role, FullBundle>;
  variants: Partial<Record<Variant, FullVariant>>;
}

/** Teacher and student bundles under `dir`; exported with random weights by bench/full_bundles.py when missing. */
export function ensureFullBundles(root: string, dir: string, log: (s: string) => void): Record<Role, string> {
  const dirs = { teacher: path.join(dir, "teacher"), student: path.join(dir, "student") };
  if (ROLES.every((r) => existsSync(path.join(dirs[r], "manifest.json")))) return dirs;
  log(
    `full: exporting the random-weight teacher and student into ${dir} (bench/full_bundles.py, about 2 minutes, 4.3 GB)`,
  );
  execFileSync(venvPython(root), [path.join(root, "bench/full_bundles.py"), dir], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
  });
  return dirs;
}

function sizeMb(dir: string, int8: boolean): number {
  const files = readdirSync(dir).filter((f) => f.endsWith(".onnx") && f.includes(".int8.") === int8);
  return round(files.reduce((n, f) => n + statSync(path.join(dir, f)).size, 0) / 1e6);
}

function bundleInfo(dir: string): FullBundle {
  const m = readManifest(dir);
  return {
    dir,
    name: m.name,
    random_init: (m.source as { random_init?: boolean } | undefined)?.random_init === true,
    params: m.params ?? null,
    size_mb: { fp32: sizeMb(dir, false), int8: sizeMb(dir, true) },
    model: m.model as unknown as Record<string, unknown>,
    image_size: m.preprocessing.image_size,
  };
}

const ortFeeds = (f: Feeds) =>
  Object.fromEntries(Object.entries(f).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]));

async function timedLoad(dir: string, v: Variant, threads: number): Promise<{ model: RawModel; s: number }> {
  const t0 = performance.now();
  const model = await RawModel.load(dir, v, threads);
  return { model, s: round((performance.now() - t0) / 1000) };
}

/** Raw onnxruntime: each graph at each batch size, then end to end, teacher and student in turn. */
async function rawSideBySide(
  m: Record<Role, RawModel>,
  inputs: Record<Role, ModelInputs>,
  opts: BenchOptions,
  log: (s: string) => void,
): Promise<Pick<FullVariant, "graphs" | "e2e">> {
  const runs = opts.fullRawRuns;
  const graphs: FullGraphRow[] = [];
  const label = m.teacher.variant;
  for (const g of GRAPHS) {
    for (const B of opts.fullBatchSizes) {
      const feeds = ROLES.map((r) => ortFeeds(m[r].graphFeeds(g, inputs[r], B)));
      const [t, s] = await alternate(
        ROLES.map((r, i) => () => m[r].run(g, feeds[i])),
        { minRuns: runs, minSeconds: 0 },
      );
      graphs.push({ graph: g, batch: B, ...pair(t, s) });
      log(
        `full ${label}: ${g} b${B}: teacher ${t.median_ms} ms, student ${s.median_ms} ms (${round(t.median_ms / s.median_ms)}x)`,
      );
    }
  }
  const e2e: FullE2ERow[] = [];
  for (const B of opts.fullBatchSizes) {
    const tasks = ROLES.map((r) => endToEnd(m[r], inputs[r], B));
    for (const task of ["caption", "vqa"] as const) {
      // the graphs above ran at these shapes: no extra warm-up call
      const [t, s] = await alternate(
        tasks.map((x) => x[task].fn),
        { minRuns: runs, minSeconds: 0, warm: false },
      );
      const row = { task, batch: B, tokens: tasks[0][task].tokens, ...pair(t, s) };
      e2e.push({ ...row, teacher_ms_per_image: round(t.median_ms / B), student_ms_per_image: round(s.median_ms / B) });
      log(
        `full ${label}: ${task} end to end b${B}: teacher ${round(t.median_ms / B)} ms, student ${round(s.median_ms / B)} ms ` +
          `per image (${row.ratio}x)`,
      );
    }
  }
  return { graphs, e2e };
}

const median = (xs: number[]) =>
  round(
    quantile(
      [...xs].sort((a, b) => a - b),
      0.5,
    ),
  );

function pair(t: Timing, s: Timing): SideBySide {
  return {
    teacher_ms: t.median_ms,
    student_ms: s.median_ms,
    ratio: round(t.median_ms / s.median_ms),
    teacher_cpu_ms: t.cpu_ms,
    student_cpu_ms: s.cpu_ms,
    cpu_ratio: round(t.cpu_ms / s.cpu_ms),
    runs: t.runs,
  };
}

/**
 * Each model in its own server (both running; only one loaded at a time), at each concurrency: teacher point, then
 * student point; after the last concurrency, each model's in-process ceiling at the batch its server formed.
 */
async function serversSideBySide(
  root: string,
  dirs: Record<Role, string>,
  v: Variant,
  raw: Record<Role, RawModel>,
  w: Workload,
  opts: BenchOptions,
  tmp: string,
  log: (s: string) => void,
): Promise<Pick<FullVariant, "servers" | "server_ratios">> {
  const env = fullServerEnv(opts, v);
  const specs = {} as Record<Role, ServerSpec>;
  ROLES.forEach((r, i) => {
    specs[r] = {
      root,
      modelsDir: modelsDir(path.join(tmp, `models-${v}-${r}`), { [r]: dirs[r] }, true),
      port: opts.port + i,
      env,
      logFile: path.join(tmp, `server-${v}-${r}.log`),
    };
  });
  const servers = {} as Record<Role, ServerProcess>;
  const out = {} as Record<Role, FullServer>;
  try {
    for (const r of ROLES) {
      // one at a time: each ready time is its own
      servers[r] = await ServerProcess.start(specs[r]);
      const rss = await servers[r].rssMb();
      out[r] = {
        command: `${Object.entries(ServerProcess.settings(specs[r]))
          .map(([k, x]) => `${k}=${x}`)
          .join(" ")} node dist/server.js`,
        ready_s: round(servers[r].readyS),
        rss_ready_mb: round(rss),
        rss_end_mb: NaN,
        points: { caption: [], vqa: [], embed_image: [] },
        ceiling: {},
      };
      log(`full ${v}: ${r} server ready in ${servers[r].readyS.toFixed(1)} s, ${rss.toFixed(0)} MiB resident`);
    }
    const ratios: FullVariant["server_ratios"] = {};
    const k = opts.fullRequestsPerConnection;
    for (const task of FULL_TASKS) {
      for (const c of opts.fullConcurrency) {
        for (const r of ROLES) {
          const p = await point(servers[r], requestSpec(task, w, r), task, r, c, opts, {
            warmup: c,
            requests: k * c + (c === 1 ? 1 : 0), // at 1 connection, one more: three latencies for a median
          });
          out[r].points[task].push(p);
          log(
            `full ${v}: ${r} ${task} c${c}: ${p.throughput_rps} req/s, p50 ${p.latency_ms.p50} ms, ` +
              `p99 ${p.latency_ms.p99} ms, failed ${p.failed}, tokens/request ${p.breakdown.tokens_per_request ?? "-"}`,
          );
        }
      }
      const last = (r: Role) => out[r].points[task][out[r].points[task].length - 1];
      const first = (r: Role) => out[r].points[task][0];
      ratios[task] = {
        connections: last("student").connections ?? 0,
        throughput_ratio: round(last("student").throughput_rps / last("teacher").throughput_rps),
        p50_ratio_c1: round(first("teacher").latency_ms.p50 / first("student").latency_ms.p50),
        cpu_ratio: round(last("teacher").breakdown.cpu_ms_per_request / last("student").breakdown.cpu_ms_per_request),
        tokens: {
          teacher: last("teacher").breakdown.tokens_per_request,
          student: last("student").breakdown.tokens_per_request,
        },
      };
      // the ceiling right after the server's points: the same work per request in this process; with more rounds,
      // a further server window (one request per connection) and in-process window in turn, medians of each
      const rounds = v === "fp32" ? opts.fullCeilingRounds : 1;
      for (const r of ROLES) {
        const sat = last(r);
        const batch = Math.max(
          1,
          ...Object.values(sat.breakdown.graphs).map((x) => Math.round(x?.mean_batch_rows ?? 1)),
        );
        const C = sat.connections ?? 1;
        const serverRps = [sat.throughput_rps];
        const inProcessRps: number[] = [];
        let ceil: InProcessCeiling | null = null;
        for (let i = 0; i < rounds; i++) {
          if (i > 0) {
            const p = await point(servers[r], requestSpec(task, w, r), task, r, C, opts, { warmup: 0, requests: C });
            serverRps.push(p.throughput_rps);
          }
          const c = await inProcessCeiling(
            raw[r],
            w.images,
            w.questions,
            task as CeilingTask,
            C,
            batch,
            { minRuns: 1, minSeconds: 0 },
            false,
          );
          inProcessRps.push(c.throughput_rps);
          ceil = c;
        }
        const server = median(serverRps);
        const inProcess = median(inProcessRps);
        out[r].ceiling[task] = {
          ...ceil!,
          throughput_rps: inProcess,
          server_rps: server,
          ratio: round(server / inProcess),
          windows: { server_rps: serverRps, in_process_rps: inProcessRps },
        };
        log(
          `full ${v}: ${r} ${task} in-process ceiling (${C} at once, batch ${batch}): ${inProcessRps.join(", ")} req/s; ` +
            `server ${serverRps.join(", ")} (${out[r].ceiling[task]!.ratio}x of the medians)`,
        );
      }
    }
    for (const r of ROLES) out[r].rss_end_mb = round(await servers[r].rssMb());
    return { servers: out, server_ratios: ratios };
  } finally {
    for (const r of ROLES) await servers[r]?.stop();
  }
}

/** The servers' settings: the benchmark's, PRECISION for the variant, and a request deadline long enough for a
 * full-size batch (the default 30 s would answer 504 to requests queued behind a teacher batch). */
export function fullServerEnv(opts: BenchOptions, v: Variant): Record<string, string> {
  const defaultThreads = defaultThreadsPerWorker(os.availableParallelism(), opts.workers);
  return {
    ...(opts.threads === defaultThreads ? {} : { THREADS_PER_WORKER: String(opts.threads) }),
    REQUEST_TIMEOUT_MS: "600000",
    ...opts.serverEnv,
    PRECISION: v,
  };
}

export async function runFull(
  opts: BenchOptions,
  root: string,
  w: Workload,
  stamp: Stamp,
  log: (s: string) => void,
): Promise<FullResult> {
  const dirs = ensureFullBundles(root, opts.fullDir, log);
  if (opts.fullServer) ensureBuilt(root, log);
  const bundles = { teacher: bundleInfo(dirs.teacher), student: bundleInfo(dirs.student) };
  const tmp = mkdtempSync(path.join(os.tmpdir(), "dlip-bench-full-"));
  const variants: FullResult["variants"] = {};
  try {
    for (const v of opts.fullVariants) {
      const raw = {} as Record<Role, RawModel>;
      const loadS = {} as Record<Role, number>;
      const inputs = {} as Record<Role, ModelInputs>;
      try {
        for (const r of ROLES) {
          const { model, s } = await timedLoad(dirs[r], v, opts.threads);
          raw[r] = model;
          loadS[r] = s;
          inputs[r] = await model.prepare(w);
        }
        log(`full ${v}: sessions created in ${loadS.teacher} s (teacher), ${loadS.student} s (student)`);
        const sideBySide = await rawSideBySide(raw, inputs, opts, log);
        // the ceilings read images and answer questions: text and itm go (the teacher's hold 1 GB), beside two servers
        for (const r of ROLES) await raw[r].release(["text", "itm"]);
        const served = opts.fullServer
          ? await serversSideBySide(root, dirs, v, raw, w, opts, tmp, log)
          : { servers: null, server_ratios: {} };
        variants[v] = { raw_load_s: loadS, ...sideBySide, ...served };
      } finally {
        for (const r of ROLES) await raw[r]?.release();
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return {
    part: "full",
    stamp,
    settings: {
      threads: opts.threads,
      batch_sizes: opts.fullBatchSizes,
      concurrency: opts.fullConcurrency,
      requests_per_connection: opts.fullRequestsPerConnection,
      raw_runs: opts.fullRawRuns,
      ceiling_rounds: opts.fullCeilingRounds,
      images: w.images.length,
      server_env: fullServerEnv(opts, "fp32"),
      variants: opts.fullVariants,
      note: opts.note,
    },
    bundles,
    variants,
  };
}
