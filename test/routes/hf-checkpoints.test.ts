// Hugging Face BLIP checkpoints served as they are (issue 22, part 1): tiny random-weight checkpoints of each HF BLIP
// class, saved by transformers with their BlipProcessor, are exported with `python -m dlip export HF_DIR` and served;
// what the server answers equals what transformers answers itself (scripts/hf_references.py: greedy captions and
// answers from `generate`, ITC cosines and ITM match logits from BlipForImageTextRetrieval, each from the processor's
// own preprocessing of the same PNG files). Each bundle serves its checkpoint's task only and refuses the others
// with a 400 naming what it serves (the refusal itself: src/routes/task.ts, test/routes/unserved-tasks.test.ts).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { ROOT, testApp } from "../helpers/app.js";
import { venvTool } from "../helpers/tools.js";

// ITC cosines and ITM logits: float32 onnxruntime vs PyTorch, and the server's PIL-compatible resize vs PIL's
const SCORE_TOL = 2e-3;

interface References {
  images: string[];
  questions: string[];
  texts: string[];
  captions: string[]; // per image
  answers: string[][]; // per image, per question
  itc: number[][]; // per text, per image
  itm: number[][];
}

let app: FastifyInstance;
let dir: string;
let refs: References;
let images: string[]; // base64 PNGs

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "dlip-hf-"));
  const python = venvTool("python");
  const env = { ...process.env, PYTHONPATH: path.join(ROOT, "training") };
  execFileSync(python, [path.join(ROOT, "scripts/hf_references.py"), dir], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  for (const task of ["retrieval", "captioning", "vqa"]) {
    const args = ["-m", "dlip", "export", path.join(dir, "hf", task), "--out", path.join(dir, "models", `hf-${task}`)];
    execFileSync(python, args, { cwd: path.join(ROOT, "training"), env, stdio: ["ignore", "ignore", "pipe"] });
  }
  refs = JSON.parse(readFileSync(path.join(dir, "references.json"), "utf8"));
  images = refs.images.map((f) => readFileSync(path.join(dir, "images", f)).toString("base64"));
  app = await testApp({ modelsDir: path.join(dir, "models"), defaultModel: "hf-captioning" });
});
after(async () => {
  await app?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const post = (url: string, body: object) => request(app.server).post(url).send(body);

test("each exported checkpoint lists its class's task only", async () => {
  const list = await request(app.server).get("/v1/models").expect(200);
  const tasks = Object.fromEntries(list.body.data.map((m: { id: string; tasks: string[] }) => [m.id, m.tasks]));
  assert.deepEqual(tasks, { "hf-captioning": ["captioning"], "hf-retrieval": ["retrieval"], "hf-vqa": ["vqa"] });
});

test("greedy captions equal transformers' generate", async () => {
  const res = await post("/v1/captions", { images, model: "hf-captioning" }).expect(200);
  assert.deepEqual(
    res.body.captions.map((c: { text: string }) => c.text),
    refs.captions,
  );
});

test("greedy VQA answers equal transformers' generate", async () => {
  for (const [i, image] of images.entries()) {
    for (const [q, question] of refs.questions.entries()) {
      const res = await post("/v1/vqa", { image, question, model: "hf-vqa" }).expect(200);
      assert.equal(res.body.answer, refs.answers[i][q], `image ${i}, question ${q}`);
    }
  }
});

test("ITC cosines and ITM match logits equal transformers' within tolerance", async () => {
  for (const [t, text] of refs.texts.entries()) {
    const res = await post("/v1/rank", { query: { text }, candidates: images, model: "hf-retrieval" }).expect(200);
    for (const r of res.body.results as { index: number; itc_score: number; itm_score: number }[]) {
      const itc = refs.itc[t][r.index];
      const itm = refs.itm[t][r.index];
      assert.ok(Math.abs(r.itc_score - itc) <= SCORE_TOL, `itc text ${t} image ${r.index}: ${r.itc_score} vs ${itc}`);
      assert.ok(Math.abs(r.itm_score - itm) <= SCORE_TOL, `itm text ${t} image ${r.index}: ${r.itm_score} vs ${itm}`);
    }
    assert.equal(res.body.results.length, images.length);
  }
});

test("each bundle refuses the tasks its checkpoint lacks, naming the task it serves", async () => {
  const refused = (res: request.Response, serves: string) => {
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body.error.code, "unsupported_task", res.text);
    assert.match(res.body.error.message, new RegExp(`; it serves ${serves}$`), res.text);
  };
  const [image] = images;
  refused(await post("/v1/captions", { images: [image], model: "hf-vqa" }), "vqa");
  refused(await post("/v1/captions", { images: [image], model: "hf-retrieval" }), "retrieval");
  refused(await post("/v1/vqa", { image, question: "what?", model: "hf-captioning" }), "captioning");
  refused(await post("/v1/vqa", { image, question: "what?", model: "hf-retrieval" }), "retrieval");
  refused(await post("/v1/embeddings", { texts: ["a dog"], model: "hf-captioning" }), "captioning");
  refused(await post("/v1/rank", { query: { text: "a dog" }, candidates: [image], model: "hf-vqa" }), "vqa");
});
