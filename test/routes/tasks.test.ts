// The task endpoints on the micro fixture bundle: shapes of the answers, JSON and multipart, input order.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

let app: FastifyInstance;
let red: Buffer;
let blue: Buffer;
before(async () => {
  app = await testApp();
  red = await solid(40, 30, "#d02020");
  blue = await solid(30, 40, "#2020d0", "jpeg");
});
after(() => app.close());

const b64 = (b: Buffer) => b.toString("base64");
const dataUri = (b: Buffer, type = "image/png") => `data:${type};base64,${b64(b)}`;

test("POST /v1/captions (JSON): one caption per image, in input order, with token counts", async () => {
  const res = await request(app.server)
    .post("/v1/captions")
    .send({ images: [b64(red), dataUri(blue, "image/jpeg"), b64(red)] })
    .expect(200);
  assert.equal(res.body.model, "micro");
  assert.equal(res.body.captions.length, 3);
  for (const c of res.body.captions) {
    assert.equal(typeof c.text, "string");
    assert.ok(Number.isInteger(c.tokens) && c.tokens >= 1 && c.tokens <= 20);
  }
  assert.deepEqual(res.body.captions[0], res.body.captions[2], "same image, same caption");
  assert.match(res.headers["x-request-id"], /.+/);
});

test("POST /v1/captions: max_tokens and num_beams; multipart image parts", async () => {
  const short = await request(app.server)
    .post("/v1/captions")
    .send({ images: [b64(red)], max_tokens: 3, num_beams: 3 })
    .expect(200);
  assert.ok(short.body.captions[0].tokens <= 3);
  const form = await request(app.server)
    .post("/v1/captions")
    .attach("image", red, "red.png")
    .attach("image", blue, "blue.jpg")
    .field("max_tokens", "5")
    .expect(200);
  assert.equal(form.body.captions.length, 2);
  const json = await request(app.server)
    .post("/v1/captions")
    .send({ images: [b64(red), b64(blue)], max_tokens: 5 })
    .expect(200);
  assert.deepEqual(form.body.captions, json.body.captions, "multipart and JSON agree");
});

test("POST /v1/vqa (JSON and multipart): an answer and its probability", async () => {
  const res = await request(app.server)
    .post("/v1/vqa")
    .send({ image: b64(red), question: "what color is the circle?" })
    .expect(200);
  assert.equal(res.body.model, "micro");
  assert.equal(typeof res.body.answer, "string");
  assert.ok(res.body.score >= 0 && res.body.score <= 1);
  const form = await request(app.server)
    .post("/v1/vqa")
    .attach("image", red, "r.png")
    .field("question", "what color is the circle?")
    .expect(200);
  assert.deepEqual(form.body, res.body);
});

test("POST /v1/embeddings: L2-normalised vectors of the model's dim, texts and images", async () => {
  const res = await request(app.server)
    .post("/v1/embeddings")
    .send({ texts: ["a red circle", "a blue square"], images: [b64(red)] })
    .expect(200);
  assert.equal(res.body.dim, 32);
  assert.equal(res.body.text_embeddings.length, 2);
  assert.equal(res.body.image_embeddings.length, 1);
  for (const v of [...res.body.text_embeddings, ...res.body.image_embeddings]) {
    assert.equal(v.length, 32);
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5);
  }
  const onlyText = await request(app.server)
    .post("/v1/embeddings")
    .send({ texts: ["a red circle"] })
    .expect(200);
  assert.deepEqual(onlyText.body.image_embeddings, []);
  onlyText.body.text_embeddings[0].forEach((x: number, i: number) =>
    assert.ok(Math.abs(x - res.body.text_embeddings[0][i]) < 1e-5, "batching does not change results"),
  );
  const form = await request(app.server)
    .post("/v1/embeddings")
    .field("text", "a red circle")
    .attach("image", red, "r.png")
    .expect(200);
  assert.equal(form.body.text_embeddings.length, 1);
  assert.equal(form.body.image_embeddings.length, 1);
});

test("POST /v1/rank: text query over images and image query over texts, best first, itm and none", async () => {
  const images = [b64(red), b64(blue), b64(red)];
  const res = await request(app.server)
    .post("/v1/rank")
    .send({ query: { text: "a red circle" }, candidates: images, top_k: 2 })
    .expect(200);
  assert.equal(res.body.results.length, 2);
  for (const r of res.body.results) {
    assert.ok(Math.abs(r.score - (r.itc_score + r.itm_score)) < 1e-6);
  }
  assert.ok(res.body.results[0].score >= res.body.results[1].score);
  const none = await request(app.server)
    .post("/v1/rank")
    .send({ query: { text: "a red circle" }, candidates: images, rerank: "none" })
    .expect(200);
  assert.equal(none.body.results.length, 3, "top_k defaults to 10, capped at the candidates");
  assert.ok(
    none.body.results.every(
      (r: { itm_score: null; score: number; itc_score: number }) => r.itm_score === null && r.score === r.itc_score,
    ),
  );
  const texts = ["a red circle", "a blue square", "two green triangles"];
  const inv = await request(app.server)
    .post("/v1/rank")
    .send({ query: { image: b64(red) }, candidates: texts })
    .expect(200);
  assert.deepEqual(inv.body.results.map((r: { index: number }) => r.index).sort(), [0, 1, 2]);
  const formText = await request(app.server)
    .post("/v1/rank")
    .field("query", "a red circle")
    .attach("image", red, "a.png")
    .attach("image", blue, "b.jpg")
    .expect(200);
  assert.equal(formText.body.results.length, 2);
  const formImage = await request(app.server)
    .post("/v1/rank")
    .attach("query_image", red, "q.png")
    .field("text", texts[0])
    .field("text", texts[1])
    .field("rerank", "none")
    .expect(200);
  assert.equal(formImage.body.results.length, 2);
});

test("the model field picks a served model; GET /v1/models lists them (OpenAI's list) with provider, precision and metrics", async () => {
  await request(app.server)
    .post("/v1/embeddings")
    .send({ texts: ["x"], model: "micro" })
    .expect(200);
  const res = await request(app.server).get("/v1/models").expect(200);
  assert.equal(res.body.default, "micro");
  assert.equal(res.body.object, "list");
  assert.equal(res.body.data.length, 1);
  const m = res.body.data[0];
  assert.deepEqual([m.id, m.object, m.owned_by], ["micro", "model", "dlip-serve"]);
  assert.equal(m.created, Math.floor(Date.parse(app.models.get().manifest.created) / 1000), "manifest's, in seconds");
  assert.deepEqual([m.name, m.version, m.provider, m.precision], ["micro", "1", "cpu", "fp32"]);
  assert.deepEqual(m.tasks, ["retrieval", "captioning", "vqa"]);
  assert.deepEqual(m.metrics, {});
});
