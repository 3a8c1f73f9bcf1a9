// Every error class of the API: status, {"error": {"code", "message"}}, Retry-After where it applies.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { holdWorker, metricValue, testApp, until } from "../helpers/app.js";
import { pngHeaderOnly, solid } from "../helpers/images.js";

let app: FastifyInstance;
let png: Buffer;
before(async () => {
  app = await testApp({
    bodyLimitBytes: 200_000,
    fileLimitBytes: 100_000,
    maxImagePixels: 1_000_000,
    maxQueue: 2,
  });
  png = await solid(20, 20);
});
after(() => app.close());

function isError(res: request.Response, status: number, code: string, message?: RegExp) {
  assert.equal(res.status, status, `${res.status} ${JSON.stringify(res.body)}`);
  assert.equal(res.body.error.code, code);
  assert.equal(typeof res.body.error.message, "string");
  if (message) assert.match(res.body.error.message, message);
}

const post = (url: string) => request(app.server).post(url);

test("400 invalid JSON", async () => {
  isError(await post("/v1/captions").set("content-type", "application/json").send('{"images": ['), 400, "invalid_json");
  isError(await post("/v1/captions").set("content-type", "application/json").send(""), 400, "invalid_json");
});

test("400 invalid fields, naming the field", async () => {
  isError(await post("/v1/captions").send({}), 400, "invalid_field", /images/);
  isError(await post("/v1/captions").send({ images: [] }), 400, "invalid_field", /body\.images/);
  isError(
    await post("/v1/captions").send({ images: [png.toString("base64")], bogus: 1 }),
    400,
    "invalid_field",
    /unknown field 'bogus'/,
  );
  isError(
    await post("/v1/captions").send({ images: [png.toString("base64")], num_beams: 99 }),
    400,
    "invalid_field",
    /num_beams/,
  );
  isError(
    await post("/v1/captions").send({ images: [png.toString("base64")], max_tokens: 500 }),
    400,
    "invalid_field",
    /max_tokens must be <= 20/,
  );
  isError(
    await post("/v1/captions").send({ images: [png.toString("base64")], max_tokens: "5" }),
    400,
    "invalid_field",
    /max_tokens/,
  );
  isError(await post("/v1/vqa").send({ image: png.toString("base64") }), 400, "invalid_field", /question/);
  isError(
    await post("/v1/vqa").send({ image: png.toString("base64"), question: "   " }),
    400,
    "invalid_field",
    /question/,
  );
  isError(await post("/v1/embeddings").send({}), 400, "invalid_field", /nothing to embed/);
  isError(await post("/v1/rank").send({ query: { audio: "x" }, candidates: ["a"] }), 400, "invalid_field", /query/);
  isError(await post("/v1/rank").send({ query: { text: "x" }, candidates: [] }), 400, "invalid_field", /candidates/);
  isError(
    await post("/v1/rank").field("query", "x").field("text", "y"),
    400,
    "invalid_field",
    /text query takes 'image'/,
  );
  isError(
    await post("/v1/captions").field("max_tokens", "abc").attach("image", png, "a.png"),
    400,
    "invalid_field",
    /max_tokens/,
  );
  isError(
    await post("/v1/captions").attach("photo", png, "a.png"),
    400,
    "invalid_field",
    /unexpected file part 'photo'/,
  );
  isError(await post("/v1/captions").field("foo", "1"), 400, "invalid_field", /unexpected field 'foo'/);
});

test("400 invalid image bytes, naming the image; URLs are refused, not fetched", async () => {
  isError(
    await post("/v1/captions").send({ images: [png.toString("base64"), "bm90IGFuIGltYWdl"] }),
    400,
    "invalid_image",
    /images\[1\] is not an image/,
  );
  isError(await post("/v1/captions").send({ images: ["%%%not base64%%%"] }), 400, "invalid_image", /not valid base64/);
  isError(
    await post("/v1/captions").send({ images: ["https://example.com/cat.jpg"] }),
    400,
    "invalid_image",
    /does not fetch/,
  );
  isError(await post("/v1/captions").send({ images: ["data:image/png,rawbytes"] }), 400, "invalid_image", /base64/);
  isError(await post("/v1/captions").send({ images: [png.subarray(0, 40).toString("base64")] }), 400, "invalid_image");
  isError(
    await post("/v1/vqa").attach("image", Buffer.alloc(0), "empty.png").field("question", "q"),
    400,
    "invalid_image",
    /empty/,
  );
  isError(await post("/v1/captions").send({ images: [""] }), 400, "invalid_image", /images\[0\] is empty/);
});

test("text limits count characters (code points) alike in JSON and multipart bodies", async () => {
  const astral = "\u{1F600}".repeat(2000); // 2,000 characters, 4,000 UTF-16 code units
  const img = png.toString("base64");
  assert.equal((await post("/v1/vqa").send({ image: img, question: astral })).status, 200);
  assert.equal((await post("/v1/vqa").attach("image", png, "a.png").field("question", astral)).status, 200);
  isError(await post("/v1/vqa").send({ image: img, question: astral + "x" }), 400, "invalid_field", /question/);
  isError(
    await post("/v1/vqa")
      .attach("image", png, "a.png")
      .field("question", astral + "x"),
    400,
    "invalid_field",
    /longer than 2000 characters/,
  );
});

test("404 unknown model and unknown route", async () => {
  isError(
    await post("/v1/embeddings").send({ texts: ["x"], model: "../../etc/passwd" }),
    404,
    "unknown_model",
    /not served \(served: micro\)/,
  );
  isError(await request(app.server).get("/v1/nothing"), 404, "not_found");
});

test("413 body, file and decoded pixels too large", async () => {
  isError(await post("/v1/embeddings").send({ texts: ["x".repeat(250_000)] }), 413, "body_too_large");
  const big = Buffer.alloc(150_000, 1);
  isError(await post("/v1/captions").attach("image", big, "big.png"), 413, "file_too_large");
  isError(
    await post("/v1/captions").send({ images: [Buffer.alloc(120_000, 7).toString("base64").slice(0, 140_000)] }),
    413,
    "file_too_large",
  );
  isError(
    await post("/v1/captions").send({ images: [pngHeaderOnly(40_000, 40_000).toString("base64")] }),
    413,
    "image_too_large",
    /MAX_IMAGE_PIXELS/,
  );
});

test("415 unsupported content type and image format", async () => {
  isError(await post("/v1/captions").set("content-type", "text/plain").send("hello"), 415, "unsupported_media_type");
  isError(
    await post("/v1/captions").set("content-type", "application/xml").send("<a/>"),
    415,
    "unsupported_media_type",
  );
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>');
  isError(
    await post("/v1/captions").send({ images: [svg.toString("base64")] }),
    415,
    "unsupported_image_format",
    /SVG/,
  );
  isError(
    await post("/v1/captions").send({
      images: [Buffer.concat([Buffer.from("BM"), Buffer.alloc(64)]).toString("base64")],
    }),
    415,
    "unsupported_image_format",
    /BMP/,
  );
});

test("429 with Retry-After when the queue is full; 504 when the deadline passes in the queue", async () => {
  // a server of its own, whose deadline passes while its only worker is held (the others keep the default deadline,
  // which a busy machine does not reach)
  const short = await testApp({ maxQueue: 2, requestTimeoutMs: 2000 });
  try {
    const hold = await holdWorker(short); // the only worker is busy: rows wait in their queue (MAX_QUEUE=2)
    const body = { images: [png.toString("base64")] };
    const send = () => request(short.server).post("/v1/captions").send(body);
    const first = send().then((r) => r);
    const second = send().then((r) => r);
    await until(() => short.inference.scheduler.queued >= 2, "both queued");
    const third = await send();
    isError(third, 429, "queue_full");
    assert.equal(third.headers["retry-after"], "1");
    // REQUEST_TIMEOUT_MS passes while the worker is still held: 504, and the rows never reach inference
    isError(await first, 504, "deadline_exceeded");
    isError(await second, 504, "deadline_exceeded");
    hold.release();
    await hold.done;
    assert.equal(await metricValue(short, "dlip_dropped_rows_total", { reason: "deadline_exceeded" }), 2);
    assert.equal(await metricValue(short, "dlip_rejected_requests_total", { reason: "queue_full" }), 1);
    const fivexx = { status_class: "5xx", route: "/v1/captions" };
    assert.equal(await metricValue(short, "dlip_http_request_duration_seconds_count", fivexx), 2, "the 504s");
    await send().expect(200); // and the server carries on
  } finally {
    await short.close();
  }
});

test("a request whose client disconnects is dropped before inference", async () => {
  const before = await metricValue(app, "dlip_dropped_rows_total", { reason: "client_gone" });
  const hold = await holdWorker(app);
  const addr = await new Promise<import("node:net").AddressInfo>((resolve) => {
    const s = app.server.address();
    if (s && typeof s === "object") resolve(s);
    else app.server.listen(0, "127.0.0.1", () => resolve(app.server.address() as import("node:net").AddressInfo));
  });
  const http = await import("node:http");
  const body = JSON.stringify({ images: [png.toString("base64")] });
  const req = http.request({
    host: "127.0.0.1",
    port: addr.port,
    method: "POST",
    path: "/v1/captions",
    headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
  });
  req.on("error", () => {});
  req.end(body);
  await until(() => app.inference.scheduler.queued >= 1, "queued behind the held worker");
  req.destroy(); // the client leaves
  const dropped = async () => (await metricValue(app, "dlip_dropped_rows_total", { reason: "client_gone" })) - before;
  await until(async () => (await dropped()) >= 1, "its row dropped");
  assert.equal(app.inference.scheduler.queued, 0, "it left the queue while the worker was still held");
  hold.release();
  await hold.done;
  assert.equal(await dropped(), 1);
  await post("/v1/captions")
    .send({ images: [png.toString("base64")] })
    .expect(200);
});

test("503 with Retry-After while not ready or draining; probes say so", async () => {
  app.lifecycle.close(); // as while the sessions close
  try {
    isError(await post("/v1/embeddings").send({ texts: ["x"] }), 503, "not_ready");
    isError(await request(app.server).get("/readyz"), 503, "not_ready");
  } finally {
    app.lifecycle.open();
  }
  await request(app.server).get("/readyz").expect(200);
  // last: a drain does not end (the app closes after it)
  assert.equal(await app.lifecycle.drain(0), 0, "nothing in flight");
  const res = await post("/v1/embeddings").send({ texts: ["x"] });
  isError(res, 503, "draining");
  assert.ok(Number(res.headers["retry-after"]) > 0);
  isError(await request(app.server).get("/readyz"), 503, "draining");
  await request(app.server).get("/healthz").expect(200); // alive all the same
});

test("no 500 so far: the only 5xx answers above are the deliberate 503s (the 504s were another server's)", async () => {
  assert.equal(
    await metricValue(app, "dlip_http_request_duration_seconds_count", { status_class: "5xx", route: "/v1/captions" }),
    0,
  );
  assert.equal(
    await metricValue(app, "dlip_http_request_duration_seconds_count", {
      status_class: "5xx",
      route: "/v1/embeddings",
    }),
    2,
  ); // the 503s
  assert.equal(
    await metricValue(app, "dlip_http_request_duration_seconds_count", { status_class: "5xx", route: "/v1/vqa" }),
    0,
  );
  assert.equal(
    await metricValue(app, "dlip_http_request_duration_seconds_count", { status_class: "5xx", route: "/v1/rank" }),
    0,
  );
});
