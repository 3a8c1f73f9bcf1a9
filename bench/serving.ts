// Part 2, server: the server started as users start it, loaded over HTTP by autocannon at each concurrency on each
// endpoint; in the same run the raw onnxruntime ceiling at the batch sizes the server formed, batching off vs on,
// latency at half the saturation throughput, the key/value cache vs none, resident memory over many requests, and
// the student against the teacher in one server.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { readManifest, type GraphName } from "../src/bundle/manifest.js";
import { defaultThreadsPerWorker } from "../src/config.js";
import {
  cacheComparison,
  ceiling,
  ceilingGraphs,
  inProcessCeiling,
  preprocessCost,
  type InProcessCeiling,
  type CachePoint,
  type PreprocessCost,
  type CeilingResult,
  type CeilingTask,
} from "./ceiling.js";
import { summariseDir, type ThreadProfile } from "./cpuprofile.js";
import { closedLoop, openLoop, type LoadResult } from "./load.js";
import type { BenchOptions, Endpoint } from "./options.js";
import { point, REQUEST_SHAPE, requestSpec, type Point } from "./points.js";
import { RawModel } from "./raw.js";
import { ensureBuilt, modelsDir, ServerProcess, type ServerSpec } from "./server-process.js";
import type { Stamp } from "./stamp.js";
import { round, sleep } from "./timing.js";
import type { Workload } from "./workload.js";

export interface ServerResult {
  part: "server";
  stamp: Stamp;
  server: { command: string; model: string; bundle: string; workers: number; threads_per_worker: number };
  settings: { concurrency: number[]; duration_s: number; warmup_s: number; images: number; endpoints: Endpoint[] };
  boot: { ready_s: number; rss_ready_mb: number; ready_s_all: { server: string; ready_s: number }[] };
  endpoints: Partial<
    Record<Endpoint, { request: string; points: Point[]; saturation: { concurrency: number; throughput_rps: number } }>
  >;
  ceiling: Partial<Record<CeilingTask, CeilingResult & { server_rps: number; ratio: number }>>; // graphs only
  // the same work per request as the server (preprocessing + graphs) in this process: ceiling.ts inProcessCeiling
  in_process_ceiling: Partial<Record<CeilingTask, InProcessCeiling & { server_rps: number; ratio: number }>>;
  preprocessing: PreprocessCost; // part of every image request in the server, outside the graphs-only ceiling
  half_load: Partial<Record<Endpoint, { rate_rps: number; result: LoadResult; p99_over_p50: number }>>;
  batching: { concurrency: number; off: Point; on: Point; ratio: number } | null;
  // captions with continuous (iteration-level) batching, the default, vs CONTINUOUS_BATCHING=false (whole-batch)
  continuous: {
    concurrency: number;
    off: Point;
    on: Point;
    ratio: number; // throughput on / off
    p99_ratio: number; // p99 on / off (<= 1: no worse)
  } | null;
  kv_cache: CachePoint[];
  memory: {
    requests: number;
    connections: number;
    failed: number;
    rss_mb: { ready: number; before: number; after: number; max: number };
    growth: number;
    max_growth: number;
    samples: [number, number][];
  };
  teacher: {
    command: string;
    ready_s: number;
    random_init: boolean; // the teacher bundle has random weights: its speed is the teacher's, its answers are not
    tasks: Record<
      "caption" | "vqa",
      { student: Point[]; teacher: Point[]; throughput_ratio: number; latency_ratio_c1: number }
    >;
  } | null;
  teacher_note: string | null;
  cpu_profile: ThreadProfile[] | null;
}

export async function runServer(
  opts: BenchOptions,
  root: string,
  w: Workload,
  teacher: { dir: string | null; note: string | null },
  stamp: Stamp,
  log: (s: string) => void,
): Promise<ServerResult> {
  ensureBuilt(root, log);
  const tmp = mkdtempSync(path.join(os.tmpdir(), "dlip-bench-"));
  const name = readManifest(opts.student).name;
  // the server runs with its defaults unless told otherwise; the raw runs use the same intra-op threads
  const defaultThreads = defaultThreadsPerWorker(os.availableParallelism(), opts.workers);
  const env: Record<string, string> = {
    ...(opts.threads === defaultThreads ? {} : { THREADS_PER_WORKER: String(opts.threads) }),
    ...opts.serverEnv,
  };
  const spec = (models: string, extra: Record<string, string> = {}, nodeArgs: string[] = []): ServerSpec => ({
    root,
    modelsDir: models,
    port: opts.port,
    env: { ...env, ...extra },
    logFile: path.join(tmp, "server.log"),
    nodeArgs,
  });
  const command = (s: ServerSpec) =>
    `${Object.entries(ServerProcess.settings(s))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")} node dist/server.js`;
  const single = modelsDir(path.join(tmp, "models"), { [path.basename(opts.student)]: opts.student }, false);
  const readyAll: { server: string; ready_s: number }[] = [];
  const timing = { minRuns: opts.minRuns, minSeconds: opts.minSeconds };
  try {
    // --- the default server: sweeps, half load, memory ---
    const mainSpec = spec(single);
    const server = await ServerProcess.start(mainSpec);
    readyAll.push({ server: "default bundle", ready_s: round(server.readyS) });
    const rssReady = await server.rssMb();
    log(`server: ready in ${server.readyS.toFixed(2)} s, ${rssReady.toFixed(0)} MiB resident`);
    const endpoints: ServerResult["endpoints"] = {};
    for (const e of opts.endpoints) {
      const req = requestSpec(e, w, null);
      const points: Point[] = [];
      for (const c of opts.concurrency) {
        const p = await point(server, req, e, name, c, opts);
        points.push(p);
        log(
          `server: ${e} c${c}: ${p.throughput_rps} req/s, p50 ${p.latency_ms.p50} ms, p99 ${p.latency_ms.p99} ms, failed ${p.failed}`,
        );
      }
      const best = points.reduce((a, b) => (b.throughput_rps > a.throughput_rps ? b : a));
      endpoints[e] = {
        request: REQUEST_SHAPE[e],
        points,
        saturation: { concurrency: best.connections!, throughput_rps: best.throughput_rps },
      };
    }
    let batchingOn: Point | null = null;
    if (opts.endpoints.includes("embed_image")) {
      batchingOn =
        endpoints.embed_image!.points.find((p) => p.connections === opts.batchingConcurrency) ??
        (await point(server, requestSpec("embed_image", w, null), "embed_image", name, opts.batchingConcurrency, opts));
    }
    let continuousOn: Point | null = null;
    if (opts.endpoints.includes("caption")) {
      const c = opts.continuousConcurrency;
      continuousOn =
        endpoints.caption!.points.find((p) => p.connections === c) ??
        (await point(server, requestSpec("caption", w, null), "caption", name, c, opts));
    }
    const halfLoad: ServerResult["half_load"] = {};
    for (const e of opts.endpoints) {
      const sat = endpoints[e]?.saturation;
      if (!sat) continue;
      const rate = sat.throughput_rps / 2;
      const result = await openLoop(server.url, requestSpec(e, w, null), rate, opts.durationS);
      halfLoad[e] = {
        rate_rps: round(rate),
        result,
        p99_over_p50: round(result.latency_ms.p99 / result.latency_ms.p50),
      };
      log(
        `server: ${e} at ${round(rate)} req/s (half of saturation): p50 ${result.latency_ms.p50} ms, p99 ${result.latency_ms.p99} ms`,
      );
    }
    const memory = await memoryRun(server, w, opts, rssReady, log);
    await server.stop();

    // --- raw onnxruntime in this process: the ceiling at the batch sizes formed, the key/value cache ---
    const raw = await RawModel.load(opts.student, "fp32", opts.threads);
    const inputs = await raw.prepare(w);
    const ceilings: ServerResult["ceiling"] = {};
    for (const task of ["embed_image", "caption", "vqa"] as const) {
      const ep = endpoints[task];
      if (!ep) continue;
      const sat = ep.points.find((p) => p.connections === ep.saturation.concurrency)!;
      const batches: Partial<Record<GraphName, number>> = {};
      for (const g of ceilingGraphs(task))
        batches[g] = Math.max(1, Math.round(sat.breakdown.graphs[g]?.mean_batch_rows ?? 1));
      const c = await ceiling(raw, inputs, task, batches, timing);
      ceilings[task] = { ...c, server_rps: sat.throughput_rps, ratio: round(sat.throughput_rps / c.throughput_rps) };
      log(
        `ceiling: ${task} at batches ${JSON.stringify(batches)}: ${c.throughput_rps} req/s raw; server ${sat.throughput_rps} (${ceilings[task]!.ratio}x)`,
      );
    }
    // the in-process ceiling: the request's whole work, preprocessing at the server's saturation concurrency, the
    // graphs at the largest batch the server formed for the task's graphs there
    const inProcess: ServerResult["in_process_ceiling"] = {};
    for (const task of ["embed_image", "caption", "vqa"] as const) {
      const c = ceilings[task];
      if (!c) continue;
      const B = Math.max(1, ...Object.values(c.batches).map((b) => b ?? 1));
      const C = endpoints[task]!.saturation.concurrency;
      const r = await inProcessCeiling(raw, w.images, w.questions, task, C, B, timing);
      inProcess[task] = { ...r, server_rps: c.server_rps, ratio: round(c.server_rps / r.throughput_rps) };
      log(
        `in-process ceiling: ${task}, ${C} at once, batch ${B}: ${r.throughput_rps} req/s (graphs ${r.graphs_ms_per_request} ms, ` +
          `preprocessing ${r.preprocess_ms_per_request} ms per request); server ${c.server_rps} (${inProcess[task]!.ratio}x)`,
      );
    }
    const preprocessing = await preprocessCost(raw, w.images, ceilings.embed_image?.batches.vision ?? 1, timing);
    log(`preprocessing: ${preprocessing.ms_per_image} ms per image (${preprocessing.cpu_ms_per_image} ms CPU)`);
    const decodeBatch = ceilings.caption?.batches.decoder ?? 8;
    const kv: CachePoint[] = [];
    for (const [b, length] of [
      [1, "natural"],
      [decodeBatch, "natural"],
      [32, "natural"], // issue 16's batch-32 target
      [1, "max"],
    ] as const) {
      if (kv.some((k) => k.batch === b && k.length === length)) continue;
      const k = await cacheComparison(raw, inputs, b, length, timing);
      kv.push(k);
      log(
        `kv cache: b${b} ${length} length: ${k.cached_tokens_per_s} vs ${k.uncached_tokens_per_s} tokens/s uncached (${k.ratio}x)`,
      );
    }
    await raw.release();

    // --- batching off: the same server with MAX_BATCH_SIZE=1 ---
    let batching: ServerResult["batching"] = null;
    if (batchingOn) {
      const off = await ServerProcess.start(spec(single, { MAX_BATCH_SIZE: "1" }));
      readyAll.push({ server: "default bundle, MAX_BATCH_SIZE=1", ready_s: round(off.readyS) });
      const p = await point(
        off,
        requestSpec("embed_image", w, null),
        "embed_image",
        name,
        opts.batchingConcurrency,
        opts,
      );
      await off.stop();
      batching = {
        concurrency: opts.batchingConcurrency,
        off: p,
        on: batchingOn,
        ratio: round(batchingOn.throughput_rps / p.throughput_rps),
      };
      log(
        `batching: c${opts.batchingConcurrency} embed_image ${batchingOn.throughput_rps} req/s on vs ${p.throughput_rps} off (${batching.ratio}x)`,
      );
    }

    // --- continuous batching off: the same server with CONTINUOUS_BATCHING=false (whole-batch decoding) ---
    let continuous: ServerResult["continuous"] = null;
    if (continuousOn) {
      const off = await ServerProcess.start(spec(single, { CONTINUOUS_BATCHING: "false" }));
      readyAll.push({ server: "default bundle, CONTINUOUS_BATCHING=false", ready_s: round(off.readyS) });
      const c = opts.continuousConcurrency;
      const p = await point(off, requestSpec("caption", w, null), "caption", name, c, opts);
      await off.stop();
      continuous = {
        concurrency: c,
        off: p,
        on: continuousOn,
        ratio: round(continuousOn.throughput_rps / p.throughput_rps),
        p99_ratio: round(continuousOn.latency_ms.p99 / p.latency_ms.p99),
      };
      log(
        `continuous batching: c${c} caption ${continuousOn.throughput_rps} req/s on vs ${p.throughput_rps} off ` +
          `(${continuous.ratio}x), p99 ${continuousOn.latency_ms.p99} vs ${p.latency_ms.p99} ms`,
      );
    }

    const teacherResult = teacher.dir
      ? await studentVsTeacher(opts, w, teacher.dir, spec, command, tmp, readyAll, log)
      : null;
    const cpuProfile = opts.cpuProfile ? await profileServer(opts, w, name, spec(single), endpoints, log) : null;
    return {
      part: "server",
      stamp,
      server: {
        command: command(mainSpec),
        model: name,
        bundle: opts.student,
        workers: opts.workers,
        threads_per_worker: opts.threads,
      },
      settings: {
        concurrency: opts.concurrency,
        duration_s: opts.durationS,
        warmup_s: opts.warmupS,
        images: w.images.length,
        endpoints: opts.endpoints,
      },
      boot: { ready_s: readyAll[0].ready_s, rss_ready_mb: round(rssReady), ready_s_all: readyAll },
      endpoints,
      ceiling: ceilings,
      in_process_ceiling: inProcess,
      preprocessing,
      half_load: halfLoad,
      batching,
      continuous,
      kv_cache: kv,
      memory,
      teacher: teacherResult,
      teacher_note: teacher.note,
      cpu_profile: cpuProfile,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Many requests of every task, mixed, at the batching concurrency; resident memory sampled as they are answered. */
async function memoryRun(
  server: ServerProcess,
  w: Workload,
  opts: BenchOptions,
  ready: number,
  log: (s: string) => void,
): Promise<ServerResult["memory"]> {
  const specs = opts.endpoints.map((e) => requestSpec(e, w, null));
  const before = await server.rssMb();
  let answered = 0;
  const samples: [number, number][] = [[0, round(before)]];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sleep(500);
      if (sampling) samples.push([answered, round(await server.rssMb())]);
    }
  })();
  const r = await closedLoop(server.url, specs, {
    connections: Math.min(opts.batchingConcurrency, opts.memoryRequests),
    amount: opts.memoryRequests,
    onResponse: () => void answered++,
  });
  sampling = false;
  await sampler;
  const after = await server.rssMb();
  samples.push([answered, round(after)]);
  const max = Math.max(...samples.map((s) => s[1]));
  const growth = round((after - before) / before);
  log(
    `memory: ${answered} requests, ${before.toFixed(0)} -> ${after.toFixed(0)} MiB resident (max ${max.toFixed(0)}), growth ${(100 * growth).toFixed(1)}%`,
  );
  return {
    requests: answered,
    connections: Math.min(opts.batchingConcurrency, opts.memoryRequests),
    failed: r.failed,
    rss_mb: { ready: round(ready), before: round(before), after: round(after), max: round(max) },
    growth,
    max_growth: round((max - before) / before),
    samples,
  };
}

async function studentVsTeacher(
  opts: BenchOptions,
  w: Workload,
  teacherDir: string,
  spec: (models: string, extra?: Record<string, string>) => ServerSpec,
  command: (s: ServerSpec) => string,
  tmp: string,
  readyAll: { server: string; ready_s: number }[],
  log: (s: string) => void,
): Promise<NonNullable<ServerResult["teacher"]>> {
  const both = modelsDir(path.join(tmp, "models-both"), { student: opts.student, teacher: teacherDir }, true);
  const s = spec(both, { DEFAULT_MODEL: "student" });
  const server = await ServerProcess.start(s);
  readyAll.push({ server: "student + teacher", ready_s: round(server.readyS) });
  const tasks = {} as NonNullable<ServerResult["teacher"]>["tasks"];
  try {
    for (const task of ["caption", "vqa"] as const) {
      const pts = { student: [] as Point[], teacher: [] as Point[] };
      for (const model of ["student", "teacher"] as const) {
        for (const c of [...new Set([1, opts.batchingConcurrency])]) {
          const p = await point(server, requestSpec(task, w, model), task, model, c, opts);
          pts[model].push(p);
          log(`student vs teacher: ${task} ${model} c${c}: ${p.throughput_rps} req/s, p50 ${p.latency_ms.p50} ms`);
        }
      }
      const last = <T>(xs: T[]) => xs[xs.length - 1];
      tasks[task] = {
        ...pts,
        throughput_ratio: round(last(pts.student).throughput_rps / last(pts.teacher).throughput_rps),
        latency_ratio_c1: round(pts.teacher[0].latency_ms.p50 / pts.student[0].latency_ms.p50),
      };
    }
  } finally {
    await server.stop();
  }
  const source = readManifest(teacherDir).source as { random_init?: boolean } | undefined;
  return { command: command(s), ready_s: round(server.readyS), random_init: source?.random_init === true, tasks };
}

/**
 * The default server under node --cpu-prof, at each endpoint's saturation concurrency; its threads summarised into
 * the results. The .cpuprofile files (megabytes; open them in Chrome DevTools) stay in the temp directory named.
 */
async function profileServer(
  opts: BenchOptions,
  w: Workload,
  name: string,
  base: ServerSpec,
  endpoints: ServerResult["endpoints"],
  log: (s: string) => void,
): Promise<ThreadProfile[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-bench-cpu-profile-"));
  const server = await ServerProcess.start({ ...base, nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${dir}`] });
  for (const e of ["embed_image", "caption"] as const) {
    const sat = endpoints[e]?.saturation;
    if (sat) await point(server, requestSpec(e, w, null), e, name, sat.concurrency, opts);
  }
  await server.stop(); // profiles are written as the process exits
  log(`cpu profiles (open in Chrome DevTools): ${dir}`);
  return summariseDir(dir);
}
