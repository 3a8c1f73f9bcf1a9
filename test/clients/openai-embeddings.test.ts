// The official OpenAI clients against a started server on the micro bundle (127.0.0.1, a random port, API keys
// on): the Python package (test/clients/openai_client.py, run with training/.venv's python) and the Node package.
// Models list and retrieve, text and image embeddings as floats and in the clients' default base64, with base_url
// with and without /v1, and the SDKs' exception classes for refused requests. The vectors must equal our own
// /v1/embeddings answers for the same inputs.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import OpenAI, { APIError } from "openai";
import { ROOT, testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";
import { venvTool } from "../helpers/tools.js";

const KEY = "sk-test-0123456789";
const TEXTS = ["a red circle", "two blue squares"];

let app: FastifyInstance;
let url: string;
let image: string; // base64 PNG
let ours: { texts: number[][]; image: number[] };

before(async () => {
  app = await testApp({ apiKeys: `other-key,${KEY}` });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as { port: number };
  url = `http://127.0.0.1:${port}`;
  image = (await solid(40, 30, "#d02020")).toString("base64");
  const res = await fetch(`${url}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ texts: TEXTS, images: [image] }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { text_embeddings: number[][]; image_embeddings: number[][] };
  ours = { texts: body.text_embeddings, image: body.image_embeddings[0] };
});
after(() => app.close());

function close(got: ArrayLike<number>, want: number[], what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

/** Runs the Python client script (asynchronously: the server answers from this process). */
function runPython(args: string[]): Promise<string> {
  const python = venvTool("python");
  const script = path.join(ROOT, "test/clients/openai_client.py");
  return new Promise((resolve, reject) =>
    execFile(python, [script, ...args], { timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`the client script failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

test("the openai Python package: models, text and image embeddings (float and base64), its exception classes", async () => {
  const out = JSON.parse(await runPython([url, KEY, image]));
  assert.match(out.version, /^\d+\.\d+/);

  assert.equal(out.models.length, 1);
  const m = out.models[0];
  assert.deepEqual([m.id, m.object, m.owned_by, m.name, m.embed_dim], ["micro", "model", "dlip-serve", "micro", 32]);
  assert.equal(typeof m.created, "number");
  assert.deepEqual(out.models_bare, ["micro"], "base_url without /v1");
  assert.equal(out.model.id, "micro");

  assert.equal(out.response_model, "micro");
  const tokens = TEXTS.map((t) => app.models.get("micro").tokenizer.encode(t, 35).length);
  assert.deepEqual(out.usage, { prompt_tokens: tokens[0] + tokens[1], total_tokens: tokens[0] + tokens[1] });
  for (const key of ["text_float", "text_default", "text_bare"]) {
    assert.equal(out[key].length, 2, key);
    out[key].forEach((v: number[], i: number) => close(v, ours.texts[i], `${key}[${i}]`));
  }
  for (const key of ["image_float", "image_default", "image_modality"]) {
    assert.equal(out[key].length, 1, key);
    close(out[key][0], ours.image, key);
  }
  close(out.mixed_objects[0], ours.image, "mixed_objects[0]");
  close(out.mixed_objects[1], ours.texts[0], "mixed_objects[1]");

  assert.deepEqual(out.errors, {
    dimensions: { class: "BadRequestError", status: 400, param: "dimensions" },
    unknown_model: { class: "NotFoundError", status: 404, param: "model" },
    unknown_model_retrieve: { class: "NotFoundError", status: 404, param: "model" },
    wrong_key: { class: "AuthenticationError", status: 401, param: null },
  });
});

test("the openai Node package: models, text and image embeddings (float and its default base64), its errors", async () => {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY, maxRetries: 0 });
  const bare = new OpenAI({ baseURL: url, apiKey: KEY, maxRetries: 0 });
  const dataUri = `data:image/png;base64,${image}`;

  const list = await client.models.list();
  assert.deepEqual(
    list.data.map((m) => [m.id, m.object, m.owned_by]),
    [["micro", "model", "dlip-serve"]],
  );
  assert.deepEqual(
    (await bare.models.list()).data.map((m) => m.id),
    ["micro"],
  );
  assert.equal((await client.models.retrieve("micro")).id, "micro");

  const asFloat = await client.embeddings.create({ model: "micro", input: TEXTS, encoding_format: "float" });
  assert.equal(asFloat.model, "micro");
  assert.deepEqual(
    asFloat.data.map((d) => [d.object, d.index]),
    [
      ["embedding", 0],
      ["embedding", 1],
    ],
  );
  asFloat.data.forEach((d, i) => close(d.embedding, ours.texts[i], `float[${i}]`));
  // no encoding_format: the Node client asks for base64 and decodes it as float32 (it breaks on float arrays)
  const asDefault = await bare.embeddings.create({ model: "micro", input: TEXTS });
  asDefault.data.forEach((d, i) => close(d.embedding, ours.texts[i], `default[${i}]`));
  const images = await client.embeddings.create({ model: "micro", input: [dataUri, TEXTS[1]] });
  close(images.data[0].embedding, ours.image, "image");
  close(images.data[1].embedding, ours.texts[1], "text after the image");
  const modality = await client.embeddings.create({ model: "micro", input: image, modality: "image" } as never);
  close(modality.data[0].embedding, ours.image, "modality image");

  // base64 as sent: little-endian float32, standard base64, the same floats
  const raw = await client.embeddings.create({ model: "micro", input: TEXTS[0], encoding_format: "base64" });
  const b64 = raw.data[0].embedding as unknown as string;
  assert.equal(typeof b64, "string");
  const buf = Buffer.from(b64, "base64");
  close(
    Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4)),
    ours.texts[0],
    "base64",
  );

  const refused = async (
    call: () => Promise<unknown>,
    cls: abstract new (...args: never[]) => APIError,
    status: number,
    param: unknown,
  ) => {
    const err = await call().then(
      () => assert.fail("expected an error"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof cls, `${String(err)} is a ${cls.name}`);
    assert.equal((err as APIError).status, status);
    assert.equal((err as APIError).param, param);
  };
  await refused(
    () => client.embeddings.create({ model: "micro", input: "x", dimensions: 8 }),
    OpenAI.BadRequestError,
    400,
    "dimensions",
  );
  await refused(() => client.embeddings.create({ model: "nope", input: "x" }), OpenAI.NotFoundError, 404, "model");
  await refused(() => client.models.retrieve("nope"), OpenAI.NotFoundError, 404, "model");
  const wrong = new OpenAI({ baseURL: `${url}/v1`, apiKey: "wrong", maxRetries: 0 });
  await refused(() => wrong.models.list(), OpenAI.AuthenticationError, 401, null);
});
