// Fuzzing: a few hundred malformed bodies and image bytes (truncated, zero-length, random, huge dimensions, wrong
// content types) on every task route; each must get a 4xx, and the server must stay healthy. Bounded in count,
// seeded, loopback only.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "../helpers/app.js";
import { pngHeaderOnly, solid } from "../helpers/images.js";

const CASES = 300;
let app: FastifyInstance;
before(async () => {
  app = await testApp({ bodyLimitBytes: 1_000_000, fileLimitBytes: 500_000, maxImagePixels: 4_000_000 });
});
after(() => app.close());

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 2 ** 32;
  };
}

test(`${CASES} malformed requests all get a 4xx; the server stays healthy`, async () => {
  const rand = rng(1234);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  const png = await solid(32, 24);
  const jpeg = await solid(32, 24, "#00ff00", "jpeg");
  const webp = await solid(16, 16, "#0000ff", "webp");
  const images: (() => Buffer)[] = [
    () => Buffer.alloc(0),
    () => bytes(1 + Math.floor(rand() * 300)),
    () => png.subarray(0, Math.floor(rand() * png.length)),
    () => jpeg.subarray(0, Math.floor(rand() * jpeg.length)),
    () => webp.subarray(0, Math.floor(rand() * webp.length)),
    () => Buffer.concat([png.subarray(0, 16), bytes(40)]),
    () => pngHeaderOnly(1 + Math.floor(rand() * 100_000), 1 + Math.floor(rand() * 100_000)),
    () => pngHeaderOnly(0, 0),
    () => Buffer.concat([jpeg.subarray(0, 4), bytes(200)]),
    () => Buffer.from("GIF89a" + "x".repeat(20)),
    () => Buffer.from("<svg><script>alert(1)</script></svg>"),
  ];
  const routes = ["/v1/captions", "/v1/vqa", "/v1/embeddings", "/v1/rank"];
  const jsonBodies: (() => unknown)[] = [
    () => ({ images: [pick(images)().toString("base64")] }),
    () => ({ image: pick(images)().toString("base64"), question: "what?" }),
    () => ({ images: [`data:image/png;base64,${pick(images)().toString("base64")}`] }),
    () => ({ query: { text: "x" }, candidates: [pick(images)().toString("base64")] }),
    () => ({ query: { image: pick(images)().toString("base64") }, candidates: ["a"] }),
    () => ({ images: pick([5, "x", null, [1], [null], [{}], {}, [""], ["!!!"]]) }),
    () => ({ texts: pick([[1], "x", [null], [["a"]]]) }),
    () => ({ image: 42, question: ["q"] }),
    () => ({ query: pick([null, "text", { text: 1 }, { image: null }, { text: "a", image: "b" }]), candidates: ["a"] }),
    () => ({ max_tokens: pick([-1, 0, 1e9, 1.5, "3", null]), num_beams: pick([0, -3, 100, 2.5]), images: ["AAAA"] }),
    () => ({ model: pick(["", "nope", "../micro", "micro\u0000", "x".repeat(500)]), texts: ["a"] }),
    () => [],
    () => null,
    () => "just a string",
    () => 12345,
  ];
  const statuses = new Map<number, number>();
  for (let i = 0; i < CASES; i++) {
    const url = pick(routes);
    const kind = Math.floor(rand() * 6);
    let req = request(app.server).post(url);
    if (kind === 0) req = req.set("content-type", "application/json").send(JSON.stringify(pick(jsonBodies)()));
    else if (kind === 1) {
      const text = JSON.stringify(pick(jsonBodies)());
      req = req.set("content-type", "application/json").send(text.slice(0, Math.floor(rand() * text.length))); // truncated JSON
    } else if (kind === 2) {
      req = req
        .set(
          "content-type",
          pick([
            "text/plain",
            "application/octet-stream",
            "image/png",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "multipart/mixed",
          ]),
        )
        .send(bytes(Math.floor(rand() * 200)));
    } else if (kind === 3) {
      req = req
        .attach(pick(["image", "query_image", "photo"]), pick(images)(), "f.bin")
        .field(
          pick(["question", "query", "text", "top_k", "max_tokens", "junk"]),
          pick(["", "7", "-1", "abc", "what?"]),
        );
    } else if (kind === 4) {
      // multipart with a broken body
      const boundary = "----fuzz" + Math.floor(rand() * 1e6);
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n`),
        pick(images)(),
        pick([Buffer.from(""), Buffer.from(`\r\n--${boundary}`), bytes(30)]),
      ]);
      req = req
        .set(
          "content-type",
          pick([`multipart/form-data; boundary=${boundary}`, "multipart/form-data", "multipart/form-data; boundary="]),
        )
        .send(body);
    } else {
      req = req.set("content-type", "application/json").send(bytes(Math.floor(rand() * 500)));
    }
    const res = await req;
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    assert.ok(
      res.status >= 400 && res.status < 500,
      `case ${i} (${url}, kind ${kind}): ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`,
    );
    assert.equal(typeof res.body?.error?.code, "string", `case ${i}: error body`);
  }
  await request(app.server).get("/healthz").expect(200);
  await request(app.server).get("/readyz").expect(200);
  const ok = await request(app.server)
    .post("/v1/captions")
    .send({ images: [png.toString("base64")] });
  assert.equal(ok.status, 200, "a good request still works");
  assert.ok(statuses.size >= 2, `a variety of statuses: ${JSON.stringify([...statuses])}`);
});
