// API keys apply to the collection routes as to every /v1 route: 401 without a valid key, before anything is read.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "../helpers/app.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-auth-"));
let app: FastifyInstance;
before(async () => {
  app = await testApp({ collectionsDataDir: dir, apiKeys: "secret-key" });
});
after(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("collection routes need the key; with it they answer", async () => {
  const calls: [string, string, object?][] = [
    ["get", "/v1/collections"],
    ["post", "/v1/collections", { name: "k" }],
    ["get", "/v1/collections/k"],
    ["put", "/v1/collections/k/items", { items: [{ id: "a", text: "x" }] }],
    ["post", "/v1/collections/k/search", { text: "x" }],
    ["get", "/v1/collections/k/jobs/j"],
    ["delete", "/v1/collections/k"],
  ];
  for (const [method, url, body] of calls) {
    const res = await request(app.server)[method as "get"](url).send(body);
    assert.equal(res.status, 401, `${method} ${url}`);
    assert.equal(res.body.error.code, "unauthorized");
  }
  const auth = { authorization: "Bearer secret-key" };
  await request(app.server).post("/v1/collections").set(auth).send({ name: "k" }).expect(201);
  await request(app.server).get("/v1/collections/k").set(auth).expect(200);
  await request(app.server).delete("/v1/collections/k").set(auth).expect(200);
});
