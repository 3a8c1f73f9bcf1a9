// POST /v1/chat/completions on the micro bundle: the body rules, the same text as /v1/captions and /v1/vqa,
// finish_reason and usage, SSE framing, and a client leaving mid-stream stopping its decode.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { metricValue, testApp } from "../helpers/app.js";
import { servePng } from "../helpers/image-server.js";
import { solid } from "../helpers/images.js";

let app: FastifyInstance;
let red: string;
let blue: string;
before(async () => {
  app = await testApp();
  red = `data:image/png;base64,${(await solid(40, 30, "#d02020")).toString("base64")}`;
  blue = (await solid(30, 40, "#2020d0", "jpeg")).toString("base64"); // bare base64
});
after(() => app.close());

const user = (image: string | null, text?: string, bare = false) => ({
  role: "user",
  content: [
    ...(text !== undefined ? [{ type: "text", text }] : []),
    ...(image ? [{ type: "image_url", image_url: bare ? image : { url: image, detail: "low" } }] : []),
  ],
});
const chat = (body: object) =>
  request(app.server)
    .post("/v1/chat/completions")
    .send({ model: "micro", ...body });

/** The `data:` events of an SSE body, parsed (the final [DONE] kept as the string). */
function events(text: string): unknown[] {
  assert.ok(text.endsWith("\n\n"), "events end with a blank line");
  return text
    .split("\n\n")
    .filter(Boolean)
    .map((e) => {
      assert.match(e, /^data: /);
      const d = e.slice(6);
      return d === "[DONE]" ? d : JSON.parse(d);
    });
}

test("an image alone is captioned: the text of /v1/captions, greedy and beam, with finish_reason and usage", async () => {
  for (const num_beams of [1, 3]) {
    const ref = await request(app.server)
      .post("/v1/captions")
      .send({ images: [red], num_beams })
      .expect(200);
    const res = await chat({ messages: [user(red)], num_beams }).expect(200);
    assert.equal(res.body.object, "chat.completion");
    assert.match(res.body.id, /^chatcmpl-/);
    assert.ok(Number.isInteger(res.body.created));
    assert.equal(res.body.model, "micro");
    const [c] = res.body.choices;
    assert.deepEqual(c.message, { role: "assistant", content: ref.body.captions[0].text, refusal: null });
    assert.equal(c.index, 0);
    const tokens = ref.body.captions[0].tokens;
    assert.equal(c.finish_reason, tokens === 20 ? "length" : "stop");
    assert.deepEqual(res.body.usage, {
      prompt_tokens: 17 + 1, // the micro model's 17 image tokens and [DEC]
      completion_tokens: tokens,
      total_tokens: 18 + tokens,
    });
  }
});

test("an image and a text: the text is a question, answered as /v1/vqa answers it", async () => {
  const q = "what color is the square?";
  const ref = await request(app.server).post("/v1/vqa").send({ image: blue, question: q }).expect(200);
  const res = await chat({
    messages: [{ role: "system", content: "You are helpful." }, user(blue, q, true)],
  }).expect(200);
  assert.equal(res.body.choices[0].message.content, ref.body.answer);
  const qTokens = app.models.get("micro").tokenizer.encode(q, 35).length; // [CLS]->[ENC] question [SEP]
  assert.equal(res.body.usage.prompt_tokens, 17 + qTokens);
  // a string content in an earlier turn is fine; the last user message is the one read
  const multi = await chat({
    messages: [user(null, "hello"), { role: "assistant", content: "hi" }, user(blue, q)],
  }).expect(200);
  assert.equal(multi.body.choices[0].message.content, ref.body.answer);
});

test("task overrides: caption with a text uses it as the prompt; the content is what follows it", async () => {
  const tok = app.models.get("micro").tokenizer;
  const plain = await chat({ messages: [user(red, "is it red?")], task: "caption" }).expect(200);
  const prompt = tok.encode("is it red?", 35).slice(1, -1);
  const content = plain.body.choices[0].message.content as string;
  assert.equal(plain.body.usage.prompt_tokens, 17 + 1 + prompt.length);
  assert.ok(content.length > 0);
  const alone = await chat({ messages: [user(red)] }).expect(200);
  assert.notEqual(content, alone.body.choices[0].message.content, "the prompt conditions the caption");
  // the prompt's normalised text followed by the content is the caption: it re-tokenises to the prompt first
  assert.deepEqual(tok.encode(tok.decode(prompt) + content, 99).slice(1, 1 + prompt.length), prompt);
  await chat({ messages: [user(red)], task: "vqa" }).expect(400);
  const badTask = await chat({ messages: [user(red)], task: "rank" }).expect(400);
  assert.equal(badTask.body.error.param, "task");
});

test("n: the n best hypotheses of one beam search, best first; the first is the num_beams = n caption", async () => {
  const ref = await request(app.server)
    .post("/v1/captions")
    .send({ images: [red], num_beams: 3 })
    .expect(200);
  const res = await chat({ messages: [user(red)], n: 3 }).expect(200);
  assert.equal(res.body.choices.length, 3);
  assert.deepEqual(
    res.body.choices.map((c: { index: number }) => c.index),
    [0, 1, 2],
  );
  assert.equal(res.body.choices[0].message.content, ref.body.captions[0].text);
  const texts = new Set(res.body.choices.map((c: { message: { content: string } }) => c.message.content));
  assert.equal(texts.size, 3, "distinct hypotheses");
  const { completion_tokens } = res.body.usage; // every choice's tokens
  assert.ok(completion_tokens >= ref.body.captions[0].tokens + 2 && completion_tokens <= 60, `${completion_tokens}`);

  const over = await chat({ messages: [user(red)], n: 9 }).expect(400);
  assert.equal(over.body.error.param, "n");
  assert.equal(over.headers["x-should-retry"], "false");
  await chat({ messages: [user(red)], n: 3, num_beams: 2 }).expect(400);
});

test("max_completion_tokens / max_tokens: the cap decides finish_reason; over the model's cap is a 400", async () => {
  for (const field of ["max_completion_tokens", "max_tokens"]) {
    const res = await chat({ messages: [user(red)], [field]: 2 }).expect(200);
    assert.equal(res.body.choices[0].finish_reason, "length");
    assert.equal(res.body.usage.completion_tokens, 2);
    const over = await chat({ messages: [user(red)], [field]: 21 }).expect(400);
    assert.equal(over.body.error.param, field);
    assert.match(over.body.error.message, /must be <= 20/);
  }
  const vqa = await chat({ messages: [user(red, "what?")], max_tokens: 11 }).expect(400);
  assert.match(vqa.body.error.message, /<= 10 .*max_answer_tokens/);
});

test("body rules: no image, several images, bad parts, unknown model; errors in OpenAI's envelope", async () => {
  const cases: [object, number, string | null, RegExp][] = [
    [{ messages: [{ role: "user", content: "describe it" }] }, 400, "messages[0].content", /has no image/],
    [{ messages: [{ role: "system", content: "x" }] }, 400, "messages", /no user message/],
    [
      { messages: [{ role: "user", content: [user(red).content[0], user(blue).content[0]] }] },
      400,
      "messages[0].content[1].image_url",
      /one image per request/,
    ],
    [
      { messages: [{ role: "user", content: [{ type: "input_audio", input_audio: {} }] }] },
      400,
      "messages[0].content[0].type",
      /text or image_url/,
    ],
    [
      { messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] },
      400,
      "messages[0].content[0].image_url",
      /url/,
    ],
    [{ messages: [{ role: "wizard", content: "x" }] }, 400, "messages[0].role", /role/],
    [{ messages: [user("not base64!")] }, 400, "messages[0].content[0].image_url", /base64/],
    [{ messages: [user("https://example.com/a.png")] }, 400, "messages[0].content[0].image_url", /IMAGE_URL_HOSTS/],
    [{ messages: [user(red)], model: "gpt-4o" }, 404, null, /not served/],
    [{ messages: [user(red)], stream: true, n: 2 }, 400, "stream", /beam/],
    [{ messages: [user(red)], stop: ["."] }, 400, "stop", /stop/],
    [{ messages: [user(red)], logprobs: true }, 400, "logprobs", /logprobs/],
    [{ messages: [user(red)], tools: [{ type: "function" }] }, 400, "tools", /tools/],
    [{ messages: [user(red)], response_format: { type: "json_object" } }, 400, "response_format", /text/],
    [{ messages: [] }, 400, null, /messages/],
  ];
  for (const [body, status, param, msg] of cases) {
    const res = await chat(body).expect(status);
    const e = res.body.error;
    assert.deepEqual(Object.keys(e).sort(), ["code", "message", "param", "type"], JSON.stringify(body).slice(0, 80));
    assert.equal(e.type, "invalid_request_error");
    assert.match(e.message, msg);
    if (param !== null) assert.equal(e.param, param, e.message);
    assert.equal(res.headers["x-should-retry"], "false");
  }
});

test("sampling parameters and the SDKs' extra fields are accepted and change nothing", async () => {
  const ref = await chat({ messages: [user(red)] }).expect(200);
  const res = await chat({
    messages: [user(red)],
    temperature: 0.7,
    top_p: 0.9,
    seed: 3,
    presence_penalty: 0.5,
    frequency_penalty: 0.5,
    logit_bias: { 5: 1 },
    user: "u1",
    metadata: { a: "b" },
    store: false,
    stream: false,
    stream_options: null,
    logprobs: false,
    stop: null,
    tool_choice: "none",
    response_format: { type: "text" },
  }).expect(200);
  assert.equal(res.body.choices[0].message.content, ref.body.choices[0].message.content);
  const bare = await request(app.server)
    .post("/chat/completions")
    .send({ messages: [user(red)] })
    .expect(200);
  assert.equal(bare.body.choices[0].message.content, ref.body.choices[0].message.content, "no /v1, no model");
});

test("stream: role chunk, one chunk per token, finish chunk, usage chunk, [DONE]; the same text as without", async () => {
  for (const [messages, extra] of [
    [[user(red)], {}],
    [[user(blue, "what is it?", true)], {}],
    [[user(red, "a picture of")], { task: "caption" }],
    [[user(red)], { max_tokens: 3 }],
  ] as const) {
    const plain = await chat({ messages, ...extra }).expect(200);
    const res = await chat({ messages, ...extra, stream: true, stream_options: { include_usage: true } }).expect(200);
    assert.match(res.headers["content-type"], /^text\/event-stream/);
    assert.equal(res.headers["cache-control"], "no-cache");
    assert.equal(res.headers["x-accel-buffering"], "no");
    const ev = events(res.text) as Record<string, any>[];
    assert.equal(ev.at(-1), "[DONE]");
    const chunks = ev.slice(0, -1);
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1, "one id in every chunk");
    for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");
    assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
    const usageChunk = chunks.at(-1)!;
    assert.deepEqual(usageChunk.choices, []);
    assert.deepEqual(usageChunk.usage, plain.body.usage);
    const finish = chunks.at(-2)!;
    assert.equal(finish.choices[0].finish_reason, plain.body.choices[0].finish_reason);
    assert.deepEqual(finish.choices[0].delta, {});
    const tokens = chunks.slice(1, -2);
    assert.equal(tokens.length, plain.body.usage.completion_tokens, "one chunk per generated token");
    for (const c of [...tokens, finish, chunks[0]]) assert.equal(c.usage, null);
    const text = tokens.map((c) => c.choices[0].delta.content).join("");
    assert.equal(text, plain.body.choices[0].message.content);
  }
  // without include_usage: no usage chunk, no usage field
  const res = await chat({ messages: [user(red)], stream: true }).expect(200);
  const ev = events(res.text) as Record<string, any>[];
  assert.notEqual(ev.at(-2)!.choices[0].finish_reason, null);
  for (const c of ev.slice(0, -1)) assert.equal("usage" in c, false);
});

test("a client leaving mid-stream stops its decode at the next step (dropped decoder rows)", async () => {
  // its own app: a batch waits up to 150 ms to fill, so the stream decodes in one batch with 31 beam-search
  // captions (8 beams, 20 tokens), and the decode lasts long enough for the client to leave in the middle of it
  const slow = await testApp({ maxBatchDelayMs: 150 });
  try {
    await slow.listen({ port: 0, host: "127.0.0.1" });
    const { port } = slow.server.address() as AddressInfo;
    const labels = { model: "micro", graph: "decoder", reason: "client_gone" };
    const before = await metricValue(slow, "dlip_dropped_rows_total", labels);
    const heavy = request(slow.server)
      .post("/v1/captions")
      .send({ images: Array(31).fill(red), num_beams: 8, max_tokens: 20 })
      .then((r) => r);
    const body = JSON.stringify({ model: "micro", messages: [user(red)], stream: true, task: "caption" });
    let tokens = 0;
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          path: "/v1/chat/completions",
          method: "POST",
          headers: { "content-type": "application/json" },
        },
        (res) => {
          let seen = "";
          res.on("data", (d: Buffer) => {
            seen += d.toString();
            tokens = seen.split("data: ").length - 2; // after the role chunk
            if (tokens >= 1) {
              req.destroy(); // gone after the first token
              resolve();
            }
          });
          res.on("end", () => reject(new Error(`the stream ended before the client left: ${seen.slice(-200)}`)));
        },
      );
      req.on("error", () => {});
      req.end(body);
    });
    assert.equal((await heavy).status, 200, "the other rows of the batch decode on");
    assert.equal(
      await metricValue(slow, "dlip_dropped_rows_total", labels),
      before + 1,
      "the stream's row was stopped inside the running decode",
    );
  } finally {
    await slow.close();
  }
});

test("image URLs through chat: fetched from a host allowed by name, the same caption as the bytes", async () => {
  const srv = await servePng(Buffer.from(red.split(",")[1], "base64"));
  const url = srv.url;
  const withUrls = await testApp({ imageUrlHosts: "127.0.0.1" });
  try {
    const ref = await chat({ messages: [user(red)] }).expect(200);
    const res = await request(withUrls.server)
      .post("/v1/chat/completions")
      .send({ model: "micro", messages: [user(url)] })
      .expect(200);
    assert.equal(res.body.choices[0].message.content, ref.body.choices[0].message.content);
    const missing = await request(withUrls.server)
      .post("/v1/chat/completions")
      .send({ model: "micro", messages: [user(url.replace("red", "nothing"))] })
      .expect(400);
    assert.equal(missing.body.error.param, "messages[0].content[0].image_url");
    assert.match(missing.body.error.message, /HTTP 404/);
  } finally {
    await withUrls.close();
    srv.close();
  }
});
