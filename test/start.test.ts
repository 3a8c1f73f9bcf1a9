// `npm start`, the README's command (build, then the server): SIGTERM or SIGINT sent to npm reaches the server, which
// drains and exits; npm exits with its code, and no server is left (its pid is gone, its port refuses connections).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { test } from "node:test";
import { FIXTURES, ROOT, until } from "./helpers/app.js";

/** Whether process `pid` exists. */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Whether something accepts connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/** `npm start` on the micro bundle, its JSON log lines parsed as they come. */
function npmStart() {
  const npm = spawn("npm", ["start"], {
    cwd: ROOT,
    env: {
      ...process.env,
      MODELS_DIR: FIXTURES,
      HOST: "127.0.0.1",
      PORT: "0",
      WORKERS: "1",
      THREADS_PER_WORKER: "1",
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { npm, lines: [] as any[], stderr: "", exit: new Promise<number | null>((r) => npm.on("exit", r)) };
  let buf = "";
  npm.stdout!.on("data", (d) => {
    buf += d;
    const parts = buf.split("\n");
    buf = parts.pop()!;
    for (const l of parts) if (l.startsWith("{")) out.lines.push(JSON.parse(l));
  });
  npm.stderr!.on("data", (d) => (out.stderr += d));
  return out;
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal} to \`npm start\`: the server drains and exits 0, npm exits 0, no server left`, async () => {
    const p = npmStart();
    const { npm, lines, exit } = p;
    let server: number | null = null;
    try {
      const up = () => lines.find((l) => /Server listening/.test(l.msg));
      await until(() => up() !== undefined || npm.exitCode !== null, "built and listening", 120_000);
      assert.ok(up(), `the server did not start: ${p.stderr}`);
      const port = Number(/:(\d+)$/.exec(up().msg)![1]);
      server = up().pid as number; // pino's pid: the server's process
      assert.notEqual(server, npm.pid, "the server runs in its own process under npm");
      assert.ok(await accepts(port));
      npm.kill(signal);
      assert.equal(await exit, 0, p.stderr);
      assert.equal(lines.find((l) => l.msg === "draining")?.signal, signal, "the server got the signal and drained");
      assert.ok(lines.some((l) => l.msg === "stopped"));
      assert.equal(exists(server), false, `server process ${server} is gone`);
      assert.equal(await accepts(port), false, `port ${port} is free`);
    } finally {
      // a failed check leaves nothing running either
      if (server !== null && exists(server)) process.kill(server, "SIGKILL");
      if (npm.exitCode === null && npm.signalCode === null) npm.kill("SIGKILL");
    }
  });
}
