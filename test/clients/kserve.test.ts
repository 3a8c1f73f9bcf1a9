// The KServe v2 surface driven by the official client, tritonclient[http] (pinned in training/requirements.txt),
// against the server listening on 127.0.0.1 with the micro bundle: health, metadata, inference with JSON tensors
// and with binary tensors, each output alone, and refusals as the client's InferenceServerException. Every result
// must equal the /v1 routes' answer for the same inputs.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { ROOT, testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";
import { venvTool } from "../helpers/tools.js";

const TEXTS = ["a red square", "a blue thing on a table"];
const QUESTIONS = ["what color is it?", "is there a table?"];
const EMBED_TOL = 1e-6;

let app: FastifyInstance;
let report: any; // the client script's JSON (shapes checked by the tests below)
let images: Buffer[];

before(async () => {
  app = await testApp();
  await app.listen({ host: "127.0.0.1", port: 0 });
  images = [await solid(40, 30, "#d02020"), await solid(30, 40, "#2020d0", "jpeg")];
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-kserve-"));
  try {
    const files = images.map((b, i) => {
      const f = path.join(dir, `im${i}`);
      writeFileSync(f, b);
      return f;
    });
    const { port } = app.server.address() as AddressInfo;
    const script = path.join(ROOT, "test/clients/kserve_client.py");
    const args = [script, `127.0.0.1:${port}`, "micro", ...files, "--", ...TEXTS, "--", ...QUESTIONS];
    // async: the server answers on this process's event loop while the client runs
    const child = spawn(venvTool("python"), args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, `the tritonclient script failed (is tritonclient[http] in training/.venv?):\n${err}`);
    report = JSON.parse(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
after(() => app?.close());

const b64 = (b: Buffer) => b.toString("base64");

async function v1() {
  const s = app.server;
  const emb = await request(s)
    .post("/v1/embeddings")
    .send({ texts: TEXTS, images: images.map(b64) })
    .expect(200);
  const caps = await request(s)
    .post("/v1/captions")
    .send({ images: images.map(b64) })
    .expect(200);
  const answers = await Promise.all(
    images.map((im, i) =>
      request(s)
        .post("/v1/vqa")
        .send({ image: b64(im), question: QUESTIONS[i] })
        .expect(200),
    ),
  );
  const itm = await Promise.all(
    images.map((im, i) =>
      request(s)
        .post("/v1/rank")
        .send({ query: { image: b64(im) }, candidates: [TEXTS[i]] })
        .expect(200),
    ),
  );
  return {
    caption: caps.body.captions.map((c: { text: string }) => c.text),
    answer: answers.map((r) => r.body.answer),
    image_embedding: emb.body.image_embeddings as number[][],
    text_embedding: emb.body.text_embeddings as number[][],
    itm_score: itm.map((r) => r.body.results[0].itm_score as number),
  };
}

function close(actual: number[], expected: number[], tol: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((x, i) => assert.ok(Math.abs(x - expected[i]) <= tol, `${what}[${i}]: ${x} vs ${expected[i]}`));
}

function sameAsV1(outputs: any, want: Awaited<ReturnType<typeof v1>>, how: string) {
  assert.deepEqual(outputs.caption, want.caption, `${how}: captions as /v1/captions`);
  assert.deepEqual(outputs.answer, want.answer, `${how}: answers as /v1/vqa`);
  const D = app.models.get().manifest.model.embed_dim;
  for (const k of ["image_embedding", "text_embedding"] as const) {
    assert.deepEqual(outputs[k].shape, [want[k].length, D], `${how}: ${k} shape [N, D]`);
    assert.equal(outputs[k].dtype, "float32");
    close(outputs[k].data, want[k].flat(), EMBED_TOL, `${how}: ${k} as /v1/embeddings`);
  }
  assert.deepEqual(outputs.itm_score.shape, [images.length]);
  close(outputs.itm_score.data, want.itm_score, 1e-5, `${how}: itm_score as /v1/rank's itm_score`);
}

test("tritonclient: server live and ready, model ready (also at its version), server metadata", () => {
  assert.equal(report.live, true);
  assert.equal(report.ready, true);
  assert.equal(report.model_ready, true);
  assert.equal(report.model_ready_version, true);
  assert.deepEqual(report.server_metadata, {
    name: "dlip-serve",
    version: "0.1.0",
    extensions: ["binary_tensor_data"],
  });
});

test("tritonclient: model metadata lists exactly the inputs and outputs, D = the manifest's embed_dim", () => {
  const D = app.models.get().manifest.model.embed_dim;
  assert.deepEqual(report.model_metadata, {
    name: "micro",
    versions: ["1"],
    platform: "dlip_onnx",
    inputs: ["image", "text", "question"].map((name) => ({ name, datatype: "BYTES", shape: [-1] })),
    outputs: [
      { name: "caption", datatype: "BYTES", shape: [-1] },
      { name: "answer", datatype: "BYTES", shape: [-1] },
      { name: "image_embedding", datatype: "FP32", shape: [-1, D] },
      { name: "text_embedding", datatype: "FP32", shape: [-1, D] },
      { name: "itm_score", datatype: "FP32", shape: [-1] },
    ],
    parameters: { precision: "fp32", tasks: "retrieval,captioning,vqa" },
  });
});

test("tritonclient: infer with JSON tensors (base64 images) equals the /v1 routes, id echoed", async () => {
  sameAsV1(report.json, await v1(), "JSON");
  assert.equal(report.json_id, "json-1");
});

test("tritonclient: infer with binary tensors and binary outputs equals the /v1 routes", async () => {
  sameAsV1(report.binary, await v1(), "binary");
  const res = report.binary_response;
  assert.equal(res.id, "bin-1");
  assert.equal(res.model_name, "micro");
  assert.equal(res.model_version, "1");
  for (const o of res.outputs) assert.ok(o.parameters.binary_data_size > 0, `${o.name} came as binary data`);
});

test("tritonclient: each output alone, from only the inputs it needs", async () => {
  sameAsV1(report.each, await v1(), "one output");
});

test("tritonclient: refusals raise InferenceServerException with the server's message", () => {
  const { errors } = report;
  assert.equal(errors.unknown_model.status, "404");
  assert.equal(errors.unknown_model.message, "model 'nope' is not served (served: micro)");
  assert.equal(errors.no_outputs.status, "400");
  assert.match(errors.no_outputs.message, /name the outputs to compute in 'outputs' \(outputs: caption, answer, /);
  assert.equal(errors.model_ready_unknown, false);
  assert.equal(errors.metadata_unknown.status, "404");
});
