// The OpenAI-compatible surface on the micro bundle (supertest): /v1/models and /models in OpenAI's list shape;
// /v1/embeddings and /embeddings with OpenAI's body beside ours (how the forms are told apart, modality, objects,
// dimensions, encoding_format, usage, limits, errors in OpenAI's envelope with `param` and `x-should-retry`).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { cleanText } from "../../src/preprocess/text.js";
import { testApp } from "../helpers/app.js";
import { servePng } from "../helpers/image-server.js";
import { solid } from "../helpers/images.js";

let app: FastifyInstance;
let red: string; // base64 PNGs
let blue: string;
before(async () => {
  app = await testApp();
  red = (await solid(40, 30, "#d02020")).toString("base64");
  blue = (await solid(30, 40, "#2020d0", "jpeg")).toString("base64");
});
after(() => app.close());

const uri = (b64: string, type = "image/png") => `data:${type};base64,${b64}`;
const post = (url: string, body: unknown) =>
  request(app.server)
    .post(url)
    .send(body as object);

/** Our route's vectors for the same inputs: what OpenAI's form must give. */
async function ours(texts: string[], images: string[] = []) {
  const res = await post("/v1/embeddings", { texts, images }).expect(200);
  return { texts: res.body.text_embeddings as number[][], images: res.body.image_embeddings as number[][] };
}

function close(got: number[], want: number[], what = "vector") {
  assert.equal(got.length, want.length, `${what}: length`);
  got.forEach((x, i) => assert.ok(Math.abs(x - want[i]) < 1e-6, `${what}[${i}]: ${x} vs ${want[i]}`));
}

function openaiError(res: request.Response, status: number, param: string | null, message: RegExp) {
  assert.equal(res.status, status, res.text);
  assert.deepEqual(Object.keys(res.body.error).sort(), ["code", "message", "param", "type"], res.text);
  assert.equal(res.body.error.param, param, res.text);
  assert.equal(res.body.error.type, status >= 500 ? "server_error" : "invalid_request_error");
  assert.match(res.body.error.message, message);
  assert.equal(res.headers["x-should-retry"], "false", "the SDKs must not retry what fails again");
}

test("GET /v1/models and /models: OpenAI's list, our fields beside, the default on top; /{id}; 404 for others", async () => {
  const a = await request(app.server).get("/v1/models").expect(200);
  const b = await request(app.server).get("/models").expect(200);
  assert.deepEqual(a.body, b.body);
  assert.equal(a.body.object, "list");
  assert.equal(a.body.default, "micro");
  const [m] = a.body.data;
  assert.deepEqual(Object.keys(m).sort(), [
    "created",
    "embed_dim",
    "id",
    "image_size",
    "metrics",
    "name",
    "object",
    "owned_by",
    "precision",
    "provider",
    "tasks",
    "version",
  ]);
  assert.deepEqual([m.id, m.object, m.owned_by, m.embed_dim, m.image_size], ["micro", "model", "dlip-serve", 32, 32]);
  assert.ok(Number.isInteger(m.created) && m.created > 1.6e9, "Unix seconds");
  for (const url of ["/v1/models/micro", "/models/micro"])
    assert.deepEqual((await request(app.server).get(url).expect(200)).body, m);
  for (const url of ["/v1/models/nope", "/models/nope"])
    openaiError(await request(app.server).get(url), 404, "model", /model 'nope' is not served \(served: micro\)/);
});

test("OpenAI's body: strings are texts, data:image/ strings and {image} objects images, in input order", async () => {
  const want = await ours(["a red circle", "x"], [red, blue]);
  for (const url of ["/v1/embeddings", "/embeddings"]) {
    const res = await post(url, {
      model: "micro",
      input: [uri(blue, "image/jpeg"), "a red circle", { image: red }, { text: "x" }],
    }).expect(200);
    assert.equal(res.body.object, "list");
    assert.equal(res.body.model, "micro");
    assert.deepEqual(
      res.body.data.map((d: { object: string; index: number }) => [d.object, d.index]),
      [0, 1, 2, 3].map((i) => ["embedding", i]),
    );
    const v = res.body.data.map((d: { embedding: number[] }) => d.embedding);
    close(v[0], want.images[1], "blue image");
    close(v[1], want.texts[0], "text");
    close(v[2], want.images[0], "red image");
    close(v[3], want.texts[1], "{text}");
  }
  const one = await post("/embeddings", { input: "a red circle" }).expect(200);
  assert.equal(one.body.data.length, 1, "a string input is one item");
  close(one.body.data[0].embedding, want.texts[0]);
  const norm = Math.hypot(...one.body.data[0].embedding);
  assert.ok(Math.abs(norm - 1) < 1e-6, "L2-normalised");
});

test("modality: image makes every string an image (data URI or bare base64); text every string a text", async () => {
  const asText = uri(red);
  const want = await ours([asText], [red, blue]);
  const img = await post("/embeddings", { input: [red, uri(blue, "image/jpeg")], modality: "image" }).expect(200);
  close(img.body.data[0].embedding, want.images[0], "bare base64");
  close(img.body.data[1].embedding, want.images[1], "data URI");
  const txt = await post("/embeddings", { input: [asText], modality: "text" }).expect(200);
  close(txt.body.data[0].embedding, want.texts[0], "a data URI embedded as text");
  const obj = await post("/embeddings", { input: ["a", { image: red }], modality: "text" }).expect(200);
  close(obj.body.data[1].embedding, want.images[0], "an {image} object stays an image");
  openaiError(
    await post("/embeddings", { input: ["a"], modality: "audio" }),
    400,
    "modality",
    /body\.modality must be one of text, image/,
  );
});

test("encoding_format base64: little-endian float32 in standard base64, the same floats", async () => {
  const input = ["a red circle", uri(red)];
  const floats = await post("/embeddings", { input, encoding_format: "float" }).expect(200);
  const b64 = await post("/embeddings", { input, encoding_format: "base64" }).expect(200);
  b64.body.data.forEach((d: { embedding: string }, i: number) => {
    assert.match(d.embedding, /^[A-Za-z0-9+/]+=*$/);
    const buf = Buffer.from(d.embedding, "base64");
    assert.equal(buf.length, 32 * 4);
    const v = Array.from({ length: 32 }, (_, k) => buf.readFloatLE(k * 4));
    close(v, floats.body.data[i].embedding, `item ${i}`);
  });
  const dflt = await post("/embeddings", { input }).expect(200);
  assert.ok(Array.isArray(dflt.body.data[0].embedding), "absent encoding_format: floats");
});

test("usage counts tokens: each text's as encoded for the model (truncated), each image's model.image_tokens", async () => {
  const model = app.models.get();
  assert.deepEqual(model.tokenizer.encode("a red circle", 35), [2, 12, 147, 94, 3], "[CLS] a red circle [SEP]");
  const long = Array.from({ length: 100 }, () => "red").join(" ");
  const res = await post("/embeddings", { input: ["a red circle", uri(red), long, { image: blue }] }).expect(200);
  // micro: image_tokens 17; the 100-word text is cut to BLIP's 30 words (pre_caption) before tokenising: 32 tokens
  assert.equal(model.tokenizer.encode(cleanText(model.manifest.source, long, "caption"), 35).length, 32);
  const want = 5 + 17 + 32 + 17;
  assert.equal(model.manifest.model.image_tokens, 17);
  assert.deepEqual(res.body.usage, { prompt_tokens: want, total_tokens: want });
});

test("dimensions: the model's size is accepted, any other a 400 naming it", async () => {
  await post("/embeddings", { input: "x", dimensions: 32 }).expect(200);
  openaiError(
    await post("/embeddings", { input: "x", dimensions: 16 }),
    400,
    "dimensions",
    /^dimensions must be 32, the embedding size of model 'micro'.*got 16$/,
  );
  openaiError(await post("/embeddings", { input: "x", dimensions: 0 }), 400, "dimensions", /body\.dimensions must be/);
});

test("the forms are told apart by their fields: mixing them is a 400; each errs in its own dialect", async () => {
  for (const extra of [{ texts: ["a"] }, { images: [red] }])
    openaiError(
      await post("/v1/embeddings", { input: "a", ...extra }),
      400,
      "input",
      /mixes OpenAI's form \('input'\) with ours \('texts' \/ 'images'\)/,
    );
  const ourErr = await post("/v1/embeddings", { texts: ["a"], encoding_format: "float" }).expect(400);
  assert.deepEqual(ourErr.body, {
    error: { code: "invalid_field", message: "body has an unknown field 'encoding_format'" },
  });
  const tooLong = await post("/embeddings", { texts: ["x".repeat(2001)] }).expect(400);
  assert.deepEqual(tooLong.body.error, {
    code: "invalid_field",
    message: "body.texts[0] is longer than 2000 characters",
  });
  const form = await request(app.server).post("/embeddings").field("text", "a red circle").expect(200);
  close(form.body.text_embeddings[0], (await ours(["a red circle"])).texts[0], "multipart on /embeddings");
});

test("bad OpenAI bodies: 400 in OpenAI's envelope naming the field", async () => {
  const cases: [unknown, string, RegExp][] = [
    [{ input: 5 }, "input", /body\.input must be a string or a list/],
    [{ input: [] }, "input", /body\.input is empty/],
    [{ input: [[1, 2]] }, "input", /body\.input\[0\] must be a string.*token ids are not taken/],
    [{ input: ["a", 7] }, "input", /body\.input\[1\] must be a string/],
    [
      { input: [{ text: "a", image: red }] },
      "input",
      /body\.input\[0\] must have exactly one field, 'text' or 'image'/,
    ],
    [{ input: [{ txt: "a" }] }, "input", /body\.input\[0\] must have exactly one field/],
    [{ input: [{ text: 1 }] }, "input", /body\.input\[0\]\.text must be a string/],
    [{ input: ["x".repeat(2001)] }, "input", /body\.input\[0\] is a text longer than 2000 characters/],
    [{ input: "a", extra: 1 }, "extra", /body has an unknown field 'extra'/],
    [{ input: "a", encoding_format: "int8" }, "encoding_format", /must be one of float, base64/],
    [{ input: "a", model: "" }, "model", /body\.model must NOT have fewer than 1 characters/],
    [
      { input: [{ image: "https://example.com/cat.png" }] },
      "input",
      /input\[0\] is a URL, and this server fetches no image URLs/,
    ],
    [{ input: ["http://example.com/a.png"], modality: "image" }, "input", /this server fetches no image URLs/],
    [{ input: [{ image: "" }] }, "input", /input\[0\] is empty/],
    [{ input: ["data:image/png;base64,%%%"] }, "input", /input\[0\] is not valid base64/],
    [{ input: [uri(Buffer.from("not an image").toString("base64"))] }, "input", /input\[0\] is not an image/],
    [{ input: Array.from({ length: 33 }, () => uri(red)) }, "input", /33 images; at most 32 per request/],
    [{ input: Array.from({ length: 257 }, () => "a") }, "input", /257 texts; at most 256 per request/],
    [{ input: Array.from({ length: 289 }, () => "a") }, "input", /289 items; at most 288/],
  ];
  for (const [body, param, message] of cases) openaiError(await post("/embeddings", body), 400, param, message);
  openaiError(await post("/embeddings", { input: "a", model: "nope" }), 404, "model", /model 'nope' is not served/);
});

test("limits: an image over FILE_LIMIT_BYTES is a 413 in OpenAI's envelope", async () => {
  const small = await testApp({ fileLimitBytes: 100 });
  try {
    const res = await request(small.server)
      .post("/v1/embeddings")
      .send({ input: [uri(red)] });
    assert.equal(res.status, 413);
    assert.equal(res.body.error.param, "input");
    assert.equal(res.body.error.code, "file_too_large");
    assert.match(res.body.error.message, /input\[0\] is larger than the per-file limit of 100 bytes/);
  } finally {
    await small.close();
  }
});

test("errors a retry cannot fix carry x-should-retry: false; answers do not", async () => {
  const ok = await post("/embeddings", { input: "a" }).expect(200);
  assert.equal(ok.headers["x-should-retry"], undefined);
  const ourErr = await post("/v1/captions", { images: [] }).expect(400);
  assert.equal(ourErr.headers["x-should-retry"], "false");
  const missing = await request(app.server).get("/v1/nothing").expect(404);
  assert.equal(missing.headers["x-should-retry"], "false");
});

test("image URLs in OpenAI's input: fetched from a host allowed by name, the same vector as the bytes", async () => {
  const srv = await servePng(Buffer.from(red, "base64"));
  const url = srv.url;
  const withUrls = await testApp({ imageUrlHosts: "127.0.0.1" });
  try {
    const want = (await ours([], [red])).images[0];
    const res = await request(withUrls.server)
      .post("/v1/embeddings")
      .send({ input: [{ image: url }], encoding_format: "float" })
      .expect(200);
    close(res.body.data[0].embedding, want, "fetched image");
    const missing = await request(withUrls.server)
      .post("/v1/embeddings")
      .send({ input: [url.replace("red", "nothing")], modality: "image" });
    openaiError(missing, 400, "input", /HTTP 404/);
  } finally {
    await withUrls.close();
    srv.close();
  }
});
