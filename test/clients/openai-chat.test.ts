// The official openai SDKs against a started server on the micro bundle (127.0.0.1): the Node package imported
// here, the Python package (training/.venv) through test/clients/openai_chat.py. Captions, VQA, n = 2, streaming and
// errors as the SDKs' exception classes; the texts equal /v1/captions' and /v1/vqa's for the same image and question.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import OpenAI from "openai";
import request from "supertest";
import { ROOT, testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";
import { venvTool } from "../helpers/tools.js";

const QUESTION = "what color is the square?";
let app: FastifyInstance;
let baseURL: string;
let image: string;
let ref: { caption: string; beam: string[]; answer: string; tokens: number };

before(async () => {
  app = await testApp();
  await app.listen({ port: 0, host: "127.0.0.1" });
  baseURL = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1`;
  image = `data:image/png;base64,${(await solid(40, 30, "#20a040")).toString("base64")}`;
  const cap = await request(app.server)
    .post("/v1/captions")
    .send({ images: [image] })
    .expect(200);
  const beam = await request(app.server)
    .post("/v1/captions")
    .send({ images: [image], num_beams: 2 })
    .expect(200);
  const vqa = await request(app.server).post("/v1/vqa").send({ image, question: QUESTION }).expect(200);
  ref = {
    caption: cap.body.captions[0].text,
    tokens: cap.body.captions[0].tokens,
    beam: [beam.body.captions[0].text],
    answer: vqa.body.answer,
  };
});
after(() => app.close());

const imagePart = () => ({ type: "image_url" as const, image_url: { url: image } });

test("openai (Node): caption, VQA, n = 2, streaming, errors as the SDK's classes", async () => {
  const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
  const ask = (content: OpenAI.Chat.ChatCompletionContentPart[], extra: object = {}) =>
    client.chat.completions.create({ model: "micro", messages: [{ role: "user", content }], ...extra });

  const caption = await ask([imagePart()]);
  assert.equal(caption.choices[0].message.content, ref.caption);
  assert.equal(caption.usage?.completion_tokens, ref.tokens);
  const vqa = await ask([{ type: "text", text: QUESTION }, imagePart()]);
  assert.equal(vqa.choices[0].message.content, ref.answer);
  const two = await ask([imagePart()], { n: 2 });
  assert.equal(two.choices.length, 2);
  assert.equal(two.choices[0].message.content, ref.beam[0], "the best of 2 beams = /v1/captions num_beams 2");

  const stream = await client.chat.completions.create({
    model: "micro",
    messages: [{ role: "user", content: [imagePart()] }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.delta.content ?? "";
      finish = c.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, ref.caption, "the stream reassembles to the non-streamed caption");
  assert.equal(finish, caption.choices[0].finish_reason);
  assert.deepEqual(usage, caption.usage);

  await assert.rejects(ask([{ type: "text", text: QUESTION }]), (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.param, "messages[0].content");
    assert.match(e.message, /has no image/);
    return true;
  });
  await assert.rejects(
    client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: [imagePart()] }] }),
    (e: unknown) => e instanceof OpenAI.NotFoundError,
  );
  // the SDK with a base URL without /v1
  const bare = new OpenAI({ baseURL: baseURL.replace(/\/v1$/, ""), apiKey: "unused", maxRetries: 0 });
  const c2 = await bare.chat.completions.create({
    model: "micro",
    messages: [{ role: "user", content: [imagePart()] }],
  });
  assert.equal(c2.choices[0].message.content, ref.caption);
});

test("openai (Python): caption, VQA, n = 2, streaming, errors as the SDK's classes", async () => {
  const python = venvTool("python");
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-openai-"));
  const file = path.join(dir, "image.txt");
  writeFileSync(file, image);
  const { stdout } = await promisify(execFile)(
    python,
    [path.join(ROOT, "test/clients/openai_chat.py"), baseURL, file, QUESTION],
    { timeout: 60_000 },
  );
  const out = JSON.parse(stdout);
  assert.equal(out.version, "3.57.0", "the pinned openai package");
  assert.equal(out.caption, ref.caption);
  assert.equal(out.caption_usage.completion_tokens, ref.tokens);
  assert.equal(out.vqa, ref.answer);
  assert.equal(out.n2.length, 2);
  assert.equal(out.n2[0], ref.beam[0]);
  assert.equal(out.stream_text, ref.caption);
  assert.deepEqual(out.stream_roles, ["assistant"]);
  assert.equal(out.stream_finish, out.caption_finish);
  assert.deepEqual(out.stream_usage, out.caption_usage);
  assert.deepEqual(out.error, { class: "BadRequestError", status: 400, param: "messages[0].content" });
  assert.deepEqual(out.missing, { class: "NotFoundError", status: 404 });
});
