// The KServe v2 routes through HTTP: the binary tensor framing both ways, bodies with any or no Content-Type,
// tensor checks (names, datatypes, shapes, pairing) and limits, each a 4xx {"error": "..."} naming the problem;
// 404/413/429/503 as the /v1 routes give them; probes that answer 503 instead of being refused.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { decodeBytes, decodeFp32, encodeBytes } from "../../src/routes/kserve/binary.js";
import { testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

let app: FastifyInstance;
let red: Buffer;
let blue: Buffer;
let port: number;
before(async () => {
  app = await testApp({ bodyLimitBytes: 200_000, fileLimitBytes: 100_000, maxQueue: 4 });
  await app.listen({ host: "127.0.0.1", port: 0 });
  port = (app.server.address() as AddressInfo).port;
  red = await solid(40, 30, "#d02020");
  blue = await solid(30, 40, "#2020d0", "jpeg");
});
after(() => app.close());

const INFER = "/v2/models/micro/infer";
const b64 = (b: Buffer) => b.toString("base64");
const bytesIn = (name: string, data: string[]) => ({ name, datatype: "BYTES", shape: [data.length], data });

/** A binary-extension body: the JSON header, then each binary input's data. */
function framed(header: object, parts: Buffer[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, ...parts]), headerLength: json.length };
}

function binaryInput(name: string, items: Buffer[]) {
  const data = encodeBytes(items);
  return {
    tensor: { name, datatype: "BYTES", shape: [items.length], parameters: { binary_data_size: data.length } },
    data,
  };
}

/** POSTs raw bytes with the given headers (none added: no Content-Type unless given), as tritonclient does. */
function raw(path: string, body: Buffer, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method: "POST", headers: { "content-length": String(body.length), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A response split by its Inference-Header-Content-Length (absent: all JSON). */
function parseResponse(res: { headers: http.IncomingHttpHeaders; body: Buffer }) {
  const n = res.headers["inference-header-content-length"];
  const len = n === undefined ? res.body.length : Number(n);
  const header = JSON.parse(res.body.subarray(0, len).toString());
  const binary = res.body.subarray(len);
  let at = 0;
  const data: Record<string, unknown[]> = {};
  for (const o of header.outputs) {
    if (o.parameters?.binary_data_size === undefined) data[o.name] = o.data;
    else {
      const piece = binary.subarray(at, (at += o.parameters.binary_data_size));
      data[o.name] = o.datatype === "BYTES" ? decodeBytes(piece, o.name).map(String) : decodeFp32(piece);
    }
  }
  assert.equal(at, binary.length, "the binary part is exactly the outputs' binary_data_size");
  return { header, data };
}

function isV2Error(res: { status: number; body: unknown }, status: number, message?: RegExp) {
  const body = Buffer.isBuffer(res.body) ? JSON.parse(res.body.toString()) : res.body;
  assert.equal(res.status, status, `${res.status} ${JSON.stringify(body)}`);
  assert.deepEqual(Object.keys(body as object), ["error"], "the v2 error body: {error}");
  assert.equal(typeof (body as { error: unknown }).error, "string");
  if (message) assert.match((body as { error: string }).error, message);
}

test("binary framing: binary and JSON inputs mixed; binary_data_output with a per-output override", async () => {
  const image = binaryInput("image", [red, blue]);
  const text = binaryInput("text", [Buffer.from("a red square"), Buffer.from("a blue square")]);
  const header = {
    id: "req-7",
    parameters: { binary_data_output: true },
    inputs: [image.tensor, bytesIn("question", ["what color?", "what is it?"]), text.tensor],
    outputs: [
      { name: "caption" },
      { name: "image_embedding", parameters: { binary_data: false } },
      { name: "answer" },
      { name: "itm_score" },
    ],
  };
  const { body, headerLength } = framed(header, [image.data, text.data]);
  for (const type of [undefined, "application/octet-stream", "application/json"]) {
    const headers: Record<string, string> = { "inference-header-content-length": String(headerLength) };
    if (type) headers["content-type"] = type;
    const res = await raw(INFER, body, headers);
    assert.equal(res.status, 200, `${type}: ${res.body}`);
    const { header: h, data } = parseResponse(res);
    assert.equal(h.id, "req-7");
    assert.equal(h.model_name, "micro");
    assert.equal(h.model_version, "1");
    assert.deepEqual(
      h.outputs.map((o: { name: string; datatype: string; shape: number[] }) => [o.name, o.datatype, o.shape]),
      [
        ["caption", "BYTES", [2]],
        ["image_embedding", "FP32", [2, 32]],
        ["answer", "BYTES", [2]],
        ["itm_score", "FP32", [2]],
      ],
    );
    assert.ok(h.outputs[1].data, "binary_data: false keeps image_embedding in JSON");
    assert.equal(h.outputs[0].parameters.binary_data_size > 0, true);
    const caps = await request(app.server)
      .post("/v1/captions")
      .send({ images: [b64(red), b64(blue)] })
      .expect(200);
    assert.deepEqual(
      data.caption,
      caps.body.captions.map((c: { text: string }) => c.text),
    );
    assert.equal(data.image_embedding.length, 64);
  }
});

test("JSON in, JSON out: no binary header; nested data; id echoed, and absent when not given", async () => {
  const res = await request(app.server)
    .post(INFER)
    .send({
      id: "abc",
      inputs: [{ name: "text", datatype: "BYTES", shape: [2], data: [["one"], ["two"]] }],
      outputs: [{ name: "text_embedding" }],
    })
    .expect(200);
  assert.equal(res.headers["inference-header-content-length"], undefined);
  assert.match(res.headers["content-type"], /^application\/json/);
  assert.equal(res.body.id, "abc");
  assert.deepEqual(res.body.outputs[0].shape, [2, 32]);
  const emb = await request(app.server)
    .post("/v1/embeddings")
    .send({ texts: ["one", "two"] })
    .expect(200);
  assert.deepEqual(res.body.outputs[0].data, emb.body.text_embeddings.flat());
  const noId = await request(app.server)
    .post(INFER)
    .send({ inputs: [bytesIn("image", [b64(red)])], outputs: [{ name: "image_embedding" }] })
    .expect(200);
  assert.equal("id" in noId.body, false);
  // the versioned path, at the manifest's version
  await request(app.server)
    .post("/v2/models/micro/versions/1/infer")
    .send({ inputs: [bytesIn("text", ["x"])], outputs: [{ name: "text_embedding" }] })
    .expect(200);
});

test("malformed binary framing is a 400 naming the problem", async () => {
  const image = binaryInput("image", [red]);
  const header = { inputs: [image.tensor], outputs: [{ name: "caption" }] };
  const { body, headerLength } = framed(header, [image.data]);
  const h = (n: number | string) => ({ "inference-header-content-length": String(n) });
  isV2Error(await raw(INFER, body, h(body.length + 1)), 400, /cannot end past the body/);
  isV2Error(await raw(INFER, body, h("12abc")), 400, /must be a byte count/);
  isV2Error(await raw(INFER, body, h(headerLength - 1)), 400, /invalid JSON header/);
  isV2Error(await raw(INFER, body.subarray(0, body.length - 1), h(headerLength)), 400, /add up to/);
  isV2Error(await raw(INFER, Buffer.concat([body, Buffer.from("x")]), h(headerLength)), 400, /add up to/);
  // a BYTES element that claims more than its tensor's binary data holds
  const bad = Buffer.alloc(8);
  bad.writeUInt32LE(100, 0);
  const lying = framed(
    { inputs: [{ ...image.tensor, parameters: { binary_data_size: 8 } }], outputs: [{ name: "caption" }] },
    [bad],
  );
  isV2Error(
    await raw(INFER, lying.body, h(lying.headerLength)),
    400,
    /input 'image': BYTES element 0 claims 100 bytes/,
  );
  // binary_data_size without the header: there is no binary part
  isV2Error(await raw(INFER, Buffer.from(JSON.stringify(header)), {}), 400, /add up to 0|binary data is 0 bytes/);
  isV2Error(await raw(INFER, Buffer.alloc(0), {}), 400, /no body/);
  isV2Error(await raw(INFER, Buffer.from("[1]"), {}), 400, /must be an object/);
});

test("tensor checks: names, datatypes, shapes, element types, pairing, outputs and parameters", async () => {
  const cases: [object, RegExp][] = [
    [
      { inputs: [bytesIn("text", ["x"])] },
      /name the outputs to compute in 'outputs' \(outputs: caption, answer, image_embedding, text_embedding, itm_score\)/,
    ],
    [{ inputs: [bytesIn("text", ["x"])], outputs: [] }, /name the outputs/],
    [{ inputs: [bytesIn("text", ["x"])], outputs: [{ name: "logits" }] }, /unknown output 'logits'/],
    [
      { inputs: [bytesIn("txt", ["x"])], outputs: [{ name: "text_embedding" }] },
      /unknown input 'txt' \(inputs: image, text, question\)/,
    ],
    [
      { inputs: [bytesIn("text", ["x"])], outputs: [{ name: "caption" }] },
      /output 'caption' needs the input\(s\) image/,
    ],
    [
      { inputs: [bytesIn("image", [b64(red)])], outputs: [{ name: "answer" }] },
      /output 'answer' needs the input\(s\) question/,
    ],
    [
      { inputs: [bytesIn("image", [b64(red)]), bytesIn("text", ["x"])], outputs: [{ name: "caption" }] },
      /input 'text' is not used by the requested outputs/,
    ],
    [
      { inputs: [bytesIn("image", [b64(red)]), bytesIn("text", ["x", "y"])], outputs: [{ name: "itm_score" }] },
      /pairs image i with text i: got 1 image and 2 text/,
    ],
    [
      { inputs: [bytesIn("image", [b64(red)]), bytesIn("question", ["a?", "b?"])], outputs: [{ name: "answer" }] },
      /pairs image i with question i/,
    ],
    [
      { inputs: [{ name: "text", datatype: "FP32", shape: [1], data: [1] }], outputs: [{ name: "text_embedding" }] },
      /input 'text' has datatype FP32; it must be BYTES/,
    ],
    [
      {
        inputs: [{ name: "text", datatype: "BYTES", shape: [1, 1], data: ["x"] }],
        outputs: [{ name: "text_embedding" }],
      },
      /input 'text' has shape \[1,1\]; it must be \[N\]/,
    ],
    [
      { inputs: [{ name: "text", datatype: "BYTES", shape: [2], data: ["x"] }], outputs: [{ name: "text_embedding" }] },
      /input 'text' has shape \[2\] but 1 elements/,
    ],
    [
      { inputs: [{ name: "text", datatype: "BYTES", shape: [0], data: [] }], outputs: [{ name: "text_embedding" }] },
      /input 'text' has no elements/,
    ],
    [
      { inputs: [{ name: "text", datatype: "BYTES", shape: [1], data: [3] }], outputs: [{ name: "text_embedding" }] },
      /input 'text' data\[0\] is number/,
    ],
    [
      { inputs: [{ name: "text", datatype: "BYTES", shape: [1] }], outputs: [{ name: "text_embedding" }] },
      /input 'text' has no 'data'/,
    ],
    [
      { inputs: [bytesIn("text", ["x"]), bytesIn("text", ["y"])], outputs: [{ name: "text_embedding" }] },
      /input 'text' is given twice/,
    ],
    [
      { inputs: [bytesIn("text", ["x"])], outputs: [{ name: "text_embedding" }, { name: "text_embedding" }] },
      /requested twice/,
    ],
    [
      { inputs: [bytesIn("text", ["x"])], outputs: [{ name: "text_embedding", parameters: { classification: 3 } }] },
      /parameter 'classification' is not supported/,
    ],
    [
      { parameters: { priority: 1 }, inputs: [bytesIn("text", ["x"])], outputs: [{ name: "text_embedding" }] },
      /request parameter 'priority' is not supported/,
    ],
    [
      {
        parameters: { binary_data_output: "yes" },
        inputs: [bytesIn("text", ["x"])],
        outputs: [{ name: "text_embedding" }],
      },
      /binary_data_output must be a boolean/,
    ],
    [
      { inputs: [bytesIn("text", ["x"])], outputs: [{ name: "text_embedding" }], extra: 1 },
      /body has an unknown field 'extra'/,
    ],
    [
      { inputs: [{ name: "text", shape: [1], data: ["x"] }], outputs: [{ name: "text_embedding" }] },
      /body\.inputs\[0\] is missing the field 'datatype'/,
    ],
    [{ inputs: [bytesIn("image", ["not base64!"])], outputs: [{ name: "caption" }] }, /image\[0\] is not valid base64/],
    [
      { inputs: [bytesIn("image", [b64(red)]), bytesIn("question", ["  "])], outputs: [{ name: "answer" }] },
      /question\[0\] is blank/,
    ],
  ];
  for (const [body, message] of cases) isV2Error(await request(app.server).post(INFER).send(body), 400, message);
  // non-UTF-8 text in binary
  const text = binaryInput("text", [Buffer.from([0xff, 0xfe])]);
  const { body, headerLength } = framed({ inputs: [text.tensor], outputs: [{ name: "text_embedding" }] }, [text.data]);
  isV2Error(
    await raw(INFER, body, { "inference-header-content-length": String(headerLength) }),
    400,
    /text\[0\] is not valid UTF-8/,
  );
});

test("limits as the /v1 routes: images and texts per request, text length, image bytes, body size", async () => {
  const post = (body: object) => request(app.server).post(INFER).send(body);
  isV2Error(
    await post({ inputs: [bytesIn("image", Array(33).fill("x"))], outputs: [{ name: "caption" }] }),
    400,
    /33 elements; at most 32/,
  );
  isV2Error(
    await post({ inputs: [bytesIn("text", Array(257).fill("x"))], outputs: [{ name: "text_embedding" }] }),
    400,
    /at most 256/,
  );
  isV2Error(
    await post({ inputs: [bytesIn("text", ["é".repeat(2001)])], outputs: [{ name: "text_embedding" }] }),
    400,
    /text\[0\] is longer than 2000 characters/,
  );
  await post({ inputs: [bytesIn("text", ["é".repeat(2000)])], outputs: [{ name: "text_embedding" }] }).expect(200);
  const big = binaryInput("image", [Buffer.alloc(100_001)]);
  const f = framed({ inputs: [big.tensor], outputs: [{ name: "caption" }] }, [big.data]);
  isV2Error(
    await raw(INFER, f.body, { "inference-header-content-length": String(f.headerLength) }),
    413,
    /image\[0\] is larger than the per-file limit of 100000 bytes/,
  );
  const huge = binaryInput("image", [Buffer.alloc(90_000), Buffer.alloc(90_000), Buffer.alloc(90_000)]);
  const g = framed({ inputs: [huge.tensor], outputs: [{ name: "caption" }] }, [huge.data]);
  isV2Error(await raw(INFER, g.body, { "inference-header-content-length": String(g.headerLength) }), 413, /body limit/);
  const junk = binaryInput("image", [Buffer.from("not an image")]);
  const j = framed({ inputs: [junk.tensor], outputs: [{ name: "caption" }] }, [junk.data]);
  const res = await raw(INFER, j.body, { "inference-header-content-length": String(j.headerLength) });
  assert.ok(res.status === 400 || res.status === 415, `an undecodable image is a 4xx: ${res.status}`);
  isV2Error(res, res.status, /image\[0\]/);
});

test("404 unknown model, version or path; 429 when the queue is full", async () => {
  const body = { inputs: [bytesIn("text", ["x"])], outputs: [{ name: "text_embedding" }] };
  isV2Error(await request(app.server).post("/v2/models/nope/infer").send(body), 404, /model 'nope' is not served/);
  isV2Error(
    await request(app.server).post("/v2/models/micro/versions/7/infer").send(body),
    404,
    /has no version '7' \(versions: 1\)/,
  );
  isV2Error(await request(app.server).get("/v2/models/nope"), 404);
  isV2Error(await request(app.server).get("/v2/models/nope/ready"), 404);
  isV2Error(await request(app.server).get("/v2/models/micro/versions/2/ready"), 404);
  isV2Error(await request(app.server).get("/v2/nothing/here"), 404, /no route GET \/v2\/nothing\/here/);
  isV2Error(await request(app.server).post("/v2/models/micro"), 404);
  // MAX_QUEUE=4: five texts cannot be queued at once, as on /v1/embeddings
  const many = { inputs: [bytesIn("text", ["a", "b", "c", "d", "e"])], outputs: [{ name: "text_embedding" }] };
  const full = await request(app.server).post(INFER).send(many);
  isV2Error(full, 429, /queue is full/);
  assert.equal(full.headers["retry-after"], "1");
});

test("probes: live and ready answer 200, and 503 (not a refusal) while not ready; live stays up", async () => {
  assert.deepEqual((await request(app.server).get("/v2/health/live").expect(200)).body, { live: true });
  assert.deepEqual((await request(app.server).get("/v2/health/ready").expect(200)).body, { ready: true });
  assert.deepEqual((await request(app.server).get("/v2/models/micro/versions/1/ready").expect(200)).body, {
    name: "micro",
    ready: true,
  });
  app.lifecycle.close();
  try {
    isV2Error(await request(app.server).get("/v2/health/ready"), 503, /not loaded and warmed up/);
    isV2Error(await request(app.server).get("/v2/models/micro/ready"), 503);
    isV2Error(await request(app.server).post(INFER).send({}), 503);
    await request(app.server).get("/v2/health/live").expect(200);
    await request(app.server).get("/v2").expect(200);
  } finally {
    app.lifecycle.open();
  }
  await request(app.server).get("/v2/health/ready").expect(200);
});
