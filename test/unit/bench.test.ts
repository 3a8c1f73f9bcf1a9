// The benchmark's parts that need no model: percentiles, the /metrics reader, FLOPs from profiled node shapes, the
// recorded command, the load generator's failure counts; the targets and tables from made-up results.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { nodeFlops } from "../../bench/flops.js";
import { closedLoop, openLoop } from "../../bench/load.js";
import { histogramDelta, parseProm, total } from "../../bench/prom.js";
import { commandLine } from "../../bench/stamp.js";
import type { LoadResult } from "../../bench/load.js";
import type { Point } from "../../bench/points.js";
import { ceilingTable, continuousTable, halfLoadTable, teacherTable } from "../../bench/report.js";
import type { ServerResult } from "../../bench/serving.js";
import { checkTargets, type TargetCheck } from "../../bench/targets.js";
import { percentiles, quantile } from "../../bench/timing.js";

test("quantile interpolates linearly between sorted values (NumPy's default)", () => {
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  assert.equal(quantile([10], 0.99), 10);
  assert.ok(Number.isNaN(quantile([], 0.5)));
  const p = percentiles([5, 1, 4, 2, 3]);
  assert.deepEqual([p.p50, p.mean, p.max], [3, 3, 5]);
  assert.ok(Math.abs(p.p99 - 4.96) < 1e-9);
});

test("parseProm reads names, labels and values; histogramDelta subtracts two scrapes", () => {
  const before = parseProm(
    [
      "# HELP dlip_batch_size_rows Rows per inference run",
      'dlip_batch_size_rows_sum{model="m",graph="vision"} 10',
      'dlip_batch_size_rows_count{model="m",graph="vision"} 5',
      'dlip_batch_size_rows_count{model="m",graph="text"} 7',
      "dlip_process_cpu_seconds_total 1.5",
    ].join("\n"),
  );
  const after = parseProm(
    [
      'dlip_batch_size_rows_sum{model="m",graph="vision"} 40',
      'dlip_batch_size_rows_count{model="m",graph="vision"} 8',
      'dlip_batch_size_rows_count{model="m",graph="text"} 9',
      "dlip_process_cpu_seconds_total 2.5",
    ].join("\n"),
  );
  assert.deepEqual(histogramDelta(before, after, "dlip_batch_size_rows", { graph: "vision" }), {
    count: 3,
    sum: 30,
    mean: 10,
  });
  assert.equal(total(after, "dlip_batch_size_rows_count", { model: "m" }), 17);
  assert.equal(total(after, "dlip_process_cpu_seconds_total") - total(before, "dlip_process_cpu_seconds_total"), 1);
  assert.ok(Number.isNaN(histogramDelta(before, before, "dlip_batch_size_rows").mean));
});

test("nodeFlops: 2 x multiply-adds of MatMul, Gemm and Conv; other ops cost nothing", () => {
  const node = (op: string, ins: number[][], out: number[], parameterSize?: number) => ({
    cat: "Node",
    name: `${op}_kernel_time`,
    dur: 1,
    args: {
      op_name: op,
      input_type_shape: ins.map((s) => ({ float: s })),
      output_type_shape: [{ float: out }],
      ...(parameterSize === undefined ? {} : { parameter_size: String(parameterSize) }),
    },
  });
  // (2, 17, 32) @ (32, 96): 2 * 17 * 96 outputs, 32 products each
  assert.equal(nodeFlops(node("MatMul", [[2, 17, 32]], [2, 17, 96])), 2 * 2 * 17 * 96 * 32);
  assert.equal(nodeFlops(node("Gemm", [[4, 8]], [4, 3])), 2 * 4 * 3 * 8);
  // 8x8 patches, 3 -> 32 channels, 4x4 output positions
  const conv = 2 * 32 * 16 * 3 * 64;
  assert.equal(nodeFlops(node("Conv", [[1, 3, 32, 32], [32, 3, 8, 8], [32]], [1, 32, 4, 4])), conv);
  assert.equal(nodeFlops(node("Conv", [[1, 3, 32, 32]], [1, 32, 4, 4], 4 * (32 * 3 * 64 + 32))), conv);
  assert.equal(nodeFlops(node("Softmax", [[1, 2, 17, 17]], [1, 2, 17, 17])), 0);
});

test("commandLine records what was typed, quoting what a shell would split", () => {
  const saved = { ...process.env };
  try {
    process.env.npm_lifecycle_event = "bench:models";
    process.env.npm_lifecycle_script = "node --import tsx bench/main.ts --parts models";
    assert.equal(
      commandLine(["--parts", "models", "--quick", "--out", "/tmp/a b"]),
      "npm run bench:models -- --quick --out '/tmp/a b'",
    );
    process.env.npm_lifecycle_event = "bench";
    process.env.npm_lifecycle_script = "node --import tsx bench/main.ts";
    assert.equal(commandLine([]), "npm run bench");
  } finally {
    process.env = saved;
  }
});

test("load results count failures by HTTP status, closed and open loop alike", async () => {
  let n = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const status = n++ % 2 === 0 ? 200 : 429; // every other request is refused
      res.writeHead(status, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const spec = { path: "/x", bodies: ["{}"] };
    const closed = await closedLoop(url, [spec], { connections: 1, amount: 20 });
    assert.equal(closed.ok + closed.failed, 20);
    assert.deepEqual(closed.failed_by_status, { "429": closed.failed });
    assert.ok(closed.failed >= 9 && closed.failed <= 11, `about half refused, got ${closed.failed}`);
    const open = await openLoop(url, spec, 200, 0.2);
    assert.ok(open.failed > 0);
    assert.deepEqual(open.failed_by_status, { "429": open.failed });
  } finally {
    server.close();
  }
});

/** A load point with made-up numbers (the fields the targets and tables read). */
function fakePoint(rps: number, p50: number, p99: number, connections = 64, tokens: number | null = null): Point {
  return {
    connections,
    throughput_rps: rps,
    latency_ms: { p50, p95: (p50 + p99) / 2, p99, mean: p50, max: p99 },
    ok: 100,
    failed: 0,
    failed_by_status: {},
    breakdown: {
      server_ms: p50,
      preprocess_ms: 1,
      graphs: { vision: { batches: 10, mean_batch_rows: 8, queue_wait_ms: 1, inference_ms: 5, busy_share: 0.5 } },
      worker_busy_share: 0.9,
      server_cpu_cores: 1.5,
      cpu_ms_per_request: 4,
      tokens_per_request: tokens,
    },
    client_cpu_cores: 0.1,
  } as unknown as Point;
}

/** A server result with made-up numbers: only what the issue 16 targets and tables read. */
function fakeServer(over: Partial<ServerResult> = {}): ServerResult {
  const half = (p50: number, p99: number) => ({
    rate_rps: 50,
    result: fakePoint(50, p50, p99) as unknown as LoadResult,
    p99_over_p50: p99 / p50,
  });
  const ceil = (server: number, raw: number) => ({
    batches: { vision: 8 },
    ms_per_request: { vision: 1 },
    throughput_rps: raw,
    cpu_ms_per_request: 1,
    server_rps: server,
    ratio: server / raw,
  });
  const inProc = (server: number, raw: number) => ({
    concurrency: 64,
    batch: 8,
    requests: 100,
    throughput_rps: raw,
    cpu_ms_per_request: 3,
    graphs_ms_per_request: 1,
    preprocess_ms_per_request: 2,
    server_rps: server,
    ratio: server / raw,
  });
  return {
    endpoints: {},
    ceiling: { embed_image: ceil(90, 300), caption: ceil(50, 100), vqa: ceil(80, 160) },
    in_process_ceiling: { embed_image: inProc(90, 100), caption: inProc(50, 80), vqa: inProc(80, 90) },
    preprocessing: { concurrency: 8, ms_per_image: 1, cpu_ms_per_image: 1.5 },
    half_load: { embed_image: half(10, 25), caption: half(10, 40), vqa: half(10, 30), rank: half(20, 50) },
    batching: null,
    continuous: {
      concurrency: 64,
      off: fakePoint(100, 300, 500, 64, 9),
      on: fakePoint(140, 250, 450, 64, 9),
      ratio: 1.4,
      p99_ratio: 0.9,
    },
    kv_cache: [],
    teacher: null,
    boot: { ready_s: 1, rss_ready_mb: 100, ready_s_all: [] },
    memory: undefined,
    ...over,
  } as unknown as ServerResult;
}

const byWhere = (ts: TargetCheck[], where: string) => {
  const t = ts.find((x) => x.where === where);
  assert.ok(t, `a target from ${where}: ${ts.map((x) => x.where).join(", ")}`);
  return t;
};

test("issue 16 targets: in-process ceiling >= 85% for image embeddings, captions and VQA", () => {
  const ts = checkTargets(null, fakeServer());
  const e = byWhere(ts, "server.in_process_ceiling.embed_image.ratio");
  assert.deepEqual([e.goal, e.measured, e.met], [">= 85%", "90%", true]);
  const c = byWhere(ts, "server.in_process_ceiling.caption.ratio");
  assert.deepEqual([c.measured, c.met], ["63%", false]);
  assert.equal(byWhere(ts, "server.in_process_ceiling.vqa.ratio").met, true); // 80 / 90 = 89%
  // the graphs-only ceiling is still reported next to it
  assert.equal(byWhere(ts, "server.ceiling.embed_image.ratio").measured, "30%");
  // not run: not measured, never met
  const none = checkTargets(null, fakeServer({ in_process_ceiling: {} }));
  assert.equal(byWhere(none, "server.in_process_ceiling.vqa.ratio").met, null);
  assert.equal(byWhere(none, "server.in_process_ceiling.vqa.ratio").measured, "not measured");
});

test("issue 16 targets: p99 <= 3x p50 at half load on every endpoint the run loaded", () => {
  const ts = checkTargets(null, fakeServer());
  for (const [e, met] of [
    ["embed_image", true],
    ["caption", false],
    ["vqa", true],
    ["rank", true],
  ] as const)
    assert.equal(byWhere(ts, `server.half_load.${e}.p99_over_p50`).met, met, e);
  assert.equal(byWhere(ts, "server.half_load.caption.p99_over_p50").measured, "4.00");
  // a run without half-load points still lists the first benchmark's two, as not measured
  const none = checkTargets(null, fakeServer({ half_load: {} }));
  assert.equal(byWhere(none, "server.half_load.embed_image.p99_over_p50").met, null);
});

test("issue 16 targets: preprocessing CPU per image and continuous batching on / off", () => {
  const ts = checkTargets(null, fakeServer());
  const pre = byWhere(ts, "server.preprocessing.cpu_ms_per_image");
  assert.deepEqual([pre.goal, pre.measured, pre.met], ["<= 2 ms", "1.50 ms", true]);
  const slow = checkTargets(
    null,
    fakeServer({ preprocessing: { concurrency: 8, ms_per_image: 3, cpu_ms_per_image: 5.17 } }),
  );
  assert.equal(byWhere(slow, "server.preprocessing.cpu_ms_per_image").met, false);
  const cb = byWhere(ts, "server.continuous.ratio");
  assert.deepEqual([cb.goal, cb.measured, cb.met], [">= 1.3x", "1.40x", true]);
  const p99 = byWhere(ts, "server.continuous.p99_ratio");
  assert.deepEqual([p99.met, p99.measured], [true, "0.90"]);
  assert.match(p99.target, /64 connections.*\(450 vs 500 ms\)/);
  const worse = fakeServer();
  worse.continuous = { ...worse.continuous!, ratio: 1.2, p99_ratio: 1.1 };
  const w = checkTargets(null, worse);
  assert.equal(byWhere(w, "server.continuous.ratio").met, false);
  assert.equal(byWhere(w, "server.continuous.p99_ratio").met, false);
  const none = checkTargets(null, fakeServer({ continuous: null }));
  assert.equal(byWhere(none, "server.continuous.ratio").met, null);
});

test("issue 16 tables: both ceilings, continuous batching, every half-load endpoint, a random teacher", () => {
  const s = fakeServer();
  const ceil = ceilingTable(s).join("\n");
  assert.match(ceil, /server \/ graphs-only/);
  assert.match(ceil, /server \/ in-process/);
  // embed_image: server 90, graphs-only 300 (30%), in-process 100 (90%)
  assert.match(
    ceil,
    /\| embed_image \| 90\.0 \| \{"vision":8\} \| vision 1\.000 \| 300 \| 30% \| 64, 8 \| 1\.000, 2\.000 \| 100 \| 90% \|/,
  );
  assert.match(ceil, /\*\*In-process\*\*: a measured end-to-end loop/);
  const cb = continuousTable(s).join("\n");
  assert.match(cb, /### Continuous batching vs whole-batch decoding \(captions, 64 connections\)/);
  assert.match(cb, /\| CONTINUOUS_BATCHING=false \| 64 \| 100 \|/);
  assert.match(cb, /\| default \(continuous\) \| 64 \| 140 \|/);
  assert.match(cb, /On \/ off: \*\*1\.40x\*\* throughput, p99 450 vs 500 ms/);
  assert.deepEqual(continuousTable(fakeServer({ continuous: null })), []);
  const half = halfLoadTable(s).join("\n");
  for (const e of ["embed_image", "caption", "vqa", "rank"]) assert.match(half, new RegExp(`\\| ${e} \\|`));

  const tasks = {
    caption: {
      student: [fakePoint(100, 10, 20, 16, 9)],
      teacher: [fakePoint(20, 50, 90, 16, 12)],
      throughput_ratio: 5,
      latency_ratio_c1: 5,
    },
    vqa: {
      student: [fakePoint(100, 10, 20, 16, 1)],
      teacher: [fakePoint(30, 30, 60, 16, 1)],
      throughput_ratio: 3.33,
      latency_ratio_c1: 3,
    },
  };
  const teacher = { command: "node dist/server.js", ready_s: 2, random_init: true, tasks };
  const t = teacherTable(fakeServer({ teacher })).join("\n");
  assert.match(t, /random weights \(speed only\)/);
  assert.match(t, /\| caption \| teacher \(random weights, speed only\) \| 16 \|/);
  assert.match(t, /tokens per request at the last point: student 9\.0, teacher 12\.0/);
  assert.doesNotMatch(teacherTable(fakeServer({ teacher: { ...teacher, random_init: false } })).join("\n"), /random/);
  const ts = checkTargets(null, fakeServer({ teacher }));
  const cap = byWhere(ts, "server.teacher.tasks.caption.throughput_ratio");
  assert.deepEqual([cap.met, cap.measured], [true, "5.00x"]);
  assert.match(cap.target, /teacher: random weights \(speed only\)/);
  assert.equal(byWhere(ts, "server.teacher.tasks.vqa.throughput_ratio").met, false);
});

test("explainMisses: one bullet per missed target family, from the run's numbers; nothing when all are met", async () => {
  const { readFileSync } = await import("node:fs");
  const { explainMisses } = await import("../../bench/why.js");
  const { checkTargets } = await import("../../bench/targets.js");
  const models = JSON.parse(readFileSync("bench/results/models.json", "utf8"));
  const server = JSON.parse(readFileSync("bench/results/server.json", "utf8"));
  const checks = checkTargets(models, server);
  const lines = explainMisses(models, server, checks);
  const missed = checks.filter((c) => c.met === false);
  assert.ok(missed.length > 0, "the committed run has misses to explain");
  assert.match(lines[0], /^### Why the missed targets are missed/);
  const bullets = lines.filter((l) => l.startsWith("- **"));
  assert.ok(bullets.length >= 1 && bullets.every((b) => !b.includes("NaN")), bullets.join("\n"));
  assert.ok(bullets.some((b) => b.includes(`${server.preprocessing.cpu_ms_per_image.toFixed(2)} ms of CPU`)));
  assert.deepEqual(
    explainMisses(
      models,
      server,
      checks.map((c) => ({ ...c, met: true })),
    ),
    [],
  );
});
