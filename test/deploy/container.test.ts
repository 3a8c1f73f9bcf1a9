// The server started the way the image starts it, without a Docker engine: the compiled JavaScript laid out as in
// /app (dist/, package.json, the bundle contract, node_modules, a read-only models/ holding the micro fixture
// bundle), the target's ENTRYPOINT + CMD run from its WORKDIR with its ENV, as its non-root USER where this test
// runs as root. It gets ready, captions an image, and exits 0 on SIGTERM. Only HOST (loopback), PORT (a free one) and THREADS_PER_WORKER
// (this machine's 2 cores) differ from the image's environment; tini is used where it is installed
// (apt-get install tini), else the command after its `--` runs directly.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { MICRO, ROOT } from "../helpers/app.js";
import { containerSpec, parseDockerfile } from "../helpers/dockerfile.js";
import { solid } from "../helpers/images.js";

const stages = parseDockerfile(path.join(ROOT, "Dockerfile"));
let app: string; // the image's WORKDIR, here

/** Where the image's VOLUME (the embedded collections store's, /app/data) lies in this /app. */
function dataDir(spec: { workdir: string }): string {
  return path.join(app, path.relative("/app", path.posix.resolve(spec.workdir, "data")));
}

/** Every file under dir with its size and modification time, but the store's volume's: what the server must leave
 * as it found. */
function snapshot(dir: string): string[] {
  const volume = dataDir(containerSpec(stages, "cpu"));
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isSymbolicLink() && !`${path.join(e.parentPath, e.name)}/`.startsWith(`${volume}/`))
    .map((e) => {
      const p = path.join(e.parentPath, e.name);
      const s = statSync(p);
      return `${path.relative(dir, p)} ${s.size} ${s.mtimeMs} ${(s.mode & 0o777).toString(8)}`;
    })
    .sort();
}

function setMode(dir: string, dirMode: number, fileMode: number): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) setMode(p, dirMode, fileMode);
    else chmodSync(p, fileMode);
  }
  chmodSync(dir, dirMode);
}

before(() => {
  const root = mkdtempSync(path.join(os.tmpdir(), "dlip-image-"));
  chmodSync(root, 0o755); // the non-root user must reach /app
  app = path.join(root, "app");
  // the build stage's `npm run build`, into this /app
  execFileSync(
    process.execPath,
    [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json", "--outDir", `${app}/dist`],
    { cwd: ROOT, stdio: "inherit" },
  );
  // the target's COPYs from the build context (package.json, the bundle contract, static/); models/ gets the micro
  // fixture
  for (const ins of stages.find((s) => s.name === "cpu")!.instructions) {
    if (ins.op !== "COPY" || ins.args.startsWith("--from=")) continue;
    const sources = ins.args.split(/\s+/);
    const dest = sources.pop()!;
    for (const src of sources.filter((x) => x !== "models")) {
      const target = dest.endsWith("/") ? path.join(app, dest, path.basename(src)) : path.join(app, dest);
      cpSync(path.join(ROOT, src), target, { recursive: true });
    }
  }
  symlinkSync(path.join(ROOT, "node_modules"), path.join(app, "node_modules"), "dir");
  // the image's RUN mkdir + chown of the embedded store's VOLUME
  const spec = containerSpec(stages, "cpu");
  mkdirSync(dataDir(spec));
  const [uid, gid] = (spec.user ?? "").split(":").map(Number);
  if (process.getuid?.() === 0) chownSync(dataDir(spec), uid, gid);
  cpSync(MICRO, path.join(app, "models/micro"), { recursive: true });
  setMode(path.join(app, "models"), 0o555, 0o444);
  setMode(path.join(app, "dist"), 0o755, 0o644);
});

after(() => {
  if (!app) return;
  setMode(path.join(app, "models"), 0o755, 0o644);
  rmSync(path.dirname(app), { recursive: true, force: true });
});

/** Whether uid:gid can run node and read the app (a checkout under a private home folder would not let it). */
function canRunAs(uid: number, gid: number): boolean {
  const files = [path.join(app, "dist/server.js"), path.join(app, "node_modules/fastify/package.json")];
  const check =
    "for (const f of process.argv.slice(1)) require('node:fs').accessSync(f, require('node:fs').constants.R_OK)";
  const r = spawnSync(process.execPath, ["-e", check, ...files], { uid, gid, stdio: "ignore" });
  if (r.status !== 0) console.log(`# ${uid}:${gid} cannot read the checkout; the server runs as this test's user`);
  return r.status === 0;
}

interface Started {
  port: number;
  logs: () => Record<string, unknown>[];
  stderr: () => string;
  exit: Promise<number | null>;
  kill: (signal: NodeJS.Signals) => void;
}

async function startLikeTheImage(target: string): Promise<Started> {
  const spec = containerSpec(stages, target);
  const [init, ...rest] = spec.argv;
  // tini -- node dist/server.js: keep tini where this machine has it
  const argv = existsSync(init) ? spec.argv : rest.slice(rest.indexOf("--") + 1);
  const cwd = path.join(app, path.relative("/app", spec.workdir));
  const [uid, gid] = (spec.user ?? "").split(":").map(Number);
  const asUser = process.getuid?.() === 0 && canRunAs(uid, gid);
  const child = spawn(argv[0], argv.slice(1), {
    cwd,
    env: {
      PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`, // the image's node first
      ...spec.env,
      HOST: "127.0.0.1",
      PORT: "0",
      THREADS_PER_WORKER: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
    ...(asUser ? { uid, gid } : {}), // the image's USER
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exit = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const logs = () =>
    out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const end = Date.now() + 60_000;
  while (Date.now() < end) {
    const listening = logs().find((l) => typeof l.msg === "string" && l.msg.startsWith("Server listening"));
    if (listening) {
      const port = Number(/:(\d+)$/.exec(listening.msg as string)![1]);
      return { port, logs, stderr: () => err, exit, kill: (s) => child.kill(s) };
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`${target}: the server did not start\n${err}\n${out}`);
}

function get(port: number, url: string, body?: unknown): Promise<{ status: number; body: string }> {
  return fetch(`http://127.0.0.1:${port}${url}`, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));
}

async function readyWithin(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while ((await get(port, "/readyz")).status !== 200) {
    assert.ok(Date.now() < end, "ready in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const target of ["cpu", "gpu"]) {
  test(`${target} image command: ready, a caption, models left untouched, exit 0 on SIGTERM`, async () => {
    const before = snapshot(app);
    const s = await startLikeTheImage(target);
    await readyWithin(s.port, 10_000);
    const img = (await solid(40, 40)).toString("base64");
    const res = await get(s.port, "/v1/captions", { images: [img], max_tokens: 5 });
    assert.equal(res.status, 200, res.body);
    const caption = JSON.parse(res.body).captions[0];
    assert.equal(typeof caption.text, "string");
    assert.ok(caption.tokens >= 1);
    // the playground page and its script, from the image's static/ (dist/routes/ reads them two folders up)
    for (const url of ["/", "/playground/playground.js"]) assert.equal((await get(s.port, url)).status, 200, url);
    const metrics = (await get(s.port, "/metrics")).body;
    // on this machine (no CUDA) both targets serve on the CPU; the gpu target's DEVICE=auto says so
    assert.match(metrics, /^dlip_model_info\{model="micro",version="[^"]+",provider="cpu",precision="fp32"\} 1$/m);
    if (target === "gpu") {
      const warning = s.logs().find((l) => l.level === 40);
      assert.match(String(warning?.msg), /^DEVICE=auto: .*CUDA provider.*; using the CPU provider$/);
    }
    s.kill("SIGTERM");
    assert.equal(await s.exit, 0, s.stderr());
    assert.ok(
      s.logs().some((l) => l.msg === "stopped"),
      "drained and stopped",
    );
    // tini warns when it is not PID 1, which it is only in a container
    const stderr = s.stderr().replace(/^\[WARN +tini \(\d+\)\] Tini is not running as PID 1[^]*?PID 1\.\n/, "");
    assert.equal(stderr, "", "nothing on stderr");
    assert.deepEqual(snapshot(app), before, "nothing written under /app but in the store's volume");
  });
}
