// x-queue-time and x-inference-time (routes/timing.ts): milliseconds with three decimals, as text-embeddings-inference sends them,
// summing what the request's rows waited and ran over its graph calls, the events the histograms observe.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { holdWorker, metricValue, testApp, until } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

let app: FastifyInstance;
before(async () => {
  app = await testApp({ maxBatchDelayMs: 0 });
});
after(() => app.close());

const GRAPHS = ["vision", "text", "itm", "vqa_encoder", "decoder"];
async function sums(name: string): Promise<number> {
  let s = 0;
  for (const graph of GRAPHS) s += await metricValue(app, `dlip_${name}_sum`, { model: "micro", graph });
  return 1000 * s;
}

// Each number is checked against the same request's events, which hold on a busy machine as on an idle one: the
// queue header is the histogram's waits for it; its inference header is its vision run (the histogram's observation)
// plus its decode row's part of the decode run (from the decode's start to its row's result, within the run).
test("a caption alone: its queue and inference headers equal the histograms' observations for it (ms)", async () => {
  const image = (await solid(40, 30)).toString("base64");
  const q0 = await sums("queue_wait_seconds");
  const v0 =
    1000 * (await metricValue(app, "dlip_inference_duration_seconds_sum", { model: "micro", graph: "vision" }));
  const d0 =
    1000 * (await metricValue(app, "dlip_inference_duration_seconds_sum", { model: "micro", graph: "decoder" }));
  const hold = await holdWorker(app); // the caption's vision row waits behind it until released
  let answered = false;
  const pending = request(app.server)
    .post("/v1/captions")
    .send({ images: [image] })
    .then((r) => ((answered = true), r));
  await until(() => app.inference.scheduler.queued > 0 || answered, "the caption's row queued");
  const seen = performance.now(); // its row was queued by now
  await new Promise((r) => setTimeout(r, 20));
  const released = performance.now(); // the worker is free only after this
  hold.release();
  const res = await pending;
  await hold.done;
  // its decode row was answered at its last step; the decode job (the histogram's run) ends with the worker's reply
  await until(() => app.inference.scheduler.inFlight === 0, "the decode job ended");
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers["x-queue-time"], /^\d+\.\d{3}$/);
  assert.match(res.headers["x-inference-time"], /^\d+\.\d{3}$/);
  const queue = Number(res.headers["x-queue-time"]);
  const inference = Number(res.headers["x-inference-time"]);
  assert.ok(queue + 0.001 >= released - seen, `queue ${queue} ms: it waited from ${seen} (or before) to ${released}`);
  const waits = (await sums("queue_wait_seconds")) - q0;
  assert.ok(Math.abs(queue - waits) <= 0.002, `queue ${queue} ms = the histogram's waits ${waits} ms`);
  const vision =
    1000 * (await metricValue(app, "dlip_inference_duration_seconds_sum", { model: "micro", graph: "vision" })) - v0;
  const decode =
    1000 * (await metricValue(app, "dlip_inference_duration_seconds_sum", { model: "micro", graph: "decoder" })) - d0;
  assert.ok(
    inference > vision - 0.002 && inference <= vision + decode + 0.002,
    `inference ${inference} ms: the vision run ${vision} ms plus part of the decode run ${decode} ms`,
  );
});

test("embeddings, VQA and rank send both headers; routes without inference send none", async () => {
  const image = (await solid(20, 20)).toString("base64");
  const cases = [
    ["/v1/embeddings", { texts: ["a red square"] }],
    ["/v1/vqa", { image, question: "what colour?" }],
    ["/v1/rank", { query: { text: "a red square" }, candidates: [image] }],
  ] as const;
  for (const [url, body] of cases) {
    const res = await request(app.server).post(url).send(body).expect(200);
    assert.match(res.headers["x-queue-time"] ?? "", /^\d+\.\d{3}$/, url);
    assert.match(res.headers["x-inference-time"] ?? "", /^\d+\.\d{3}$/, url);
  }
  const health = await request(app.server).get("/healthz");
  assert.equal(health.headers["x-queue-time"], undefined);
});
