// The embedded store keeps what it acknowledged: the real server process (src/server.ts) is killed with SIGKILL right
// after its 2xx answers and started again on the same COLLECTIONS_DATA_DIR; every acknowledged item is there. And a
// second server on the same directory is refused while the first lives (two PGlite instances would corrupt it).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { FIXTURES, ROOT } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-durable-"));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** Starts the server on the embedded store in `dir`; resolves with its port once it listens. */
async function server(): Promise<{ child: ChildProcess; base: string; log: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/server.ts"], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      HOST: "127.0.0.1",
      PORT: "0",
      WORKERS: "1",
      THREADS_PER_WORKER: "1",
      MODELS_DIR: FIXTURES,
      COLLECTIONS_DATA_DIR: dir,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const port = await new Promise<number>((resolve, reject) => {
    const poll = setInterval(() => {
      const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearInterval(poll);
        resolve(Number(m[1]));
      }
    }, 50);
    child.once("exit", (code) => {
      clearInterval(poll);
      reject(new Error(`server exited (${code}): ${out}`));
    });
  });
  return { child, base: `http://127.0.0.1:${port}`, log: () => out };
}

async function call(base: string, method: string, url: string, body?: unknown) {
  const res = await fetch(base + url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return {
    status: res.status,
    body: (await res.json()) as Record<string, unknown> & { error?: { code: string; message: string } },
  };
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

test("items acknowledged with 2xx survive kill -9 and a restart; a second server on the directory is refused", async () => {
  const first = await server();
  assert.equal(
    (await call(first.base, "POST", "/v1/collections", { name: "durable", store_images: true })).status,
    201,
  );
  const image = (await solid(20, 20, "#c03020")).toString("base64");
  const acked: string[] = [];
  for (let round = 0; round < 4; round++) {
    const items = Array.from({ length: 5 }, (_, i) => ({
      id: `r${round}-${i}`,
      ...(i % 2 ? { text: `text ${round} ${i}` } : { image }),
      metadata: { round, i },
    }));
    const res = await call(first.base, "PUT", "/v1/collections/durable/items", { items });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    acked.push(...items.map((x) => x.id));
  }
  // a second server on the same directory: its collection routes refuse (503) and say why; the first is unharmed
  const second = await server();
  const refused = await call(second.base, "GET", "/v1/collections");
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error!.code, "store_unavailable");
  assert.match(refused.body.error!.message, /in use by process \d+/);
  const ready = await call(second.base, "GET", "/readyz");
  assert.equal(ready.status, 200); // inference is ready; the store says why it is not
  assert.equal((ready.body.collections as { status: string }).status, "unavailable");
  await killed(second.child);

  await killed(first.child); // no drain, no close: what was acknowledged must already be on disk
  const again = await server();
  for (const id of acked) {
    const res = await call(again.base, "GET", `/v1/collections/durable/items/${id}`);
    assert.equal(res.status, 200, `${id}: ${JSON.stringify(res.body)}`);
  }
  const info = await call(again.base, "GET", "/v1/collections/durable");
  assert.equal(info.body.items, acked.length);
  const found = await call(again.base, "POST", "/v1/collections/durable/search", {
    text: "x",
    limit: 20,
    rerank: "itm",
    rerank_k: 20,
  });
  assert.equal(found.status, 200, JSON.stringify(found.body));
  assert.equal((found.body.results as unknown[]).length, 12); // the 12 image items (3 a round), re-ranked from kept tokens
  await killed(again.child);
});

test("an import cut off by kill -9 keeps its committed batches, and its job says it was interrupted", async () => {
  const first = await server();
  assert.equal((await call(first.base, "POST", "/v1/collections", { name: "cut" })).status, 201);
  const image = (await solid(20, 20, "#3020c0")).toString("base64");
  let stop = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      // lines until the server has been killed under the stream
      await new Promise((r) => setTimeout(r, 20));
      if (stop) return ctl.close();
      ctl.enqueue(new TextEncoder().encode(JSON.stringify({ id: `c${Math.random()}`, image }) + "\n"));
    },
  });
  const put = fetch(`${first.base}/v1/collections/cut/imports/job1`, {
    method: "PUT",
    headers: { "content-type": "application/x-ndjson" },
    body,
    duplex: "half",
  } as RequestInit).catch(() => null);
  let committed = 0;
  for (let i = 0; i < 400 && committed < 64; i++) {
    await new Promise((r) => setTimeout(r, 50));
    committed = ((await call(first.base, "GET", "/v1/collections/cut/jobs/job1")).body.succeeded as number) ?? 0;
  }
  assert.ok(committed >= 64, `committed ${committed}`);
  await killed(first.child);
  stop = true;
  void put; // its socket died with the server: the answer never comes, the promise settles however it may
  const again = await server();
  const job = await call(again.base, "GET", "/v1/collections/cut/jobs/job1");
  assert.equal(job.body.status, "failed");
  assert.equal((job.body.errors as { code: string }[]).at(-1)!.code, "interrupted");
  const info = await call(again.base, "GET", "/v1/collections/cut");
  assert.ok((info.body.items as number) >= (job.body.succeeded as number));
  assert.equal(job.body.received, job.body.succeeded); // every line up to `received` is stored
  await killed(again.child);
});
