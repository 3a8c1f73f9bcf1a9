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

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(
    `${signal} to \`npm start\`: the server drains and exits 0, npm exits 0, no server left`,
    { timeout: 120_000 },
    async () => {
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
      const exit = new Promise<number | null>((r) => npm.on("exit", (code) => r(code)));
      const lines: any[] = [];
      let buf = "";
      npm.stdout!.on("data", (d) => {
        buf += d;
        const parts = buf.split("\n");
        buf = parts.pop()!;
        for (const l of parts) if (l.startsWith("{")) lines.push(JSON.parse(l));
      });
      let stderr = "";
      npm.stderr!.on("data", (d) => (stderr += d));
      await until(() => lines.some((l) => /Server listening/.test(l.msg)) || npm.exitCode !== null, "listening");
      const listening = lines.find((l) => /Server listening/.test(l.msg));
      assert.ok(listening, `the server did not start: ${stderr}`);
      const port = Number(/:(\d+)$/.exec(listening.msg)![1]);
      const server: number = listening.pid; // pino's pid: the server's process
      assert.notEqual(server, npm.pid, "the server runs in its own process under npm");
      assert.ok(await accepts(port));
      npm.kill(signal);
      assert.equal(await exit, 0, stderr);
      const drain = lines.find((l) => l.msg === "draining");
      assert.equal(drain?.signal, signal, "the server got the signal and drained");
      assert.ok(lines.some((l) => l.msg === "stopped"));
      assert.equal(exists(server), false, `server process ${server} is gone`);
      assert.equal(await accepts(port), false, `port ${port} is free`);
    },
  );
}
