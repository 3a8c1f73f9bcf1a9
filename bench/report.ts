// The markdown report (results.md) from the parts' JSON files: stamps and commands first, then the targets, then
// one table per measurement, then the plots.
import { GRAPHS } from "../src/bundle/manifest.js";
import type { FullResult } from "./full.js";
import { fullSection, gpuSection } from "./full-report.js";
import type { GpuResult } from "./gpu.js";
import type { BundleResult, ModelsResult } from "./models.js";
import type { LoadResult } from "./load.js";
import type { Point } from "./points.js";
import type { ServerResult } from "./serving.js";
import type { Stamp } from "./stamp.js";
import { checkTargets } from "./targets.js";
import { explainMisses } from "./why.js";

export const PLOTS = {
  "server_throughput.png":
    "Throughput vs concurrency (dashed: the graphs-only ceiling; dotted: the in-process ceiling)",
  "server_latency.png": "Latency percentiles vs throughput",
  "student_vs_teacher.png": "Student vs teacher",
  "models_graphs.png": "Graph latency by batch size",
  "memory.png": "Resident memory over the stability run",
} as const;

const f = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : v >= 100 ? v.toFixed(0) : v.toFixed(digits);
const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
const head = (cells: string[]) => [row(cells), row(cells.map(() => "---"))];

function stampLines(part: string, s: Stamp): string[] {
  const m = s.machine;
  return [
    row([
      part,
      `\`${s.command}\``,
      `${m.cpu_model}, ${m.cores} cores, ${m.memory_gib} GiB, load ${m.load_average_1m} at start`,
      Object.entries(s.versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(", "),
      `${s.git.commit?.slice(0, 10) ?? "?"}${s.git.dirty ? " (modified)" : ""}`,
      s.time,
    ]),
  ];
}

function bundleRows(b: BundleResult): string[] {
  const p = b.params ?? {};
  const g = b.gflops;
  return [
    row([
      `${b.role} (${b.name}${b.random_init ? ", random weights (speed only)" : ""}${b.int8_source && b.int8_source !== "bundle" ? "; int8 quantised by the benchmark" : ""})`,
      f(p.total / 1e6, 2),
      f(p.vision / 1e6, 2),
      f(p.text_encoder / 1e6, 2),
      f(p.text_decoder / 1e6, 2),
      f(b.size_mb.fp32, 1),
      f(b.size_mb.int8, 1),
      ...GRAPHS.map((k) => f(g[k], 4)),
    ]),
  ];
}

function modelsSection(m: ModelsResult): string[] {
  const bundles = [m.bundles.student, m.bundles.teacher].filter((b): b is BundleResult => b !== null);
  return [
    "## Models: raw onnxruntime-node",
    "",
    `${m.settings.threads} intra-op threads; median of at least ${m.settings.min_runs} runs and ${m.settings.min_seconds} s ` +
      `after a warm-up run; inputs from ${m.settings.images} Shapes test images. End to end decodes a fixed number of ` +
      `tokens per image (the manifest's maximum; [SEP] forbidden before it) so that both models do the same work. ` +
      `Decoder rows: one new token after ${m.settings.decoder_past} cached positions.`,
    "",
    ...(m.teacher_note ? [`**Teacher not measured:** ${m.teacher_note}`, ""] : []),
    ...endToEndTable(m, bundles),
    ...sizeTable(bundles),
    ...graphsTable(m, bundles),
  ];
}

function endToEndTable(m: ModelsResult, bundles: BundleResult[]): string[] {
  const out = [
    "### End to end per image",
    "",
    ...head(["bundle", "variant", "task", "batch", "ms per image", "images/s", "teacher / student"]),
  ];
  for (const b of bundles)
    for (const [v, r] of Object.entries(b.variants))
      for (const task of ["caption", "vqa"] as const)
        for (const p of r!.e2e[task]) {
          const ratio = m.ratios[`${task}_${v}_b${p.batch}`];
          out.push(
            row([
              b.role,
              v,
              task,
              p.batch,
              f(p.ms_per_image),
              f(p.images_per_s, 1),
              b.role === "student" ? f(ratio) + (ratio ? "x" : "") : "",
            ]),
          );
        }
  return out;
}

function sizeTable(bundles: BundleResult[]): string[] {
  return [
    "",
    "### Size and cost",
    "",
    ...head([
      "bundle",
      "params (M)",
      "vision",
      "text encoder",
      "decoder",
      "fp32 MB",
      "int8 MB",
      ...GRAPHS.map((g) => `GFLOPs ${g}`),
    ]),
    ...bundles.flatMap(bundleRows),
    "",
    "GFLOPs: one run at batch 1 (2 x multiply-adds of MatMul, Gemm and Conv, from onnxruntime's profile of the unoptimised graph).",
    "",
  ];
}

function graphsTable(m: ModelsResult, bundles: BundleResult[]): string[] {
  const out = [
    "### Graphs: median latency (ms) and throughput (rows/s)",
    "",
    ...head(["bundle", "variant", "graph", ...m.settings.batch_sizes.map((b) => `batch ${b}`)]),
  ];
  for (const b of bundles)
    for (const [v, r] of Object.entries(b.variants))
      for (const g of GRAPHS)
        out.push(
          row([b.role, v, g, ...r!.graphs[g].map((p) => `${f(p.latency_ms, 3)} ms, ${f(p.throughput_rows_s, 0)}/s`)]),
        );
  out.push("");
  return out;
}

/** "0", or the failures by status: "240 (429: 240)". */
function failedCell(p: LoadResult): string {
  const parts = Object.entries(p.failed_by_status ?? {}).map(([status, n]) => `${status}: ${n}`);
  return p.failed === 0 || parts.length === 0 ? String(p.failed) : `${p.failed} (${parts.join(", ")})`;
}

/** The columns of every table of load points (pointRow's cells after the first, which the table names). */
const POINT_COLUMNS = [
  "connections",
  "req/s",
  "p50 ms",
  "p95 ms",
  "p99 ms",
  "failed",
  "mean batch rows",
  "worker busy",
  "server CPU cores",
  "load generator CPU cores",
];

function pointRow(name: string, p: Point): string {
  const bd = p.breakdown;
  const batches = Object.entries(bd.graphs)
    .map(([g, x]) => `${g} ${f(x!.mean_batch_rows, 1)}`)
    .join(", ");
  return row([
    name,
    p.connections ?? "-",
    f(p.throughput_rps, 1),
    f(p.latency_ms.p50),
    f(p.latency_ms.p95),
    f(p.latency_ms.p99),
    failedCell(p),
    batches,
    f(bd.worker_busy_share),
    f(bd.server_cpu_cores),
    f(p.client_cpu_cores),
  ]);
}

type Endpoint = keyof ServerResult["endpoints"];

/** The point of an endpoint's sweep with the highest throughput. */
function saturation(s: ServerResult, e: Endpoint): Point | undefined {
  const r = s.endpoints[e];
  return r?.points.find((x) => x.connections === r.saturation.concurrency);
}

function serverSection(s: ServerResult): string[] {
  return [
    "## Server",
    "",
    `Started as users start it: \`${s.server.command}\` (${s.server.workers} worker, ${s.server.threads_per_worker} threads). ` +
      `Ready ${f(s.boot.ready_s)} s after process start; ${f(s.boot.rss_ready_mb, 0)} MiB resident when ready. ` +
      `Load: autocannon, ${s.settings.duration_s} s per point after ${s.settings.warmup_s} s of warm-up, JSON bodies with base64 Shapes PNGs (${s.settings.images} images).`,
    "",
    ...(s.teacher_note ? [`**Teacher not measured:** ${s.teacher_note}`, ""] : []),
    ...throughputTable(s),
    ...ceilingTable(s),
    ...breakdownTable(s),
    ...batchingTable(s),
    ...continuousTable(s),
    ...halfLoadTable(s),
    ...kvCacheTable(s),
    ...teacherTable(s),
    ...memorySection(s),
    ...cpuProfileSection(s),
  ];
}

function throughputTable(s: ServerResult): string[] {
  return [
    "### Throughput and latency by concurrency",
    "",
    ...head(["endpoint", ...POINT_COLUMNS]),
    ...Object.entries(s.endpoints).flatMap(([e, r]) => r!.points.map((p) => pointRow(e, p))),
    "",
    "Requests: " +
      Object.entries(s.endpoints)
        .map(([e, r]) => `${e} = ${r!.request}`)
        .join("; ") +
      ". Failed: answers other than 2xx, by HTTP status (429: the queue was full, the server's back-pressure, " +
      "answered at once with Retry-After; 504: the request's deadline passed in the queue), or no answer (error).",
    "",
  ];
}

export function ceilingTable(s: ServerResult): string[] {
  const pct = (v: number | undefined) => (v === undefined ? "-" : `${(100 * v).toFixed(0)}%`);
  const inProc = s.in_process_ceiling ?? {};
  return [
    "### Ceilings: graphs only, and the same work per request in one process",
    "",
    ...head([
      "task",
      "server req/s",
      "graphs-only: batch sizes",
      "graphs-only: ms per request by graph",
      "graphs-only req/s",
      "server / graphs-only",
      "in-process: concurrency, batch",
      "in-process: graphs, preprocessing ms/request",
      "in-process req/s",
      "server / in-process",
      "CPU ms/request: graphs-only, in-process, server",
    ]),
    ...Object.entries(s.ceiling).map(([t, c]) => {
      const ip = inProc[t as keyof typeof inProc];
      return row([
        t,
        f(c!.server_rps, 1),
        JSON.stringify(c!.batches),
        Object.entries(c!.ms_per_request)
          .map(([g, v]) => `${g} ${f(v, 3)}`)
          .join(", "),
        f(c!.throughput_rps, 1),
        pct(c!.ratio),
        ip ? `${ip.concurrency}, ${ip.batch}` : "-",
        ip ? `${f(ip.graphs_ms_per_request, 3)}, ${f(ip.preprocess_ms_per_request, 3)}` : "-",
        f(ip?.throughput_rps, 1),
        pct(ip?.ratio),
        `${f(c!.cpu_ms_per_request)}, ${f(ip?.cpu_ms_per_request)}, ${f(saturation(s, t as Endpoint)?.breakdown.cpu_ms_per_request)}`,
      ]);
    }),
    "",
    "Server req/s: the endpoint's saturation point. **Graphs-only**: each graph of the task on raw onnxruntime-node " +
      "in this process at the batch sizes the server formed at saturation (its mean rows per run, rounded); req/s = " +
      "1 / the sum of each graph's run time per row. **In-process**: a measured end-to-end loop in this process on " +
      "the same cores and threads, no HTTP, JSON or queue: each iteration takes as many requests as the server had " +
      "connections at saturation and preprocesses their PNGs all at once with the server's own code " +
      "(`src/preprocess/image.ts`: decode, resize, normalise; VQA questions tokenised), then runs every graph of the " +
      "task on those rows in batches of the largest batch the server formed for the task's graphs at saturation, " +
      "decoding as the server does (greedy, the model's caps); the next iteration's preprocessing runs while this " +
      "one's graphs run, as the server overlaps them. In-process " +
      "req/s = requests / wall time of the measured loop; its ms/request columns are the wall time of each phase per " +
      "request (they overlap, so they can sum to more than 1000 / req/s). CPU time per request (all threads) does " +
      "not depend on what else the machine runs; wall-clock numbers do.",
    "",
    `Preprocessing alone (the server's decode, resize and normalise of the Shapes PNGs, ` +
      `${s.preprocessing?.concurrency ?? "-"} at a time in this process): ${f(s.preprocessing?.ms_per_image, 3)} ms ` +
      `per image, ${f(s.preprocessing?.cpu_ms_per_image, 3)} ms CPU.`,
    "",
  ];
}

function breakdownTable(s: ServerResult): string[] {
  const rows = Object.keys(s.endpoints).map((e) => {
    const p = saturation(s, e as Endpoint)!;
    const bd = p.breakdown;
    const graphs = Object.entries(bd.graphs)
      .map(
        ([g, x]) =>
          `${g}: ${f(x!.mean_batch_rows, 1)}, ${f(x!.queue_wait_ms)}, ${f(x!.inference_ms)}, ${f(x!.busy_share)}`,
      )
      .join("; ");
    return row([
      e,
      p.connections ?? "-",
      f(bd.server_ms),
      f(bd.preprocess_ms),
      f(bd.cpu_ms_per_request),
      graphs,
      f(bd.tokens_per_request, 1),
    ]);
  });
  return [
    "",
    "### Where the time goes at saturation (from the server's /metrics)",
    "",
    ...head([
      "endpoint",
      "connections",
      "server ms/request",
      "preprocess ms/request",
      "CPU ms/request",
      "per graph: rows/batch, queue wait ms/row, inference ms/batch, busy share",
      "tokens/request",
    ]),
    ...rows,
    "",
  ];
}

function batchingTable(s: ServerResult): string[] {
  if (!s.batching) return [];
  return [
    `### Dynamic batching vs batching off (image embeddings, ${s.batching.concurrency} connections)`,
    "",
    ...head(["server", ...POINT_COLUMNS]),
    pointRow("MAX_BATCH_SIZE=1", s.batching.off),
    pointRow("default (32)", s.batching.on),
    "",
    `On / off: **${f(s.batching.ratio)}x**.`,
    "",
  ];
}

/** Captions with continuous (iteration-level) batching, the default, vs CONTINUOUS_BATCHING=false. */
export function continuousTable(s: ServerResult): string[] {
  const c = s.continuous;
  if (!c) return [];
  return [
    `### Continuous batching vs whole-batch decoding (captions, ${c.concurrency} connections)`,
    "",
    ...head(["server", ...POINT_COLUMNS]),
    pointRow("CONTINUOUS_BATCHING=false", c.off),
    pointRow("default (continuous)", c.on),
    "",
    `On / off: **${f(c.ratio)}x** throughput, p99 ${f(c.on.latency_ms.p99)} vs ${f(c.off.latency_ms.p99)} ms ` +
      `(on / off ${f(c.p99_ratio)}). Tokens per request: on ${f(c.on.breakdown.tokens_per_request, 1)}, ` +
      `off ${f(c.off.breakdown.tokens_per_request, 1)}.`,
    "",
  ];
}

export function halfLoadTable(s: ServerResult): string[] {
  return [
    "### Latency at half the saturation throughput (open loop, Poisson arrivals)",
    "",
    ...head(["endpoint", "offered req/s", "answered req/s", "p50 ms", "p95 ms", "p99 ms", "p99 / p50"]),
    ...Object.entries(s.half_load).map(([e, h]) =>
      row([
        e,
        f(h!.rate_rps, 1),
        f(h!.result.throughput_rps, 1),
        f(h!.result.latency_ms.p50),
        f(h!.result.latency_ms.p95),
        f(h!.result.latency_ms.p99),
        f(h!.p99_over_p50),
      ]),
    ),
  ];
}

function kvCacheTable(s: ServerResult): string[] {
  return [
    "",
    "### Caption decoding with the key/value cache vs without (raw onnxruntime, the server's decoding code)",
    "",
    ...head([
      "batch",
      "caption length",
      "tokens per run",
      "cached tokens/s",
      "uncached tokens/s",
      "cached / uncached",
      "same captions",
    ]),
    ...s.kv_cache.map((k) =>
      row([
        k.batch,
        k.length === "max" ? "fixed at the cap" : "until [SEP]",
        k.tokens,
        f(k.cached_tokens_per_s, 0),
        f(k.uncached_tokens_per_s, 0),
        `${f(k.ratio)}x`,
        k.same_tokens ? "yes" : "no",
      ]),
    ),
    "",
  ];
}

export function teacherTable(s: ServerResult): string[] {
  if (!s.teacher) return [];
  const tasks = Object.entries(s.teacher.tasks);
  const random = s.teacher.random_init === true;
  const teacherName = random ? "teacher (random weights, speed only)" : "teacher";
  const tokens = (ps: Point[]) => f(ps[ps.length - 1]?.breakdown.tokens_per_request, 1);
  return [
    "### Student vs teacher in one server",
    "",
    `\`${s.teacher.command}\`, ready in ${f(s.teacher.ready_s)} s.` +
      (random
        ? " The teacher bundle has random weights (speed only): its graphs are the teacher's architecture, so its " +
          "time per token is the teacher's, but its answers are not, and its captions may have other lengths than " +
          "a trained teacher's. The server cannot be made to decode a fixed length (the routes take a maximum, no " +
          "minimum), so the req/s ratio holds for the tokens per request shown; the raw onnxruntime comparison " +
          "(models part) decodes a fixed length for both."
        : ""),
    "",
    ...head(["task", "model", ...POINT_COLUMNS]),
    ...tasks.flatMap(([task, t]) =>
      (["student", "teacher"] as const).flatMap((model) =>
        t[model].map((p) => pointRow(`${task} | ${model === "teacher" ? teacherName : model}`, p)),
      ),
    ),
    "",
    ...tasks.map(
      ([task, t]) =>
        `- ${task}: student ${f(t.throughput_ratio)}x the ${teacherName}'s throughput; teacher p50 / student p50 at 1 ` +
        `connection ${f(t.latency_ratio_c1)}x; tokens per request at the last point: student ${tokens(t.student)}, ` +
        `teacher ${tokens(t.teacher)}.`,
    ),
    "",
  ];
}

function memorySection(s: ServerResult): string[] {
  const m = s.memory;
  return [
    "### Resident memory",
    "",
    `${m.requests} requests (every endpoint in turn, ${m.connections} connections, ${m.failed} failed): ` +
      `${f(m.rss_mb.ready, 0)} MiB when ready, ${f(m.rss_mb.before, 0)} MiB before the run, ${f(m.rss_mb.after, 0)} MiB after ` +
      `(max ${f(m.rss_mb.max, 0)}); growth ${(100 * m.growth).toFixed(1)}% (max ${(100 * m.max_growth).toFixed(1)}%).`,
    "",
    "Server start to ready: " + s.boot.ready_s_all.map((r) => `${r.server} ${f(r.ready_s)} s`).join(", ") + ".",
    "",
  ];
}

function cpuProfileSection(s: ServerResult): string[] {
  if (!s.cpu_profile) return [];
  return [
    "### CPU profile of the server at saturation (node --cpu-prof, start-up included; self time per thread)",
    "",
    ...s.cpu_profile.flatMap((t) => [
      `${t.file}: ${t.seconds} s, idle ${(100 * t.idle_share).toFixed(0)}%, GC ${(100 * t.gc_share).toFixed(0)}%`,
      "",
      ...head(["function", "where", "self"]),
      ...t.top.map((x) => row([`\`${x.function}\``, x.where, `${(100 * x.self_share).toFixed(1)}%`])),
      "",
    ]),
  ];
}

export function renderReport(
  models: ModelsResult | null,
  server: ServerResult | null,
  plots: string[],
  full: FullResult | null = null,
  gpu: GpuResult | null = null,
): string {
  const out = ["# DLIP serve benchmarks", ""];
  out.push(
    "Each part's JSON (`models.json`, `server.json`, `full.json`, `gpu.json`) holds every number below; rerun a part with its command.",
    "",
  );
  out.push(...head(["part", "command", "machine", "versions", "commit", "time"]));
  if (models) out.push(...stampLines("models", models.stamp));
  if (server) out.push(...stampLines("server", server.stamp));
  if (full) out.push(...stampLines("full", full.stamp));
  if (gpu) out.push(...stampLines("gpu", gpu.stamp));
  out.push("", "## Targets", "", ...head(["target", "goal", "measured", "met", "from"]));
  const checks = checkTargets(models, server, full);
  for (const t of checks)
    out.push(
      row([t.target, t.goal, t.measured, t.met === null ? "not measured" : t.met ? "yes" : "**no**", `\`${t.where}\``]),
    );
  out.push("", ...explainMisses(models, server, checks));
  if (models) out.push(...modelsSection(models));
  if (server) out.push(...serverSection(server));
  if (full) out.push(...fullSection(full, checks));
  if (gpu) out.push(...gpuSection(gpu));
  if (plots.length) {
    out.push("## Plots", "");
    for (const p of plots) out.push(`![${PLOTS[p as keyof typeof PLOTS] ?? p}](${p})`, "");
  }
  return out.join("\n");
}
