// x-queue-time and x-inference-time (routes/timing.ts): milliseconds with three decimals, as text-embeddings-inference sends them,
// summing what the request's rows waited and ran over its graph calls, the events the histograms observe.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { blockWorker, metricValue, testApp } from "../helpers/app.js";
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

test("a caption alone: its queue and inference headers equal the histograms' sums for it (ms)", async () => {
  const image = (await solid(40, 30)).toString("base64");
  const q0 = await sums("queue_wait_seconds");
  const i0 = await sums("inference_duration_seconds");
  const blocked = blockWorker(app, 150); // the caption's vision row waits behind it
  const res = await request(app.server)
    .post("/v1/captions")
    .send({ images: [image] })
    .expect(200);
  await blocked;
  const queue = Number(res.headers["x-queue-time"]);
  const inference = Number(res.headers["x-inference-time"]);
  assert.match(res.headers["x-queue-time"], /^\d+\.\d{3}$/);
  assert.match(res.headers["x-inference-time"], /^\d+\.\d{3}$/);
  assert.ok(queue >= 50, `queue ${queue} ms: it waited behind a 150 ms job`);
  assert.ok(Math.abs(queue - ((await sums("queue_wait_seconds")) - q0)) <= 1, "queue = the histogram's waits");
  // a decode row's run ends with its own result; the decode job's (the histogram's) with the worker's reply after it
  const runs = (await sums("inference_duration_seconds")) - i0;
  assert.ok(inference <= runs + 1 && inference >= runs - 5, `inference ${inference} ms vs the runs' ${runs} ms`);
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
