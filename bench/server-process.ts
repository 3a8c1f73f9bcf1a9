// The server as users start it: `npm start` = build, then `node dist/server.js` with its environment. Here the
// build runs once (when dist/ is older than src/), then each server is spawned, timed from process start to the
// first 200 of /readyz, scraped through /metrics, and stopped with SIGTERM (its drain).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { parseProm, total, type Sample } from "./prom.js";
import { sleep } from "./timing.js";

export class ServerError extends Error {}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** `npm run build` (tsc -p tsconfig.build.json) when dist/server.js is missing or older than a file of src/. */
export function ensureBuilt(root: string, log: (s: string) => void): void {
  const entry = path.join(root, "dist/server.js");
  if (existsSync(entry) && statSync(entry).mtimeMs >= newestMtime(path.join(root, "src"))) return;
  log("building the server (tsc -p tsconfig.build.json, as npm start does)");
  const r = spawnSync(path.join(root, "node_modules/.bin/tsc"), ["-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
  if (r.status !== 0) throw new ServerError(`the server build failed (exit ${r.status})`);
}

/**
 * A MODELS_DIR holding the given bundles under the given names: a real directory per bundle (the server lists
 * directories) whose files link to the bundle's, and a copy of its manifest renamed when the name differs, so two
 * bundles that carry the same name (or the same bundle twice) can be served side by side.
 */
export function modelsDir(dir: string, bundles: Record<string, string>, rename: boolean): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, src] of Object.entries(bundles)) {
    const target = path.join(dir, name);
    mkdirSync(target);
    for (const f of readdirSync(src)) {
      if (f === "manifest.json") continue;
      symlinkSync(path.resolve(src, f), path.join(target, f));
    }
    const manifest = JSON.parse(readFileSync(path.join(src, "manifest.json"), "utf8")) as { name: string };
    if (rename) manifest.name = name;
    writeFileSync(path.join(target, "manifest.json"), JSON.stringify(manifest, null, 2));
  }
  return dir;
}

export interface ServerSpec {
  root: string;
  modelsDir: string;
  port: number;
  env?: Record<string, string>; // extra settings (MAX_BATCH_SIZE=1, DEFAULT_MODEL, ...)
  logFile: string; // the server's stdout and stderr
  nodeArgs?: string[]; // e.g. --cpu-prof
}

export class ServerProcess {
  private static running = new Set<ChildProcess>(); // servers started and not yet exited, for stopAll()
  private exited: Promise<number | null>;
  private constructor(
    readonly proc: ChildProcess,
    readonly url: string,
    readonly readyS: number, // process start to the first 200 of /readyz
    readonly spec: ServerSpec,
  ) {
    this.exited = new Promise((resolve) => {
      if (proc.exitCode !== null) resolve(proc.exitCode);
      else proc.once("exit", (code) => resolve(code));
    });
  }

  /** The environment the server was started with, beyond the shell's: what a reader needs to rerun it. */
  static settings(spec: ServerSpec): Record<string, string> {
    return { MODELS_DIR: spec.modelsDir, PORT: String(spec.port), HOST: "127.0.0.1", ...spec.env };
  }

  static async start(spec: ServerSpec): Promise<ServerProcess> {
    const out = openSync(spec.logFile, "a");
    const t0 = performance.now();
    const proc = spawn(process.execPath, [...(spec.nodeArgs ?? []), "dist/server.js"], {
      cwd: spec.root,
      env: { ...process.env, ...ServerProcess.settings(spec) },
      stdio: ["ignore", out, out],
    });
    closeSync(out);
    ServerProcess.running.add(proc);
    let exitCode: number | null | undefined;
    proc.once("exit", (code) => {
      exitCode = code ?? -1;
      ServerProcess.running.delete(proc);
    });
    const url = `http://127.0.0.1:${spec.port}`;
    const deadline = t0 + 120_000;
    for (;;) {
      if (exitCode !== undefined) {
        const tail = readFileSync(spec.logFile, "utf8").trim().split("\n").slice(-5).join("\n");
        throw new ServerError(`the server exited during start (code ${exitCode}):\n${tail}`);
      }
      try {
        const r = await fetch(`${url}/readyz`);
        await r.arrayBuffer();
        if (r.status === 200) return new ServerProcess(proc, url, (performance.now() - t0) / 1000, spec);
      } catch {
        /* not listening yet */
      }
      if (performance.now() > deadline) {
        proc.kill("SIGKILL");
        throw new ServerError(`the server was not ready within 120 s (log: ${spec.logFile})`);
      }
      await sleep(10);
    }
  }

  /** Kills every server still running (a run that failed half-way, or an interrupted benchmark). */
  static killAll(): void {
    for (const p of ServerProcess.running) p.kill("SIGKILL");
  }

  async scrape(): Promise<Sample[]> {
    const r = await fetch(`${this.url}/metrics`);
    return parseProm(await r.text());
  }

  /** Resident memory (MiB) as the server reports it (process_resident_memory_bytes). */
  async rssMb(): Promise<number> {
    return total(await this.scrape(), "dlip_process_resident_memory_bytes") / 2 ** 20;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null) this.proc.kill("SIGTERM");
    const code = await Promise.race([this.exited, sleep(30_000).then(() => "timeout" as const)]);
    if (code === "timeout") {
      this.proc.kill("SIGKILL");
      await this.exited;
    }
  }
}
