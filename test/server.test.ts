// The process: src/server.ts started as `npm start` would, on loopback. Boot errors are one clear line; SIGTERM
// under load answers every admitted request, refuses new work with 503, then exits 0.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { FIXTURES, ROOT } from "./helpers/app.js";
import { solid } from "./helpers/images.js";

interface Proc {
  child: ChildProcess;
  stdout: string[];
  stderr: string;
  exit: Promise<number | null>;
}

function start(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, ["--import", "tsx", "src/server.ts", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", WORKERS: "1", THREADS_PER_WORKER: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const p: Proc = { child, stdout: [], stderr: "", exit: new Promise((r) => child.on("exit", (code) => r(code))) };
  let buf = "";
  child.stdout!.on("data", (d) => {
    buf += d;
    const lines = buf.split("\n");
    buf = lines.pop()!;
    p.stdout.push(...lines);
  });
  child.stderr!.on("data", (d) => (p.stderr += d));
  return p;
}

async function listening(p: Proc, timeoutMs = 30_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    for (const line of p.stdout) {
      const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) return Number(m[1]);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not start: ${p.stderr} ${p.stdout.join("\n")}`);
}

function call(
  port: number,
  method: string,
  url: string,
  body?: unknown,
  agent?: http.Agent,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path: url,
        agent,
        headers: data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {},
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

test("no bundle in MODELS_DIR: exits 1 with one line saying so and how to make one", async () => {
  const empty = mkdtempSync(path.join(os.tmpdir(), "no-models-"));
  const p = start([], { MODELS_DIR: empty });
  assert.equal(await p.exit, 1);
  const lines = p.stderr.trim().split("\n");
  assert.equal(lines.length, 1, p.stderr);
  assert.match(lines[0], /^error: .* has no model bundle .*dlip export/);
});

test("bad configuration: exits 2 naming the variable", async () => {
  const p = start([], { MODELS_DIR: FIXTURES, MAX_BATCH_SIZE: "lots" });
  assert.equal(await p.exit, 2);
  assert.match(p.stderr, /^error: MAX_BATCH_SIZE must be a non-negative integer, got 'lots'/);
  const r = start([], { MODELS_DIR: FIXTURES, PRECISION: "int4" });
  assert.equal(await r.exit, 2);
  assert.match(r.stderr, /^error: PRECISION must be one of fp32, int8, fp16, got 'int4'/);
  const q = start(["--no-such-flag"], { MODELS_DIR: FIXTURES });
  assert.equal(await q.exit, 2);
  assert.match(q.stderr, /^error: .*no-such-flag/);
});

test("DEVICE=cuda without the CUDA provider refuses to start; DEVICE=auto falls back to CPU with a warning", async () => {
  // this machine has no CUDA provider library (npm ci skips it: .npmrc); unit/cuda.test.ts covers the other causes
  const p = start([], { MODELS_DIR: FIXTURES, DEVICE: "cuda" });
  assert.equal(await p.exit, 1);
  const lines = p.stderr.trim().split("\n");
  assert.equal(lines.length, 1, p.stderr);
  assert.match(
    lines[0],
    /^error: could not start: DEVICE=cuda but onnxruntime-node's CUDA provider library \(libonnxruntime_providers_cuda\.so\) is not installed: .*--onnxruntime-node-install=cuda12/,
  );
  const q = start([], { MODELS_DIR: FIXTURES, DEVICE: "auto" });
  const port = await listening(q);
  const warning = q.stdout.map((l) => JSON.parse(l)).find((l) => l.level === 40);
  assert.match(
    warning.msg,
    /^DEVICE=auto: onnxruntime-node's CUDA provider library .* is not installed.*; using the CPU provider$/,
  );
  const models = JSON.parse((await call(port, "GET", "/v1/models")).body);
  assert.equal(models.data[0].provider, "cpu");
  const metrics = (await call(port, "GET", "/metrics")).body;
  assert.match(
    metrics,
    /^dlip_model_info\{model="micro",version="[^"]+",provider="cpu",precision="fp32"\} 1$/m,
    "the provider in use",
  );
  q.child.kill("SIGTERM");
  assert.equal(await q.exit, 0);
});

test("SIGTERM under load: every admitted request gets a complete answer, new work gets 503, exit 0", async () => {
  const p = start([], { MODELS_DIR: FIXTURES, MAX_BATCH_SIZE: "1", DRAIN_MS: "20000", LOG_LEVEL: "info" });
  const port = await listening(p);
  const img = (await solid(48, 48)).toString("base64");
  const body = { images: Array.from({ length: 8 }, () => img), num_beams: 8 };
  const N = 12;
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
  assert.equal((await call(port, "GET", "/readyz", undefined, keepAlive)).status, 200);
  const admitted = Array.from({ length: N }, () => call(port, "POST", "/v1/captions", body));
  // wait until the server has admitted all of them (dlip_inflight_requests counts them)
  for (let i = 0; i < 200; i++) {
    const m = (await call(port, "GET", "/metrics")).body;
    const inflight = Number(/^dlip_inflight_requests (\d+)/m.exec(m)?.[1] ?? 0);
    if (inflight >= N) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  p.child.kill("SIGTERM");
  // the server has taken the signal once it logs "draining" (a fixed pause is too short on a busy machine)
  for (let i = 0; i < 500 && !p.stdout.some((l) => /"msg":"draining"/.test(l)); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const ready = await call(port, "GET", "/readyz", undefined, keepAlive);
  const late = await call(port, "POST", "/v1/embeddings", { texts: ["x"] }, keepAlive);
  const results = await Promise.all(admitted);
  assert.equal(await p.exit, 0);
  for (const r of results) {
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).captions.length, 8);
  }
  assert.equal(ready.status, 503, "readiness turned 503 during the drain");
  assert.equal(JSON.parse(ready.body).error.code, "draining");
  assert.equal(late.status, 503, "no new work admitted");
  const drain = p.stdout.map((l) => JSON.parse(l)).find((l) => l.msg === "draining");
  assert.ok(drain.inflight > 0, `SIGTERM came with ${drain.inflight} requests in flight`);
  assert.ok(p.stdout.some((l) => /"msg":"stopped"/.test(l)));
  const logged = p.stdout.map((l) => JSON.parse(l)).find((l) => l.req?.url === "/v1/captions");
  assert.ok(logged?.request_id, "logs are JSON with a request id");
  keepAlive.destroy();
});
