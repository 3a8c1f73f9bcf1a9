// Bundles that serve some tasks only (micro copies whose manifest lists fewer `tasks`): every route family answers
// a request for a task the model lacks with 400 unsupported_task naming the tasks it serves, in the route's error
// dialect, before reading the request's images; the metadata surfaces (/v1/models, OpenAI's, KServe v2) list each
// model's tasks; what the model serves still works.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "../helpers/app.js";
import { microVariants } from "../helpers/bundles.js";
import { solid } from "../helpers/images.js";

const TASKS = {
  "only-retrieval": ["retrieval"],
  "only-captioning": ["captioning"],
  "only-vqa": ["vqa"],
  "no-vqa": ["retrieval", "captioning"],
} as const;

let app: FastifyInstance;
let models: ReturnType<typeof microVariants>;
let red: string; // base64 PNG
before(async () => {
  models = microVariants({
    "only-retrieval": [...TASKS["only-retrieval"]],
    "only-captioning": [...TASKS["only-captioning"]],
    "only-vqa": [...TASKS["only-vqa"]],
    "no-vqa": [...TASKS["no-vqa"]],
  });
  app = await testApp({ modelsDir: models.dir, defaultModel: "only-retrieval" });
  red = (await solid(40, 30, "#d02020")).toString("base64");
});
after(async () => {
  await app?.close();
  models?.remove();
});

const post = (url: string, body: object) => request(app.server).post(url).send(body);

/** Our dialect's refusal: 400 unsupported_task, naming the task needed and the tasks served. */
function refused(res: request.Response, needed: string, serves: string) {
  assert.equal(res.status, 400, res.text);
  assert.equal(res.body.error.code, "unsupported_task", res.text);
  assert.match(res.body.error.message, new RegExp(`does not serve ${needed}\\b.*; it serves ${serves}$`), res.text);
}

/** OpenAI's envelope of the same refusal: code unsupported_task, param "model". */
function refusedOpenAI(res: request.Response, needed: string, serves: string) {
  assert.equal(res.status, 400, res.text);
  assert.equal(res.body.error.code, "unsupported_task", res.text);
  assert.equal(res.body.error.param, "model");
  assert.equal(res.body.error.type, "invalid_request_error");
  assert.match(res.body.error.message, new RegExp(`does not serve ${needed}\\b.*; it serves ${serves}$`));
}

test("GET /v1/models (and OpenAI's /v1/models/{id}) list each model's tasks", async () => {
  const list = await request(app.server).get("/v1/models").expect(200);
  const tasks = Object.fromEntries(list.body.data.map((m: { id: string; tasks: string[] }) => [m.id, m.tasks]));
  assert.deepEqual(tasks, TASKS);
  const one = await request(app.server).get("/v1/models/only-vqa").expect(200);
  assert.deepEqual(one.body.tasks, ["vqa"]);
});

test("captions: 400 unsupported_task on a model without captioning, before the images are read", async () => {
  refused(await post("/v1/captions", { images: [red] }), "captioning", "retrieval");
  refused(await post("/v1/captions", { images: [red], model: "only-vqa" }), "captioning", "vqa");
  // not an image: still the task's refusal, so no work is done for a request that cannot be answered
  refused(await post("/v1/captions", { images: ["bm90IGFuIGltYWdl"] }), "captioning", "retrieval");
  // multipart
  const form = await request(app.server)
    .post("/v1/captions")
    .attach("image", Buffer.from(red, "base64"), "red.png")
    .field("model", "only-vqa");
  refused(form, "captioning", "vqa");
  const ok = await post("/v1/captions", { images: [red], model: "no-vqa", max_tokens: 3 }).expect(200);
  assert.equal(ok.body.captions.length, 1);
});

test("VQA: 400 unsupported_task on a model without vqa", async () => {
  refused(await post("/v1/vqa", { image: red, question: "what color?" }), "vqa", "retrieval");
  refused(
    await post("/v1/vqa", { image: red, question: "what color?", model: "no-vqa" }),
    "vqa",
    "retrieval, captioning",
  );
  const ok = await post("/v1/vqa", { image: red, question: "what color?", model: "only-vqa" }).expect(200);
  assert.equal(typeof ok.body.answer, "string");
});

test("embeddings (ours and OpenAI's body) and rank: 400 unsupported_task on a model without retrieval", async () => {
  refused(
    await post("/v1/embeddings", { texts: ["a red circle"], model: "only-captioning" }),
    "retrieval",
    "captioning",
  );
  // image embeddings need retrieval too (the ITC projection is the retrieval model's)
  refused(await post("/v1/embeddings", { images: [red], model: "only-vqa" }), "retrieval", "vqa");
  refusedOpenAI(await post("/embeddings", { input: "a red circle", model: "only-vqa" }), "retrieval", "vqa");
  refusedOpenAI(
    await post("/v1/embeddings", { input: "a red circle", model: "only-captioning", dimensions: 7 }),
    "retrieval",
    "captioning",
  );
  refused(
    await post("/v1/rank", { query: { text: "a red circle" }, candidates: [red], model: "only-captioning" }),
    "retrieval",
    "captioning",
  );
  refused(
    await post("/v1/rank", { query: { image: red }, candidates: ["a"], rerank: "none", model: "only-vqa" }),
    "retrieval",
    "vqa",
  );
  const ok = await post("/v1/embeddings", { texts: ["a red circle"], images: [red] }).expect(200);
  assert.equal(ok.body.model, "only-retrieval");
  await post("/v1/rank", { query: { text: "a red circle" }, candidates: [red] }).expect(200);
});

test("chat completions: captions need captioning, questions need vqa (OpenAI's envelope)", async () => {
  const chat = (model: string, text?: string) =>
    post("/v1/chat/completions", {
      model,
      max_tokens: 3,
      messages: [
        {
          role: "user",
          content: [
            { type: "image_url", image_url: { url: `data:image/png;base64,${red}` } },
            ...(text ? [{ type: "text", text }] : []),
          ],
        },
      ],
    });
  refusedOpenAI(await chat("only-vqa"), "captioning", "vqa");
  refusedOpenAI(await chat("only-captioning", "what color is it?"), "vqa", "captioning");
  refusedOpenAI(await chat("only-retrieval", "what color is it?"), "vqa", "retrieval");
  await chat("only-captioning").expect(200);
  await chat("only-vqa", "what color is it?").expect(200);
});

test("KServe v2: metadata lists the outputs of the model's tasks and their inputs; other outputs are a 400", async () => {
  const meta = await request(app.server).get("/v2/models/only-captioning").expect(200);
  assert.deepEqual(meta.body.inputs, [{ name: "image", datatype: "BYTES", shape: [-1] }]);
  assert.deepEqual(meta.body.outputs, [{ name: "caption", datatype: "BYTES", shape: [-1] }]);
  assert.deepEqual(meta.body.parameters, { precision: "fp32", tasks: "captioning" });
  const retrieval = await request(app.server).get("/v2/models/only-retrieval").expect(200);
  assert.deepEqual(
    retrieval.body.outputs.map((o: { name: string }) => o.name),
    ["image_embedding", "text_embedding", "itm_score"],
  );
  assert.deepEqual(
    retrieval.body.inputs.map((i: { name: string }) => i.name),
    ["image", "text"],
  );
  const image = { name: "image", datatype: "BYTES", shape: [1], data: [red] };
  const text = { name: "text", datatype: "BYTES", shape: [1], data: ["a red circle"] };
  const bad = await post("/v2/models/only-captioning/infer", {
    inputs: [image, text],
    outputs: [{ name: "caption" }, { name: "itm_score" }],
  });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.body.error, /^model 'only-captioning' does not serve retrieval\b.*; it serves captioning$/);
  const ok = await post("/v2/models/only-captioning/infer", { inputs: [image], outputs: [{ name: "caption" }] });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.outputs[0].name, "caption");
});
