// Image tokens (and VQA question states) stay in the worker that ran the vision graph: a caption posts its pixels
// to a worker and gets back its feature and caption, not its tokens; what a worker keeps is released when its
// request aborts or its decode fails, and WORKERS=2 decodes each row where its tokens are.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "../helpers/app.js";
import { imageBytes, loadParity } from "../helpers/parity.js";

const parity = loadParity();
let app: FastifyInstance;
let two: FastifyInstance;
before(async () => {
  app = await testApp();
  two = await testApp({ workers: 2 });
});
after(async () => {
  await app.close();
  await two.close();
});

async function stored(a: FastifyInstance): Promise<number> {
  let n = 0;
  for (let w = 0; w < a.pool.count; w++) n += await a.pool.stored(w);
  return n;
}

const image = () => imageBytes(parity.images[0]).toString("base64");

test("a caption's image tokens do not travel between threads: only its pixels go, its feature and tokens' ids come back", async () => {
  const m = app.models.get(undefined).manifest;
  const S = m.preprocessing.image_size;
  const tokenBytes = m.model.image_tokens * m.model.vision_width * 4;
  const pixelBytes = 3 * S * S * 4;
  const featBytes = m.model.embed_dim * 4;
  const before = { ...app.pool.posted };
  const res = await request(app.server)
    .post("/v1/captions")
    .send({ images: [image()] })
    .expect(200);
  assert.equal(res.body.captions[0].text, parity.images[0].caption_greedy.text);
  const sent = app.pool.posted.toWorkers - before.toWorkers;
  const received = app.pool.posted.fromWorkers - before.fromWorkers;
  assert.equal(sent, pixelBytes, "to the workers: the pixels, nothing else");
  assert.equal(received, featBytes, "from the workers: the ITC feature, no tokens");
  assert.ok(tokenBytes > 0);
  // VQA: neither the image tokens nor the question states come back
  const v0 = { ...app.pool.posted };
  const q = parity.images[0].vqa[0];
  const v = await request(app.server).post("/v1/vqa").send({ image: image(), question: q.question }).expect(200);
  assert.equal(v.body.answer, q.answer);
  assert.equal(app.pool.posted.fromWorkers - v0.fromWorkers, featBytes);
  assert.ok(app.pool.posted.toWorkers - v0.toWorkers < pixelBytes + 1024, "pixels and the question's ids");
  assert.equal(await stored(app), 0, "every kept row was read and dropped");
});

test("kept rows are released when their request aborts or their decode fails", async () => {
  const model = app.models.get(undefined);
  const { inference } = app;
  const S = model.manifest.preprocessing.image_size;
  const px = () => new Float32Array(3 * S * S);
  const row = { numBeams: 1, maxTokens: 3, minTokens: 1 };
  const { captionInputs } = await import("../../src/routes/generation.js");
  // aborted before the decode
  const kept = await inference.keptImages(model, [px(), px()], 1);
  assert.equal(await stored(app), 2);
  const gone = new AbortController();
  gone.abort(new Error("client left"));
  await assert.rejects(inference.generate(model, captionInputs(model, kept, row), gone.signal), /client left/);
  assert.equal(await stored(app), 0, "released on abort");
  // aborted while the vision batch runs: its outputs are discarded and released
  const mid = new AbortController();
  const p = inference.keptImages(model, [px()], 1, mid.signal);
  mid.abort(new Error("deadline"));
  await assert.rejects(p, /deadline/);
  await new Promise((r) => setTimeout(r, 200)); // the batch ends, its row is discarded
  assert.equal(await stored(app), 0, "released after an abort mid-batch");
  // a decode that cannot read its row fails cleanly and keeps nothing
  const [a, b] = await inference.keptImages(model, [px(), px()], 1);
  inference.release([a.embeds]);
  await assert.rejects(inference.generate(model, captionInputs(model, [a, b], row)), /is gone/);
  assert.equal(await stored(app), 0, "released on error");
  // many requests whose deadline passes at every stage leave nothing behind
  const short = await testApp({ requestTimeoutMs: 15 });
  try {
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        request(short.server)
          .post(i % 2 ? "/v1/vqa" : "/v1/captions")
          .send(i % 2 ? { image: image(), question: "what is it?" } : { images: [image()], num_beams: 3 }),
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await stored(short), 0, "nothing kept after deadlines");
  } finally {
    await short.close();
  }
});

test("WORKERS=2: rows decode where their tokens are, answers unchanged, nothing kept after", async () => {
  const reqs = parity.images.flatMap((im) => {
    const b64 = imageBytes(im).toString("base64");
    return [
      ["/v1/captions", { images: [b64] }, im.caption_greedy.text],
      ["/v1/vqa", { image: b64, question: im.vqa[0].question }, im.vqa[0].answer],
    ] as const;
  });
  const got = await Promise.all(
    [...reqs, ...reqs].map(async ([url, body]) => {
      const r = await request(two.server).post(url).send(body).expect(200);
      return url === "/v1/vqa" ? r.body.answer : r.body.captions[0].text;
    }),
  );
  assert.deepEqual(
    got,
    [...reqs, ...reqs].map((r) => r[2]),
  );
  assert.equal(await stored(two), 0);
});
