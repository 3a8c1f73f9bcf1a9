// Probes, metrics, docs; the main thread stays responsive while inference runs; batching is real.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { holdWorker, metricValue, ROOT, testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

let app: FastifyInstance;
before(async () => {
  app = await testApp();
});
after(() => app.close());

test("GET /healthz and /readyz", async () => {
  assert.deepEqual((await request(app.server).get("/healthz").expect(200)).body, { status: "ok" });
  // a test app never listens, so its collections store is opened only by a collection request (none here)
  assert.deepEqual((await request(app.server).get("/readyz").expect(200)).body, {
    status: "ready",
    collections: { status: "not_opened", store: "pglite" },
  });
});

test("/healthz and /metrics are answered while a long batch holds the inference worker", async () => {
  const hold = await holdWorker(app); // the worker thread is stalled, as by a long onnxruntime run(), until released
  try {
    for (let i = 0; i < 5; i++) {
      await request(app.server).get("/healthz").expect(200);
      await request(app.server).get("/metrics").expect(200);
    }
    // the worker cannot be free before release(): every answer came while it was busy, whatever the machine's speed
    assert.equal(app.inference.scheduler.inFlight, 1, "the long batch was still running");
  } finally {
    hold.release();
    await hold.done;
  }
});

test("batching is real: N concurrent requests take fewer than N inference runs", async () => {
  const img = (await solid(24, 24)).toString("base64");
  const N = 16;
  const runsBefore = await metricValue(app, "dlip_batch_size_rows_count", { graph: "vision" });
  const rowsBefore = await metricValue(app, "dlip_batch_size_rows_sum", { graph: "vision" });
  const res = await Promise.all(
    Array.from({ length: N }, () =>
      request(app.server)
        .post("/v1/captions")
        .send({ images: [img], num_beams: 2 }),
    ),
  );
  assert.ok(res.every((r) => r.status === 200));
  const runs = (await metricValue(app, "dlip_batch_size_rows_count", { graph: "vision" })) - runsBefore;
  const rows = (await metricValue(app, "dlip_batch_size_rows_sum", { graph: "vision" })) - rowsBefore;
  assert.equal(rows, N, "every image ran once");
  assert.ok(runs < N, `${N} requests took ${runs} vision runs`);
  const decoderRuns = await metricValue(app, "dlip_batch_size_rows_count", { graph: "decoder" });
  assert.ok(decoderRuns < N + 2, `captions decoded together too (${decoderRuns} decoder runs so far)`);
});

test("GET /metrics: Prometheus text, one prefix, the documented families", async () => {
  const res = await request(app.server).get("/metrics").expect(200);
  assert.match(res.headers["content-type"], /^text\/plain; version=0\.0\.4/);
  const names = new Set(
    res.text
      .split("\n")
      .filter((l) => l.startsWith("# TYPE"))
      .map((l) => l.split(" ")[2]),
  );
  for (const n of names) assert.ok(n.startsWith("dlip_"), `${n} has the prefix`);
  for (const n of [
    "dlip_http_request_duration_seconds",
    "dlip_queue_wait_seconds",
    "dlip_inference_duration_seconds",
    "dlip_preprocess_duration_seconds",
    "dlip_batch_size_rows",
    "dlip_queue_depth_rows",
    "dlip_inflight_requests",
    "dlip_rejected_requests_total",
    "dlip_generated_tokens_total",
    "dlip_model_info",
    "dlip_worker_restarts_total",
    "dlip_stuck_runs_total",
    "dlip_rerun_rows_total",
    "dlip_process_cpu_seconds_total",
  ]) {
    assert.ok(names.has(n), `${n} is exported`);
  }
  assert.match(res.text, /dlip_model_info\{model="micro",version="1",provider="cpu",precision="fp32"\} 1/);
  assert.match(
    res.text,
    /dlip_http_request_duration_seconds_bucket\{le="0.001",route="\/v1\/captions",status_class="2xx"\}/,
  );
});

/** Prometheus' promtool: on the PATH, else where scripts/get-promtool.sh (run by `npm test`) unpacks it; or null. */
function findPromtool(): string | null {
  for (const cmd of ["promtool", path.join(ROOT, ".cache/promtool/bin/promtool")]) {
    if (spawnSync(cmd, ["--version"], { stdio: "ignore" }).status === 0) return cmd;
  }
  return null;
}

test("the metrics pass `promtool check metrics`", async (t) => {
  const promtool = findPromtool();
  if (!promtool) {
    t.skip("promtool not found: run `bash scripts/get-promtool.sh` (npm test does) or install Debian's prometheus");
    return;
  }
  const text = (await request(app.server).get("/metrics").expect(200)).text;
  const res = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8" });
  assert.equal(res.status, 0, `${promtool} check metrics:\n${res.stdout}${res.stderr}`);
});

test("GET /docs serves Swagger UI and the OpenAPI document lists every route with its statuses", async () => {
  const ui = await request(app.server).get("/docs/").redirects(1);
  assert.equal(ui.status, 200);
  const spec = (await request(app.server).get("/docs/json").expect(200)).body;
  assert.match(spec.openapi, /^3\./);
  for (const p of ["/v1/captions", "/v1/vqa", "/v1/embeddings", "/v1/rank"]) {
    const op = spec.paths[p].post;
    assert.ok(op.requestBody.content["application/json"], `${p} documents its JSON body`);
    for (const status of ["200", "400", "404", "413", "415", "429", "503", "504"])
      assert.ok(op.responses[status], `${p} documents ${status}`);
  }
  for (const p of ["/v1/models", "/healthz", "/readyz", "/metrics"]) assert.ok(spec.paths[p].get, p);
});
