// The full-size benchmark part and the CUDA script, without full-size models: the side-by-side timer's order, the
// options, the full-size targets and tables from made-up results, and the CUDA script's refusal without a GPU.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import type { FullResult, FullVariant } from "../../bench/full.js";
import { fullSection, gpuSection } from "../../bench/full-report.js";
import { measureVariant, type GpuResult } from "../../bench/gpu.js";
import { OptionsError, parseOptions } from "../../bench/options.js";
import type { Point } from "../../bench/points.js";
import { checkFullTargets, checkTargets } from "../../bench/targets.js";
import { alternate } from "../../bench/timing.js";
import { MICRO, ROOT } from "../helpers/app.js";

test("alternate runs the calls in turn, the order reversed every other round, after one warm-up each", async () => {
  const calls: string[] = [];
  const fn = (name: string) => async () => void calls.push(name);
  const [a, b] = await alternate([fn("a"), fn("b")], { minRuns: 3, minSeconds: 0 });
  assert.deepEqual(calls, ["a", "b", "a", "b", "b", "a", "a", "b"]);
  assert.deepEqual([a.runs, b.runs], [3, 3]);
  calls.length = 0;
  await alternate([fn("a"), fn("b")], { minRuns: 1, minSeconds: 0, warm: false });
  assert.deepEqual(calls, ["a", "b"]);
});

test("options: the default run leaves the full part out; --parts full takes its own flags", () => {
  const d = parseOptions([], ROOT);
  assert.deepEqual(d.parts, ["models", "server"]);
  assert.deepEqual(
    [d.fullVariants, d.fullBatchSizes, d.fullConcurrency],
    [
      ["fp32", "int8"],
      [1, 8],
      [1, 8],
    ],
  );
  assert.equal(d.fullDir, path.join(ROOT, "data/bench-full"));
  const o = parseOptions(
    ["--parts", "full", "--full-variants", "int8", "--full-concurrency", "1,4", "--note", "6 jobs shared the cores"],
    ROOT,
  );
  assert.deepEqual(
    [o.parts, o.fullVariants, o.fullConcurrency, o.note],
    [["full"], ["int8"], [1, 4], "6 jobs shared the cores"],
  );
  assert.throws(() => parseOptions(["--full-variants", "fp16"], ROOT), OptionsError);
  assert.throws(() => parseOptions(["--full-requests", "0"], ROOT), OptionsError);
});

function point(rps: number, p50: number, connections: number, tokens: number | null): Point {
  return {
    connections,
    ok: 16,
    failed: 0,
    throughput_rps: rps,
    latency_ms: { p50, p95: p50, p99: p50 * 1.2, mean: p50, max: p50 * 1.2 },
    breakdown: {
      graphs: {
        vision: { batches: 2, mean_batch_rows: connections, queue_wait_ms: 1, inference_ms: 5, busy_share: 0.9 },
      },
      cpu_ms_per_request: 1000 / rps,
      tokens_per_request: tokens,
    },
  } as unknown as Point;
}

/** Wall and CPU time of one side-by-side measurement (CPU 10% above wall). */
function side(teacher: number, student: number) {
  const cpu = { teacher_cpu_ms: teacher * 1.1, student_cpu_ms: student * 1.1, cpu_ratio: teacher / student };
  return { teacher_ms: teacher, student_ms: student, ratio: teacher / student, ...cpu, runs: 3 };
}

/** A full-size result with made-up numbers: the student 3.5x faster raw, 2.5x through the server on captions. */
function fakeFull(): FullResult {
  const ceiling = (server: number, inProcess: number) => ({
    concurrency: 8,
    batch: 8,
    requests: 8,
    throughput_rps: inProcess,
    cpu_ms_per_request: 1,
    graphs_ms_per_request: 1,
    preprocess_ms_per_request: 1,
    server_rps: server,
    ratio: server / inProcess,
  });
  const server = (rps: number, tokens: number) => ({
    command: "node dist/server.js",
    ready_s: 5,
    rss_ready_mb: 1000,
    rss_end_mb: 1100,
    points: {
      caption: [point(rps / 4, 4000 / rps, 1, tokens), point(rps, 8000 / rps, 8, tokens)],
      vqa: [point(rps, 1000, 1, 3), point(rps, 1000, 8, 3)],
      embed_image: [point(rps, 1000, 1, null), point(rps, 1000, 8, null)],
    },
    ceiling: { caption: ceiling(rps, rps / 0.95), vqa: ceiling(rps, rps / 0.8), embed_image: ceiling(rps, rps) },
  });
  const v: FullVariant = {
    raw_load_s: { teacher: 10, student: 3 },
    graphs: [{ graph: "vision", batch: 1, ...side(600, 200) }],
    e2e: [
      {
        task: "caption",
        batch: 1,
        tokens: 20,
        ...side(3500, 1000),
        teacher_ms_per_image: 3500,
        student_ms_per_image: 1000,
      },
      {
        task: "vqa",
        batch: 1,
        tokens: 10,
        ...side(2000, 800),
        teacher_ms_per_image: 2000,
        student_ms_per_image: 800,
      },
    ],
    servers: { teacher: server(0.4, 20), student: server(1, 20) },
    server_ratios: {
      caption: {
        connections: 8,
        throughput_ratio: 2.5,
        p50_ratio_c1: 2.5,
        cpu_ratio: 2.6,
        tokens: { teacher: 20, student: 20 },
      },
      vqa: {
        connections: 8,
        throughput_ratio: 3.2,
        p50_ratio_c1: 3,
        cpu_ratio: 3.1,
        tokens: { teacher: 3, student: 3 },
      },
    },
  };
  const bundle = (name: string, total: number) => ({
    dir: `/b/${name}`,
    name,
    random_init: true,
    params: { total, vision: total / 4, text_encoder: total / 4, text_decoder: total / 2 },
    size_mb: { fp32: total / 250_000, int8: total / 1_000_000 },
    model: { image_tokens: 577, vision_width: 768, text_width: 768, decoder_layers: 12, vocab_size: 30524 },
    image_size: 384,
  });
  return {
    part: "full",
    stamp: { machine: { cpu_model: "Xeon", cores: 2, memory_gib: 23.6, load_average_1m: 5 } },
    settings: {
      threads: 1,
      batch_sizes: [1, 8],
      concurrency: [1, 8],
      requests_per_connection: 2,
      raw_runs: 3,
      images: 8,
      server_env: { REQUEST_TIMEOUT_MS: "600000" },
      variants: ["fp32"],
      note: "6 other jobs shared the 2 cores",
    },
    bundles: { teacher: bundle("blip-base-teacher-random", 385e6), student: bundle("dlip-student-random", 86e6) },
    variants: { fp32: v },
  } as unknown as FullResult;
}

test("full-size targets: 2.7x raw end to end, 3x through the server, 90% of the in-process ceiling", () => {
  const ts = checkFullTargets(fakeFull());
  const at = (where: string) => ts.find((t) => t.where === where)!;
  assert.deepEqual(
    [
      at("full.variants.fp32.e2e[caption, batch 1].ratio").measured,
      at("full.variants.fp32.e2e[caption, batch 1].ratio").met,
    ],
    ["3.50x", true],
  );
  assert.equal(at("full.variants.fp32.e2e[vqa, batch 1].ratio").met, false); // 2.5x
  assert.equal(at("full.variants.fp32.server_ratios.caption.throughput_ratio").met, false); // 2.5x
  assert.equal(at("full.variants.fp32.server_ratios.vqa.throughput_ratio").met, true); // 3.2x
  // embed_image was not loaded: not measured, never met
  assert.deepEqual(
    [
      at("full.variants.fp32.server_ratios.embed_image.throughput_ratio").met,
      at("full.variants.fp32.server_ratios.embed_image.throughput_ratio").measured,
    ],
    [null, "not measured"],
  );
  assert.equal(at("full.variants.fp32.servers.student.ceiling.caption.ratio").measured, "95%");
  assert.equal(at("full.variants.fp32.servers.student.ceiling.vqa.ratio").met, false);
  assert.match(at("full.variants.fp32.e2e[caption, batch 1].ratio").target, /random weights/);
  // part of every check of a run that has full.json; absent without it
  assert.equal(checkTargets(null, null, fakeFull()).filter((t) => t.where.startsWith("full.")).length, ts.length);
  assert.equal(checkTargets(null, null).filter((t) => t.where.startsWith("full.")).length, 0);
});

test("full-size section: random weights said, the note, ratios, and why a missed target is missed", () => {
  const full = fakeFull();
  const md = fullSection(full, checkFullTargets(full)).join("\n");
  assert.match(md, /random weights: speed and memory only/);
  assert.match(md, /6 other jobs shared the 2 cores\./);
  assert.match(md, /\| fp32 \| caption \| 1 \| 20 \| 3500 \| 1000 \| \*\*3\.50x\*\* \| 3850, 1100 \| 3\.50x \| 3 \|/);
  assert.match(md, /Through the server, caption\*\* \(2\.50x at 8 connections\)/);
  assert.match(md, /student server vs in-process, vqa\*\* \(80%\)/);
  assert.doesNotMatch(md, /student server vs in-process, caption/); // 95%: met
});

test("GPU section: the card and its numbers, or that no GPU was available and why", () => {
  const none = {
    part: "gpu",
    stamp: { command: "npm run bench:gpu", time: "t", machine: { cpu_model: "Xeon", cores: 2 } },
    available: false,
    reason: "no NVIDIA GPU: nvidia-smi is not installed",
    card: null,
    variants: {},
    skipped: [],
  } as unknown as GpuResult;
  assert.match(gpuSection(none).join("\n"), /\*\*No GPU was available\*\*.*nvidia-smi is not installed/);
  const p = {
    batch: 8,
    teacher_ms_per_image: 4,
    student_ms_per_image: 1,
    teacher_images_s: 250,
    student_images_s: 1000,
    ratio: 4,
  };
  const some = {
    ...none,
    available: true,
    reason: null,
    card: { name: "NVIDIA H100 80GB HBM3", memory_total: "81559 MiB", driver: "550" },
    variants: {
      fp32: {
        load_s: { teacher: 2, student: 1 },
        memory_mib: { loaded: 3000, after: 5000 },
        vision: [p],
        caption: [p],
      },
    },
    skipped: ["fp16: the bundles have no fp16 graphs"],
  } as unknown as GpuResult;
  const md = gpuSection(some).join("\n");
  assert.match(md, /NVIDIA H100 80GB HBM3/);
  assert.match(md, /\| fp32 \| encode \+ 20-token caption \| 8 \| 4\.00 \| 1\.00 \| 250 \| 1000 \| 4\.00x \|/);
  assert.match(md, /Not measured: fp16/);
});

test(
  "npm run bench:gpu without a GPU: exit 2, and gpu.json says why, nothing measured",
  { timeout: 60_000 },
  async () => {
    // an nvidia-smi that fails as it does on a machine whose driver sees no GPU
    const bin = mkdtempSync(path.join(os.tmpdir(), "dlip-no-gpu-"));
    writeFileSync(
      path.join(bin, "nvidia-smi"),
      "#!/bin/sh\necho 'NVIDIA-SMI has failed: no devices were found' >&2\nexit 9\n",
    );
    chmodSync(path.join(bin, "nvidia-smi"), 0o755);
    const out = mkdtempSync(path.join(os.tmpdir(), "dlip-gpu-out-"));
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        ["--import", "tsx", "bench/gpu.ts", "--out", out],
        { cwd: ROOT, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } },
        (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
    assert.equal(code, 2, stderr);
    assert.match(stderr, /no NVIDIA GPU: nvidia-smi exited 9: NVIDIA-SMI has failed/);
    const gpu = JSON.parse(readFileSync(path.join(out, "gpu.json"), "utf8")) as GpuResult;
    assert.deepEqual([gpu.available, gpu.card, gpu.variants], [false, null, {}]);
    assert.match(readFileSync(path.join(out, "results.md"), "utf8"), /\*\*No GPU was available\*\*/);
  },
);

test("bench:gpu's measurement of one variant, run on the CPU provider with the micro bundle as both models", async () => {
  const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 30, b: 30 } } })
    .png()
    .toBuffer();
  const w = { root: "", files: ["a.png"], images: [png], captions: ["a red square"], questions: ["what color?"] };
  const r = await measureVariant({ teacher: MICRO, student: MICRO }, "fp32", [1, 2], 2, w, () => {}, "cpu");
  assert.deepEqual(
    [r.vision.map((p) => p.batch), r.caption.map((p) => p.batch)],
    [
      [1, 2],
      [1, 2],
    ],
  );
  for (const p of [...r.vision, ...r.caption]) {
    assert.ok(p.teacher_ms_per_image > 0 && p.student_ms_per_image > 0, JSON.stringify(p));
    assert.ok(p.ratio > 0 && Number.isFinite(p.ratio));
  }
  assert.ok(r.load_s.teacher >= 0 && r.load_s.student >= 0);
});
