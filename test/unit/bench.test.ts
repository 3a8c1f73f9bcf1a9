// The benchmark's parts that need no model: percentiles, the /metrics reader, FLOPs from profiled node shapes, the
// recorded command, the load generator's failure counts.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { nodeFlops } from "../../bench/flops.js";
import { closedLoop, openLoop } from "../../bench/load.js";
import { histogramDelta, parseProm, total } from "../../bench/prom.js";
import { commandLine } from "../../bench/stamp.js";
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
