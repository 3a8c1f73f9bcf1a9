// Graphs whose weights live in ONNX external data (what a graph past protobuf's 2 GB limit gets) and float16
// variants load and serve: a micro bundle exported with `--external-data-above 1000` (every graph's weights in
// NAME.onnx.data, checksummed in the manifest) and `--fp16`, served at PRECISION=fp32 and PRECISION=fp16.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import request from "supertest";
import { ROOT, testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";
import { venvTool } from "../helpers/tools.js";

let dir: string;
let bundle: string;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "dlip-large-"));
  bundle = path.join(dir, "micro-ext");
  const args = ["-m", "dlip", "export", "--random-init", "--preset", "micro", "--out", bundle, "--fp16"];
  execFileSync(venvTool("python"), [...args, "--external-data-above", "1000"], {
    cwd: path.join(ROOT, "training"),
    env: { ...process.env, PYTHONPATH: path.join(ROOT, "training") },
    stdio: ["ignore", "ignore", "pipe"],
  });
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the bundle keeps every graph's weights in external data, listed and checksummed", () => {
  const m = JSON.parse(readFileSync(path.join(bundle, "manifest.json"), "utf8"));
  for (const [graph, spec] of Object.entries(m.graphs) as [string, any][]) {
    for (const v of [spec, spec.fp16]) {
      assert.equal(v.external_data, `${v.file}.data`, graph);
      assert.ok(m.files[v.external_data] && existsSync(path.join(bundle, v.external_data)), graph);
    }
  }
});

test("fp32 and fp16 graphs with external data serve captions, VQA and embeddings", async () => {
  const image = (await solid(40, 30, "#d02020")).toString("base64");
  const served: Record<string, unknown> = {};
  for (const precision of ["fp32", "fp16"] as const) {
    const app = await testApp({ modelsDir: dir, precision });
    try {
      const models = await request(app.server).get("/v1/models").expect(200);
      assert.equal(models.body.data[0].precision, precision);
      const cap = await request(app.server)
        .post("/v1/captions")
        .send({ images: [image], max_tokens: 5 })
        .expect(200);
      const vqa = await request(app.server).post("/v1/vqa").send({ image, question: "what color?" }).expect(200);
      const emb = await request(app.server)
        .post("/v1/embeddings")
        .send({ texts: ["a red circle"] })
        .expect(200);
      served[precision] = { caption: cap.body.captions[0].text, answer: vqa.body.answer, emb: emb.body };
    } finally {
      await app.close();
    }
  }
  const [a, b] = [served.fp32, served.fp16] as { caption: string; answer: string; emb: any }[];
  // random micro weights: the fp16 graphs (LayerNorm, Softmax, Erf in float32) give the same greedy tokens here
  assert.equal(b.caption, a.caption);
  assert.equal(b.answer, a.answer);
  const [ea, eb] = [a.emb.text_embeddings[0], b.emb.text_embeddings[0]] as number[][];
  assert.ok(Math.max(...ea.map((x, i) => Math.abs(x - eb[i]))) < 1e-2);
});
