// PRECISION=int8: each bundle serves its dynamic-quantised graphs (graphs.G.int8 in the manifest) where it has them
// for every graph, else its fp32 graphs with a warning. The int8 bundle is the micro preset exported with --int8 by
// the real exporter into a temporary folder (with its int8 graphs the fixture would pass its 1 MB limit).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import * as ort from "onnxruntime-node";
import { buildApp } from "../../src/app.js";
import type { Precision } from "../../src/config.js";
import { preprocessImage } from "../../src/preprocess/image.js";
import { padRows } from "../../src/preprocess/text.js";
import { workerModel, type ServedModel } from "../../src/services/models.js";
import { FIXTURES, ROOT, testConfig } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

const PYTHON = path.join(ROOT, "training/.venv/bin/python");
const tmp = mkdtempSync(path.join(os.tmpdir(), "dlip-precision-"));
const INT8_MODELS = path.join(tmp, "int8"); // MODELS_DIR holding one bundle, micro, with int8 graphs
const BUNDLE = path.join(INT8_MODELS, "micro");

interface Served {
  app: FastifyInstance;
  logs: Record<string, any>[];
}
const open: FastifyInstance[] = [];

/** The app on `modelsDir` at PRECISION `precision`, its JSON log lines collected. */
async function serve(modelsDir: string, precision: Precision): Promise<Served> {
  const logs: Record<string, any>[] = [];
  const stream = { write: (line: string) => void logs.push(JSON.parse(line)) };
  const app = await buildApp(testConfig({ modelsDir, precision, logLevel: "info" }), {
    logger: { level: "info", stream },
  });
  open.push(app);
  return { app, logs };
}

let int8: Served;
let fp32: Served; // the same bundle at PRECISION=fp32

before(async () => {
  if (!existsSync(PYTHON))
    throw new Error(`${PYTHON} is missing: the int8 bundle comes from the Python exporter (scripts/setup-venv.sh)`);
  execFileSync(
    PYTHON,
    [
      "-m",
      "dlip",
      "export",
      "--random-init",
      "--preset",
      "micro",
      "--seed",
      "0",
      "--name",
      "micro",
      "--int8",
      "--out",
      BUNDLE,
    ],
    { cwd: path.join(ROOT, "training"), stdio: ["ignore", "ignore", "pipe"] },
  );
  int8 = await serve(INT8_MODELS, "int8");
  fp32 = await serve(INT8_MODELS, "fp32");
});

after(async () => {
  for (const app of open) await app.close();
  rmSync(tmp, { recursive: true, force: true });
});

const png = () => solid(40, 40, "#3080c0");

/** One graph file of the bundle run directly on onnxruntime, outside the server. */
async function runGraph(file: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(path.join(BUNDLE, file), { intraOpNumThreads: 1 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function normalised(v: Float32Array): number[] {
  const n = Math.hypot(...v) || 1;
  return Array.from(v, (x) => x / n);
}

/** What the vision, text and itm graph files of one precision give for `image` and `text`, run directly. */
async function direct(m: ServedModel, precision: Precision, image: Buffer, text: string) {
  const file = (g: "vision" | "text" | "itm") =>
    precision === "int8" ? m.manifest.graphs[g]!.int8!.file : m.manifest.graphs[g]!.file;
  const S = m.manifest.preprocessing.image_size;
  const pixels = await preprocessImage(image, m.image);
  const vision = await runGraph(file("vision"), { pixel_values: new ort.Tensor("float32", pixels, [1, 3, S, S]) });
  const sp = m.manifest.tokenizer.special_tokens;
  const ids = m.tokenizer.encode(text, m.manifest.tokenizer.max_text_tokens);
  const feeds = (row: number[]) => {
    const { ids: data, mask, length } = padRows([row], sp.pad);
    return {
      input_ids: new ort.Tensor("int64", data, [1, length]),
      attention_mask: new ort.Tensor("int64", mask, [1, length]),
    };
  };
  const textOut = await runGraph(file("text"), feeds(ids));
  const itm = await runGraph(file("itm"), { image_embeds: vision.image_embeds, ...feeds([sp.enc, ...ids.slice(1)]) });
  return {
    image: normalised(vision.image_feat.data as Float32Array),
    text: normalised(textOut.text_feat.data as Float32Array),
    itmMatch: (itm.itm_logits.data as Float32Array)[1],
  };
}

test("PRECISION=int8 on a bundle with int8 graphs: every session loads a .int8.onnx file; int8 in every listing", async () => {
  const { app, logs } = int8;
  const m = app.models.get();
  assert.equal(m.precision, "int8");
  const files = Object.values(workerModel(m).graphs).map((g) => path.basename(g.file));
  assert.deepEqual(
    files.sort(),
    ["cross_kv", "decoder", "itm", "text", "vision", "vqa_encoder"].map((g) => `${g}.int8.onnx`),
  );
  assert.ok(
    Object.values(workerModel(fp32.app.models.get()).graphs).every((g) => !g.file.endsWith(".int8.onnx")),
    "PRECISION=fp32 loads the float graphs of the same bundle",
  );
  const list = (await app.inject({ method: "GET", url: "/v1/models" })).json();
  assert.equal(list.data[0].precision, "int8");
  assert.equal((await app.inject({ method: "GET", url: "/v1/models/micro" })).json().precision, "int8");
  assert.equal((await app.inject({ method: "GET", url: "/models/micro" })).json().precision, "int8");
  const meta = await app.inject({ method: "GET", url: "/v2/models/micro" });
  assert.equal(meta.statusCode, 200, meta.body);
  const tasks = "retrieval,captioning,vqa";
  assert.deepEqual(meta.json().parameters, { precision: "int8", tasks });
  assert.deepEqual((await fp32.app.inject({ method: "GET", url: "/v2/models/micro" })).json().parameters, {
    precision: "fp32",
    tasks,
  });
  const metrics = (await app.inject({ method: "GET", url: "/metrics" })).body;
  assert.match(metrics, /^dlip_model_info\{model="micro",version="1",provider="cpu",precision="int8"\} 1$/m);
  const loaded = logs.filter((l) => l.msg === "model loaded");
  assert.deepEqual(
    loaded.map((l) => [l.model, l.precision, l.provider]),
    [["micro", "int8", "cpu"]],
  );
  assert.equal(logs.filter((l) => l.level >= 40).length, 0, "no warning: the bundle has every int8 graph");
});

test("PRECISION=int8 answers come from the int8 graphs: embeddings and ITM scores are theirs, not the fp32 graphs'", async () => {
  const image = await png();
  const m = int8.app.models.get();
  // the random-init bundle's tokenizer is trained afresh by each export (ties may order differently), so of a few
  // texts the one whose ITM logit quantisation moves most is taken: the comparison must tell the two apart
  let text = "";
  let want = { int8: await direct(m, "int8", image, ""), fp32: await direct(m, "fp32", image, "") };
  for (const t of ["a small red circle", "a large blue square", "two green triangles", "an object"]) {
    const w = { int8: await direct(m, "int8", image, t), fp32: await direct(m, "fp32", image, t) };
    const moved = (x: typeof w) => Math.abs(x.int8.itmMatch - x.fp32.itmMatch);
    if (text === "" || moved(w) > moved(want)) [text, want] = [t, w];
  }
  // quantisation moves these outputs well past the 1e-5 tolerance below
  assert.ok(maxAbsDiff(want.int8.image, want.fp32.image) > 1e-4, "int8 and fp32 image features differ");
  assert.ok(maxAbsDiff(want.int8.text, want.fp32.text) > 1e-4, "int8 and fp32 text features differ");
  assert.ok(Math.abs(want.int8.itmMatch - want.fp32.itmMatch) > 1e-4, "int8 and fp32 ITM logits differ");
  for (const [precision, { app }] of [
    ["int8", int8],
    ["fp32", fp32],
  ] as const) {
    const emb = await app.inject({
      method: "POST",
      url: "/v1/embeddings",
      payload: { texts: [text], images: [image.toString("base64")] },
    });
    assert.equal(emb.statusCode, 200, emb.body);
    assert.ok(maxAbsDiff(emb.json().image_embeddings[0], want[precision].image) < 1e-5, `${precision}: image`);
    assert.ok(maxAbsDiff(emb.json().text_embeddings[0], want[precision].text) < 1e-5, `${precision}: text`);
    // one candidate: dynamic quantisation scales a MatMul's input by the whole batch's range, so another row in
    // the ITM batch (or padding) moves an int8 logit by ~1e-4
    const rank = await app.inject({
      method: "POST",
      url: "/v1/rank",
      payload: { query: { image: image.toString("base64") }, candidates: [text] },
    });
    assert.equal(rank.statusCode, 200, rank.body);
    const [first] = rank.json().results as { index: number; score: number; itc_score: number; itm_score: number }[];
    assert.equal(first.index, 0);
    assert.ok(Math.abs(first.itm_score - want[precision].itmMatch) < 1e-5, `${precision}: ITM match logit`);
    assert.ok(Math.abs(first.score - (first.itm_score + first.itc_score)) < 1e-5, "score = ITM logit + ITC cosine");
  }
});

test("PRECISION=int8: captions and VQA answer 200 with well-formed bodies, decoded by the int8 decoder", async () => {
  const image = (await png()).toString("base64");
  const ask = (app: FastifyInstance) =>
    app.inject({ method: "POST", url: "/v1/vqa", payload: { image, question: "what color is the circle?" } });
  const caps = await int8.app.inject({ method: "POST", url: "/v1/captions", payload: { images: [image, image] } });
  assert.equal(caps.statusCode, 200, caps.body);
  assert.equal(caps.json().model, "micro");
  assert.equal(caps.json().captions.length, 2);
  for (const c of caps.json().captions) {
    assert.equal(typeof c.text, "string");
    assert.ok(Number.isInteger(c.tokens) && c.tokens >= 1 && c.tokens <= 20, JSON.stringify(c));
  }
  const beams = await int8.app.inject({
    method: "POST",
    url: "/v1/captions",
    payload: { images: [image], num_beams: 3 },
  });
  assert.equal(beams.statusCode, 200, beams.body);
  const [a, b] = [await ask(int8.app), await ask(fp32.app)];
  assert.equal(a.statusCode, 200, a.body);
  assert.equal(typeof a.json().answer, "string");
  assert.ok(a.json().score > 0 && a.json().score <= 1, a.body);
  // the answer's probability under the decoder: the int8 decoder (and encoders) give another number than fp32's
  assert.notEqual(a.json().score, b.json().score, "the VQA score of the int8 graphs is not the fp32 graphs'");
});

test("PRECISION=int8 on a bundle without int8 graphs serves its fp32 graphs and logs a warning saying why", async () => {
  const { app, logs } = await serve(FIXTURES, "int8");
  const m = app.models.get();
  assert.equal(m.precision, "fp32");
  assert.ok(Object.values(workerModel(m).graphs).every((g) => !g.file.endsWith(".int8.onnx")));
  assert.equal((await app.inject({ method: "GET", url: "/v1/models" })).json().data[0].precision, "fp32");
  const warning = logs.find((l) => l.level === 40);
  assert.equal(warning?.model, "micro");
  assert.match(
    String(warning?.msg),
    /^PRECISION=int8: bundle 'micro' has an int8 variant of no graph; serving its fp32 graphs \(.*--int8/,
  );
  assert.equal(logs.find((l) => l.msg === "model loaded")?.precision, "fp32");
  const emb = await app.inject({ method: "POST", url: "/v1/embeddings", payload: { texts: ["a red circle"] } });
  assert.equal(emb.statusCode, 200, emb.body);
});

test("PRECISION=int8 on a bundle with int8 graphs for some graphs only: fp32 for all, the missing ones named", async () => {
  const root = path.join(tmp, "partial");
  cpSync(BUNDLE, path.join(root, "micro"), { recursive: true });
  const file = path.join(root, "micro", "manifest.json");
  const manifest = JSON.parse(readFileSync(file, "utf8"));
  delete manifest.graphs.decoder.int8;
  delete manifest.graphs.cross_kv.int8;
  writeFileSync(file, JSON.stringify(manifest));
  const { app, logs } = await serve(root, "int8");
  assert.equal(app.models.get().precision, "fp32");
  assert.match(
    String(logs.find((l) => l.level === 40)?.msg),
    /bundle 'micro' has an int8 variant of not every graph \(none for cross_kv, decoder\); serving its fp32 graphs/,
  );
});

test("an int8 graph file whose bytes differ from the manifest's checksum stops the boot, naming the file", async () => {
  const root = path.join(tmp, "tampered");
  cpSync(BUNDLE, path.join(root, "micro"), { recursive: true });
  const text = path.join(root, "micro", "text.int8.onnx");
  writeFileSync(text, Buffer.concat([readFileSync(text), Buffer.from([0])]));
  for (const precision of ["int8", "fp32"] as const)
    await assert.rejects(serve(root, precision), /text\.int8\.onnx: sha256 [0-9a-f]{64} differs from the manifest's/);
});
