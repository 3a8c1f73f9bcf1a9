// Optional API keys (API_KEYS, API_KEYS_FILE): with keys set, /v1, /v2 (but its health probes) and the OpenAI
// aliases need `Authorization: Bearer <key>` (401 in the route's dialect, WWW-Authenticate: Bearer); probes,
// metrics and docs stay open. Without keys, any Authorization header is accepted (OpenAI clients always send one).
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { apiKeys, keyMatches, needsKey } from "../../src/auth.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { createHash } from "node:crypto";
import { testApp } from "../helpers/app.js";

const KEYS = ["k-first", "a-much-longer-second-key-0123456789abcdef"];
let app: FastifyInstance;
before(async () => {
  app = await testApp({ apiKeys: KEYS.join(" , ") });
});
after(() => app.close());

const get = (url: string, auth?: string) => {
  const r = request(app.server).get(url);
  return auth === undefined ? r : r.set("authorization", auth);
};

function refused(res: request.Response, message: RegExp) {
  assert.equal(res.status, 401, res.text);
  assert.equal(res.headers["www-authenticate"], "Bearer");
  assert.equal(res.headers["x-should-retry"], "false");
  // KServe v2 routes answer {"error": "..."}, the others {"error": {"message", ...}}
  assert.match(typeof res.body.error === "string" ? res.body.error : res.body.error.message, message);
}

test("keys on: API routes need a key, in each route's error dialect", async () => {
  const missing = /this server needs an API key: send 'Authorization: Bearer <key>'/;
  const openai = await get("/v1/models");
  refused(openai, missing);
  assert.deepEqual(openai.body.error, {
    message: openai.body.error.message,
    type: "authentication_error",
    param: null,
    code: "unauthorized",
  });
  refused(await get("/models"), missing);
  refused(await get("/models/micro"), missing);
  const ours = await request(app.server).post("/v1/captions").send({ images: [] });
  refused(ours, missing);
  assert.deepEqual(Object.keys(ours.body.error), ["code", "message"]);
  for (const url of [
    "/v1/embeddings",
    "/embeddings",
    "/chat/completions",
    "/v1/chat/completions",
    "/v2/models/m/infer",
  ])
    refused(await request(app.server).post(url).send({}), missing);
  for (const url of ["/v2", "/v2/models/micro", "/v1/nothing", "/%761/models", "/v1/%6dodels", "/v1/models?x=1"])
    refused(await get(url), missing);
  assert.equal(typeof (await get("/v2/models/micro")).body.error, "string", "the KServe dialect on /v2");
  refused(await get("/v1/models", "Bearer wrong"), /^the API key is not valid$/);
  refused(await get("/v1/models", "Basic azE6cGFzcw=="), /must be 'Bearer <key>'/);
  refused(await get("/v1/models", "Bearer"), /must be 'Bearer <key>'/);
});

test("keys on: every key works (scheme case-insensitive); keys of other lengths and prefixes are refused", async () => {
  for (const k of KEYS) await get("/v1/models", `Bearer ${k}`).expect(200);
  await get("/models", `bearer ${KEYS[0]}`).expect(200);
  await request(app.server)
    .post("/embeddings")
    .set("authorization", `Bearer ${KEYS[1]}`)
    .send({ input: "a" })
    .expect(200);
  for (const wrong of ["k", "k-firs", "k-first-", KEYS[1].slice(0, -1), `${KEYS[1]}x`, "x".repeat(5000)])
    refused(await get("/v1/models", `Bearer ${wrong}`), /not valid/);
});

test("keys on: probes, metrics and docs stay open", async () => {
  for (const url of ["/healthz", "/readyz", "/metrics", "/docs/json"]) await get(url).expect(200);
  const v2probe = await get("/v2/health/ready"); // KServe's probe paths are never behind a key
  assert.notEqual(v2probe.status, 401);
});

test("keys off: any Authorization header is accepted", async () => {
  const open = await testApp();
  try {
    await request(open.server).get("/v1/models").set("authorization", "Bearer EMPTY").expect(200);
    await request(open.server).get("/models").expect(200);
  } finally {
    await open.close();
  }
});

test("the compare: SHA-256 digests of equal length, every key compared, any lengths", () => {
  const d = (s: string) => createHash("sha256").update(s).digest();
  const digests = ["a", "b".repeat(100), ""].map(d);
  assert.equal(keyMatches("a", digests), true);
  assert.equal(keyMatches("b".repeat(100), digests), true);
  assert.equal(keyMatches("b".repeat(99), digests), false);
  assert.equal(keyMatches("ab", digests), false);
  assert.equal(keyMatches("é".repeat(3), digests), false);
});

test("which paths need a key", () => {
  for (const p of ["/v1", "/v1/models", "/v1/models/:id", "/v2", "/v2/models/:model/infer", "/models", "/models/:id"])
    assert.equal(needsKey(p), true, p);
  for (const p of ["/embeddings", "/chat/completions"]) assert.equal(needsKey(p), true, p);
  for (const p of ["/healthz", "/readyz", "/metrics", "/docs", "/docs/json", "/v2/health/live", "/v2/health/ready"])
    assert.equal(needsKey(p), false, p);
  for (const p of ["/v10", "/modelsx", "/v2health"]) assert.equal(needsKey(p), false, p);
});

test("API_KEYS and API_KEYS_FILE: keys from both; a file that cannot be read or holds none stops the boot", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "keys-"));
  const file = path.join(dir, "keys");
  writeFileSync(file, "file-one\n  file-two  \n\n");
  assert.deepEqual(apiKeys(loadConfig({ API_KEYS: "a,b", API_KEYS_FILE: file }, [])), [
    "a",
    "b",
    "file-one",
    "file-two",
  ]);
  assert.deepEqual(apiKeys(loadConfig({}, [])), []);
  assert.throws(() => loadConfig({ API_KEYS: " , " }, []), /API_KEYS holds no key/);
  writeFileSync(file, "\n \n");
  assert.throws(() => apiKeys(loadConfig({ API_KEYS_FILE: file }, [])), ConfigError);
  assert.throws(() => apiKeys(loadConfig({ API_KEYS_FILE: path.join(dir, "none") }, [])), /cannot be read/);
});

test("API_KEYS_FILE alone turns keys on", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "keys-"));
  writeFileSync(path.join(dir, "keys"), "from-a-secret\n");
  const fromFile = await testApp({ apiKeysFile: path.join(dir, "keys") });
  try {
    await request(fromFile.server).get("/v1/models").expect(401);
    await request(fromFile.server).get("/v1/models").set("authorization", "Bearer from-a-secret").expect(200);
  } finally {
    await fromFile.close();
  }
});
