// Parity with the Python side (test/parity/expected.json, written by scripts/make-parity-fixtures.sh from
// dlip.infer.ort_backend.OrtBackend on the micro bundle): the server's sharp preprocessing, tokenisation, graphs and
// decoding give the embeddings, ITM logits, captions and answers Python gives for the same image files.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "./helpers/app.js";
import { cosine, imageBytes, loadParity } from "./helpers/parity.js";

const parity = loadParity();
let app: FastifyInstance;
before(async () => {
  app = await testApp();
});
after(() => app.close());

test("image embeddings from sharp preprocessing vs Python's: cosine >= 0.995 for every file", async () => {
  const res = await request(app.server)
    .post("/v1/embeddings")
    .send({ images: parity.images.map((im) => imageBytes(im).toString("base64")) })
    .expect(200);
  parity.images.forEach((im, i) => {
    const c = cosine(res.body.image_embeddings[i], im.image_feat);
    assert.ok(c >= 0.995, `${im.file}: cosine ${c}`);
  });
});

// Python's feats are of the texts after the evaluation's pre_caption (lowercase; '!' '.' ':' ... become spaces): the
// server must clean the raw texts the same way. Uncleaned, the micro model moves by ~7e-4 (cosine still 0.999998),
// the Shapes student by up to 0.08 per component.
test("text embeddings equal Python's (raw texts, cleaned as the evaluation cleans them)", async () => {
  const res = await request(app.server).post("/v1/embeddings").send({ texts: parity.text_feats.texts }).expect(200);
  parity.text_feats.feats.forEach((f, i) => {
    const got: number[] = res.body.text_embeddings[i];
    const diff = Math.max(...f.map((x, j) => Math.abs(x - got[j])));
    assert.ok(diff < 1e-5, `text ${i} (${JSON.stringify(parity.text_feats.texts[i])}): max abs diff ${diff}`);
  });
});

test("captions (greedy and 3 beams) equal the Python bundle evaluation's", async () => {
  for (const im of parity.images) {
    const bytes = imageBytes(im).toString("base64");
    const greedy = await request(app.server)
      .post("/v1/captions")
      .send({ images: [bytes] })
      .expect(200);
    assert.equal(greedy.body.captions[0].text, im.caption_greedy.text, `${im.file} greedy`);
    assert.equal(greedy.body.captions[0].tokens, im.caption_greedy.ids.length);
    const beam = await request(app.server)
      .post("/v1/captions")
      .send({ images: [bytes], num_beams: 3 })
      .expect(200);
    assert.equal(beam.body.captions[0].text, im.caption_beam3.text, `${im.file} beam3`);
  }
});

test("VQA answers equal Python's", async () => {
  for (const im of parity.images.slice(0, 4)) {
    for (const q of im.vqa) {
      const res = await request(app.server)
        .post("/v1/vqa")
        .send({ image: imageBytes(im).toString("base64"), question: q.question })
        .expect(200);
      assert.equal(res.body.answer, q.answer, `${im.file}: ${q.question}`);
    }
  }
});

test("ITM match logits in /v1/rank equal Python's", async () => {
  for (const im of parity.images.slice(0, 3)) {
    const res = await request(app.server)
      .post("/v1/rank")
      .send({
        query: { image: imageBytes(im).toString("base64") },
        candidates: im.itm_texts,
        top_k: im.itm_texts.length,
      })
      .expect(200);
    for (const r of res.body.results) {
      assert.ok(
        Math.abs(r.itm_score - im.itm_match_logits[r.index]) < 1e-3,
        `${im.file} candidate ${r.index}: ${r.itm_score} vs ${im.itm_match_logits[r.index]}`,
      );
    }
  }
});
