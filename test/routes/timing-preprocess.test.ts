// x-preprocess-time: present and numeric on every task route that preprocesses, and equal to what the request added
// to dlip_preprocess_duration_seconds (its histogram observations, image and text).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

let app: FastifyInstance;
let png: string;
before(async () => {
  app = await testApp();
  png = (await solid(40, 30)).toString("base64");
});
after(() => app.close());

async function preprocessSumS(): Promise<number> {
  const m = await app.metrics.registry.getSingleMetric("dlip_preprocess_duration_seconds")!.get();
  return m.values
    .filter((v) => (v as { metricName?: string }).metricName?.endsWith("_sum"))
    .reduce((s, v) => s + v.value, 0);
}

const routes: [string, () => object][] = [
  ["/v1/embeddings", () => ({ images: [png, png], texts: ["a red circle"] })],
  ["/v1/captions", () => ({ images: [png] })],
  ["/v1/vqa", () => ({ image: png, question: "what color is the square?" })],
  ["/v1/rank", () => ({ query: { text: "a red square" }, candidates: [png] })],
];

test("x-preprocess-time: milliseconds, equal to the request's preprocessing histogram observations", async () => {
  for (const [url, body] of routes) {
    const before = await preprocessSumS();
    const res = await request(app.server).post(url).send(body()).expect(200);
    const delta = (await preprocessSumS()) - before;
    const header = res.headers["x-preprocess-time"];
    assert.match(header ?? "", /^\d+\.\d{3}$/, `${url}: ${header}`);
    assert.ok(Number(header) > 0, url);
    assert.ok(
      Math.abs(Number(header) - delta * 1000) < 0.001,
      `${url}: header ${header} ms, histogram +${delta * 1000} ms`,
    );
  }
});

test("routes that preprocess nothing send no timing header", async () => {
  const res = await request(app.server).get("/v1/models").expect(200);
  assert.equal(res.headers["x-preprocess-time"], undefined);
});
