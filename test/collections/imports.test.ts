// Bulk imports over a real socket (embedded store): the body is read as it arrives, so an import outlives
// REQUEST_TIMEOUT_MS (no deadline applies to it), its progress is readable from another connection while it runs,
// and a client that leaves mid-stream keeps every batch committed before it left.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-imports-"));
let app: FastifyInstance;
let base: string;
let line: (i: number) => string;
before(async () => {
  // a 500 ms request deadline and batches of 4: an import of a few seconds crosses both many times
  app = await testApp({ collectionsDataDir: dir, requestTimeoutMs: 500, maxBatchSize: 4 });
  await app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const image = (await solid(16, 16, "#3060c0")).toString("base64");
  line = (i) => JSON.stringify({ id: `x${i}`, image, metadata: { i } }) + "\n";
  const res = await fetch(`${base}/v1/collections`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "slow" }),
  });
  assert.equal(res.status, 201);
});
after(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const job = async (id: string) =>
  (await (await fetch(`${base}/v1/collections/slow/jobs/${id}`)).json()) as Record<string, unknown>;

/** A PUT of an NDJSON body written a line at a time; resolves with the answer (or the socket error). */
function streamImport(jobId: string) {
  const req = http.request(`${base}/v1/collections/slow/imports/${jobId}`, {
    method: "PUT",
    headers: { "content-type": "application/x-ndjson" },
  });
  const answer = new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    req.on("response", (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on("error", reject);
  });
  answer.catch(() => {});
  return { req, answer };
}

test("an import streamed for longer than REQUEST_TIMEOUT_MS completes; its progress is readable meanwhile", async () => {
  const { req, answer } = streamImport("long");
  let seenRunning: Record<string, unknown> | undefined;
  for (let i = 0; i < 24; i++) {
    req.write(line(i));
    await sleep(100); // 2.4 s in all, five request deadlines
    if (i === 16) seenRunning = await job("long");
  }
  req.end();
  const { status, body } = await answer;
  assert.equal(status, 200, JSON.stringify(body));
  assert.deepEqual([body.status, body.received, body.succeeded, body.failed], ["done", 24, 24, 0]);
  assert.equal(seenRunning?.status, "running");
  assert.ok((seenRunning?.succeeded as number) >= 4, "batches committed while the stream was open");
});

test("a client that leaves mid-import keeps the batches committed before it left", async () => {
  const { req } = streamImport("cut");
  for (let i = 100; i < 110; i++) req.write(line(i));
  // wait until two batches of 4 are committed, then go away
  for (let i = 0; i < 200 && (((await job("cut")).succeeded as number) ?? 0) < 8; i++) await sleep(50);
  req.destroy();
  let j = await job("cut");
  for (let i = 0; i < 200 && j.status === "running"; i++) {
    await sleep(50);
    j = await job("cut");
  }
  assert.equal(j.status, "failed");
  assert.ok((j.succeeded as number) >= 8);
  // `received` is the resume point: every line up to it is stored
  assert.equal(j.received, j.succeeded);
  for (let i = 100; i < 100 + (j.received as number); i++) {
    const res = await fetch(`${base}/v1/collections/slow/items/x${i}`);
    assert.equal(res.status, 200, `x${i}`);
  }
});
