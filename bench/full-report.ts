// The full-size part's section of results.md (from full.json): the bundles, raw onnxruntime side by side, each model's
// server, the ceilings, and why a full-size target was missed, computed from the same numbers.
import type { FullResult, FullTask, FullVariant, Role } from "./full.js";
import type { GpuResult } from "./gpu.js";
import type { Point } from "./points.js";
import type { TargetCheck } from "./targets.js";

const f = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : v >= 100 ? v.toFixed(0) : v.toFixed(digits);
const x = (v: number | null | undefined) =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : `${v.toFixed(2)}x`;
const pct = (v: number | null | undefined) =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : `${(100 * v).toFixed(0)}%`;
const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
const head = (cells: string[]) => [row(cells), row(cells.map(() => "---"))];
const ROLES: Role[] = ["teacher", "student"];

function variants(full: FullResult): [string, FullVariant][] {
  return Object.entries(full.variants) as [string, FullVariant][];
}

function bundlesTable(full: FullResult): string[] {
  const t = full.bundles.teacher.params?.total ?? NaN;
  return [
    ...head([
      "model",
      "bundle",
      "params (M)",
      "vision",
      "text encoder",
      "decoder",
      "share of teacher",
      "fp32 MB",
      "int8 MB",
      "sizes",
    ]),
    ...ROLES.map((r) => {
      const b = full.bundles[r];
      const p = b.params ?? {};
      const m = b.model as Record<string, number>;
      return row([
        r + (b.random_init ? " (random weights)" : ""),
        `\`${b.name}\``,
        f(p.total / 1e6, 1),
        f(p.vision / 1e6, 1),
        f(p.text_encoder / 1e6, 1),
        f(p.text_decoder / 1e6, 1),
        pct(p.total / t),
        f(b.size_mb.fp32, 0),
        f(b.size_mb.int8, 0),
        `${b.image_size} px, ${m.image_tokens} image tokens, vision width ${m.vision_width}, text width ${m.text_width}, ` +
          `${m.decoder_layers} decoder layers, vocabulary ${m.vocab_size}`,
      ]);
    }),
  ];
}

function e2eTable(full: FullResult): string[] {
  return [
    ...head([
      "variant",
      "task",
      "batch",
      "tokens per image",
      "teacher ms/image",
      "student ms/image",
      "teacher / student",
      "CPU ms/image teacher, student",
      "teacher / student, CPU time",
      "runs each",
    ]),
    ...variants(full).flatMap(([v, r]) =>
      r.e2e.map((e) =>
        row([
          v,
          e.task,
          e.batch,
          e.tokens,
          f(e.teacher_ms_per_image, 1),
          f(e.student_ms_per_image, 1),
          `**${x(e.ratio)}**`,
          `${f(e.teacher_cpu_ms / e.batch, 1)}, ${f(e.student_cpu_ms / e.batch, 1)}`,
          x(e.cpu_ratio),
          e.runs,
        ]),
      ),
    ),
  ];
}

function graphsTable(full: FullResult): string[] {
  return [
    ...head([
      "variant",
      "graph",
      "batch",
      "teacher ms",
      "student ms",
      "teacher / student",
      "teacher / student, CPU time",
    ]),
    ...variants(full).flatMap(([v, r]) =>
      r.graphs.map((g) =>
        row([v, g.graph, g.batch, f(g.teacher_ms, 1), f(g.student_ms, 1), x(g.ratio), x(g.cpu_ratio)]),
      ),
    ),
  ];
}

function serversTable(full: FullResult): string[] {
  return [
    ...head([
      "variant",
      "model",
      "ready s",
      "resident MiB when ready",
      "resident MiB after the points",
      "raw sessions created s",
    ]),
    ...variants(full).flatMap(([v, r]) =>
      ROLES.map((role) => {
        const s = r.servers?.[role];
        return row([v, role, f(s?.ready_s), f(s?.rss_ready_mb, 0), f(s?.rss_end_mb, 0), f(r.raw_load_s[role])]);
      }),
    ),
  ];
}

function pointCells(p: Point): (string | number)[] {
  const batches = Object.entries(p.breakdown.graphs)
    .map(([g, b]) => `${g} ${f(b!.mean_batch_rows, 1)}`)
    .join(", ");
  return [
    p.connections ?? "-",
    p.ok,
    f(p.throughput_rps, 3),
    f(p.latency_ms.p50, 0),
    f(p.latency_ms.p99, 0),
    p.failed,
    f(p.breakdown.tokens_per_request, 1),
    batches,
    f(p.breakdown.cpu_ms_per_request, 0),
  ];
}

function pointsTable(full: FullResult): string[] {
  return [
    ...head([
      "variant",
      "endpoint",
      "model",
      "connections",
      "answered",
      "req/s",
      "p50 ms",
      "p99 ms",
      "failed",
      "tokens/request",
      "mean batch rows",
      "server CPU ms/request",
    ]),
    ...variants(full).flatMap(([v, r]) =>
      r.servers
        ? Object.keys(r.servers.teacher.points).flatMap((task) =>
            (full.settings.concurrency ?? []).flatMap((_, i) =>
              ROLES.map((role) => {
                const p = r.servers![role].points[task as keyof FullVariant["server_ratios"]][i];
                return p ? row([v, task, role, ...pointCells(p)]) : "";
              }).filter(Boolean),
            ),
          )
        : [],
    ),
  ];
}

function ratiosTable(full: FullResult): string[] {
  return [
    ...head([
      "variant",
      "endpoint",
      "student / teacher req/s",
      "at connections",
      "teacher / student p50 at 1 connection",
      "teacher / student server CPU per request",
      "tokens/request teacher, student",
    ]),
    ...variants(full).flatMap(([v, r]) =>
      Object.entries(r.server_ratios).map(([task, q]) =>
        row([
          v,
          task,
          `**${x(q!.throughput_ratio)}**`,
          q!.connections,
          x(q!.p50_ratio_c1),
          x(q!.cpu_ratio),
          `${f(q!.tokens.teacher, 1)}, ${f(q!.tokens.student, 1)}`,
        ]),
      ),
    ),
  ];
}

function ceilingTable(full: FullResult): string[] {
  return [
    ...head([
      "variant",
      "model",
      "task",
      "at once, batch",
      "in-process req/s",
      "server req/s",
      "server / in-process",
      "in-process graphs, preprocessing ms/request",
      "CPU ms/request: server, in-process",
    ]),
    ...variants(full).flatMap(([v, r]) =>
      r.servers
        ? ROLES.flatMap((role) =>
            Object.entries(r.servers![role].ceiling).map(([task, c]) =>
              row([
                v,
                role,
                task,
                `${c!.concurrency}, ${c!.batch}`,
                f(c!.throughput_rps, 3),
                f(c!.server_rps, 3),
                `**${pct(c!.ratio)}**`,
                `${f(c!.graphs_ms_per_request, 0)}, ${f(c!.preprocess_ms_per_request, 1)}`,
                `${f(r.servers![role].points[task as FullTask].at(-1)?.breakdown.cpu_ms_per_request, 0)}, ${f(c!.cpu_ms_per_request, 0)}`,
              ]),
            ),
          )
        : [],
    ),
  ];
}

/** Why a full-size target was missed, from the run's numbers (empty when none was). */
export function explainFullMisses(full: FullResult, checks: TargetCheck[]): string[] {
  const missed = (prefix: string) =>
    checks.some((c) => c.met === false && c.target.startsWith(prefix) && c.where.startsWith("full."));
  const v = full.variants.fp32;
  if (!v) return [];
  const out: string[] = [];
  if (missed("full size") && checks.some((c) => c.met === false && c.where.includes(".e2e["))) {
    const g = (name: string, b: number) => v.graphs.find((r) => r.graph === name && r.batch === b);
    out.push(
      `- **Raw end to end**: per graph at batch 1 the student is ${x(g("vision", 1)?.ratio)} faster on vision, ` +
        `${x(g("decoder", 1)?.ratio)} on one decoder step and ${x(g("cross_kv", 1)?.ratio)} on cross_kv; an end-to-end ` +
        `ratio is bounded by the graph where the student saves least, weighted by its share of the teacher's time.`,
    );
  }
  for (const task of ["caption", "vqa", "embed_image"] as const) {
    const r = v.server_ratios[task];
    const c = checks.find((k) => k.where === `full.variants.fp32.server_ratios.${task}.throughput_ratio`);
    if (!r || !c || c.met !== false) continue;
    const raw = v.e2e.find(
      (e) =>
        e.task === (task === "embed_image" ? "caption" : task) && e.batch === Math.max(...full.settings.batch_sizes),
    );
    const visionB = v.graphs.find((g) => g.graph === "vision" && g.batch === Math.max(...full.settings.batch_sizes));
    const rawRatio = task === "embed_image" ? visionB?.ratio : raw?.ratio;
    const tokens =
      task === "embed_image"
        ? ""
        : ` Tokens per request: teacher ${f(r.tokens.teacher, 1)}, student ${f(r.tokens.student, 1)} (greedy until [SEP] or the cap: random weights decode different lengths).`;
    const sc = (role: Role) => v.servers?.[role].points[task].at(-1)?.breakdown.cpu_ms_per_request;
    out.push(
      `- **Through the server, ${task}** (${x(r.throughput_ratio)} at ${r.connections} connections): on raw onnxruntime the ` +
        `same work at batch ${Math.max(...full.settings.batch_sizes)} is ${x(rawRatio)} (${task === "embed_image" ? "vision graph" : "fixed-length end to end"}). ` +
        `Server CPU per request: teacher ${f(sc("teacher"), 0)} ms, student ${f(sc("student"), 0)} ms.${tokens}`,
    );
  }
  // a server cannot beat the same work done in-process: a ratio above 100% measures the noise of the windows
  const ceilings = ROLES.flatMap((role) =>
    Object.entries(v.servers?.[role].ceiling ?? {}).map(([task, c]) => ({ role, task, ratio: c!.ratio })),
  );
  const over = ceilings.filter((c) => c.ratio > 1);
  if (ceilings.some((c) => c.ratio < 0.9) && over.length)
    out.push(
      `- **Noise of the server-vs-in-process windows**: each window is a few requests (seconds to a minute; fp32: ` +
        `${full.settings.ceiling_rounds ?? 1} of each, taken in turn) on a machine shared with other jobs (load average ` +
        `${full.stamp.machine.load_average_1m} at the start). ${over.length} of ${ceilings.length} fp32 ratios ` +
        `${over.length === 1 ? "is" : "are"} above 100% (${over.map((c) => `${c.role} ${c.task} ${pct(c.ratio)}`).join(", ")}), ` +
        `which a server doing the same work cannot reach: the windows move by at least that much either way. The ` +
        `CPU time per request (the table's last column) does not depend on what else runs.`,
    );
  for (const role of ROLES)
    for (const task of ["caption", "vqa", "embed_image"] as const) {
      const c = v.servers?.[role].ceiling[task];
      if (!c || c.ratio >= 0.9) continue;
      const p = v.servers![role].points[task].at(-1)!;
      const cpuS = p.breakdown.cpu_ms_per_request;
      const cpuI = c.cpu_ms_per_request;
      // cores the process used while measured: req/s x CPU seconds per request
      const coresS = (c.server_rps * cpuS) / 1000;
      const coresI = (c.throughput_rps * cpuI) / 1000;
      const spread = (xs: number[]) => Math.max(...xs) / Math.min(...xs) - 1;
      const windows = c.windows
        ? ` (medians of ${c.windows.server_rps.length} windows each, taken in turn: server ` +
          `${c.windows.server_rps.map((r) => f(r, 3)).join(", ")}; in-process ${c.windows.in_process_rps.map((r) => f(r, 3)).join(", ")}: ` +
          `the server's fastest window is ${pct(spread(c.windows.server_rps))} above its slowest, the in-process ` +
          `loop's ${pct(spread(c.windows.in_process_rps))}, against a gap of ${pct(1 - c.ratio)} between the medians)`
        : "";
      out.push(
        `- **${role} server vs in-process, ${task}** (${pct(c.ratio)}): server ${f(c.server_rps, 3)} req/s, ` +
          `in-process ${f(c.throughput_rps, 3)} req/s${windows}, at batch ${c.batch} (the server formed ` +
          `${Object.entries(p.breakdown.graphs)
            .map(([g, b]) => `${g} ${f(b!.mean_batch_rows, 1)}`)
            .join(", ")} rows per run). The CPU time per request is ${f(cpuS, 0)} ms in the server and ` +
          `${f(cpuI, 0)} ms in-process` +
          (cpuS <= 1.02 * cpuI
            ? `: the server does no more work per request. `
            : ` (the server's CPU from its /metrics over its first window, HTTP, JSON and base64 included): ` +
              `${pct(cpuS / cpuI - 1)} more. `) +
          `req/s = cores used / CPU per request: the server used about ${f(coresS)} cores against ` +
          `${f(coresI)} for the in-process loop, and its inference worker was inside a graph run ` +
          `${pct(p.breakdown.worker_busy_share)} of the window` +
          (p.breakdown.worker_busy_share >= 0.9
            ? ` (no pipeline gaps to speak of: the cores it was given, on 2 shared with the other jobs, set its rate).`
            : ` (the rest is time with nothing to run: requests not yet preprocessed, or the window's start and end).`),
      );
    }
  return out.length
    ? ["### Why the missed full-size targets are missed (from this run's numbers)", "", ...out, ""]
    : [];
}

export function fullSection(full: FullResult, checks: TargetCheck[]): string[] {
  const s = full.settings;
  const st = full.stamp.machine;
  return [
    "## Full size: BLIP-base teacher vs DLIP student (random weights: speed and memory only)",
    "",
    `Both bundles were written by the project's exporter with random weights (\`bench/full_bundles.py\`): their ` +
      `graphs have the real sizes, so their time per image and their memory are the models', but their outputs mean ` +
      `nothing. Machine: ${st.cpu_model}, ${st.cores} cores, ${st.memory_gib} GiB, load average ${st.load_average_1m} at ` +
      `the start.` +
      (s.note ? ` ${s.note.replace(/\.?$/, ".")}` : "") +
      ` Every teacher / student ratio comes from measurements taken in turn (raw: teacher, student, student, teacher, ...; ` +
      `server: a teacher point, then the same point on the student), so that a load that comes and goes lands on both.`,
    "",
    `Settings: ${s.threads} onnxruntime intra-op thread(s) (the server's default THREADS_PER_WORKER here, raw runs ` +
      `too); raw: median of ${s.raw_runs} runs per model after a warm-up run, inputs from ${s.images} Shapes test ` +
      `images resized to 384 px; end to end decodes a fixed number of tokens per image ([SEP] forbidden before the cap). ` +
      `Server: each model in its own server (\`${Object.entries(s.server_env)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")} node dist/server.js\`, PRECISION per variant), autocannon with JSON bodies, ` +
      `one warm-up request per connection, then ${s.requests_per_connection} requests per connection (3 at 1 ` +
      `connection); p99 of so few requests is close to their maximum. In-process ceiling: the server's work per request ` +
      `(preprocessing + graphs, bench/ceiling.ts) in the benchmark's process right after the server's point, ` +
      `iterations of as many requests as connections; fp32: ${s.ceiling_rounds ?? 1} windows of each, taken in turn ` +
      `(the server's point, in-process, then one request per connection on the server, in-process, ...), medians ` +
      `compared; int8: one of each.`,
    "",
    "### Bundles",
    "",
    ...bundlesTable(full),
    "",
    "### Raw onnxruntime, end to end per image",
    "",
    ...e2eTable(full),
    "",
    "### Raw onnxruntime, per graph (median ms per run; decoder: one token after 10 cached positions)",
    "",
    ...graphsTable(full),
    "",
    "### Servers: start and memory",
    "",
    ...serversTable(full),
    "",
    "### Through the server",
    "",
    ...pointsTable(full),
    "",
    ...ratiosTable(full),
    "",
    "### Server vs the in-process ceiling",
    "",
    ...ceilingTable(full),
    "",
    ...explainFullMisses(full, checks),
  ];
}

/** The CUDA part (bench/gpu.ts, gpu.json): the card and its numbers, or why nothing was measured. */
export function gpuSection(g: GpuResult): string[] {
  const where = `${g.stamp.machine.cpu_model}, ${g.stamp.machine.cores} cores, ${g.stamp.time}`;
  if (!g.available)
    return [
      "## GPU: full-size bundles on the CUDA execution provider",
      "",
      `**No GPU was available** to this run (\`${g.stamp.command}\` on ${where}): ${g.reason}. Nothing was measured ` +
        "on the CUDA execution provider, fp32 or fp16; the script (bench/gpu.ts) measures nothing on the CPU in the " +
        "GPU's place.",
      "",
    ];
  const rows = (Object.entries(g.variants) as [string, NonNullable<GpuResult["variants"]["fp32"]>][]).flatMap(
    ([v, r]) =>
      (["vision", "caption"] as const).flatMap((task) =>
        r[task].map((p) =>
          row([
            v,
            task === "vision" ? "vision graph" : "encode + 20-token caption",
            p.batch,
            f(p.teacher_ms_per_image, 2),
            f(p.student_ms_per_image, 2),
            f(p.teacher_images_s, 1),
            f(p.student_images_s, 1),
            x(p.ratio),
          ]),
        ),
      ),
  );
  const mem = (Object.entries(g.variants) as [string, NonNullable<GpuResult["variants"]["fp32"]>][]).map(
    ([v, r]) =>
      `${v}: sessions created in ${f(r.load_s.teacher)} s (teacher), ${f(r.load_s.student)} s (student); GPU memory ` +
      `of this process with both loaded ${f(r.memory_mib.loaded, 0)} MiB, after the runs ${f(r.memory_mib.after, 0)} MiB`,
  );
  return [
    "## GPU: full-size bundles on the CUDA execution provider",
    "",
    `${g.card!.name} (${g.card!.memory_total}, driver ${g.card!.driver}); onnxruntime-node's CUDA execution provider, ` +
      "teacher and student in turn, median ms per image; every run copies its inputs and outputs between host and " +
      "device (onnxruntime-node binds no device tensors here).",
    "",
    ...head([
      "variant",
      "task",
      "batch",
      "teacher ms/image",
      "student ms/image",
      "teacher images/s",
      "student images/s",
      "teacher / student",
    ]),
    ...rows,
    "",
    ...mem.map((m) => `- ${m}.`),
    ...g.skipped.map((s) => `- Not measured: ${s}.`),
    "",
  ];
}
