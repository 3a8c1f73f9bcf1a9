// The embedded implementation's driver: PGlite (PostgreSQL 18 in WASM, `@electric-sql/pglite`) with pgvector
// (`@electric-sql/pglite-pgvector`), persisted in COLLECTIONS_DATA_DIR, hosted in a worker thread (pglite-worker.ts).
// PGlite runs its queries synchronously in the thread that hosts it (elizaOS #16407): on the main thread an HNSW
// build or a scan would stall every HTTP request. A lock file keeps a second server on this host off the directory.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import type { Db, Row, Statement } from "./db.js";
import { StoreUnavailable } from "./store.js";

export type PgliteRequest =
  | { id: number; type: "query"; sql: string; params?: unknown[] }
  | { id: number; type: "tx"; statements: Statement[] }
  | { id: number; type: "close" };
export type PgliteReply =
  | { id: number; rows: Row[] }
  | { id: number; results: Row[][] }
  | { id: number; error: { message: string; code?: string } };

// as inference/pool.ts: built, the worker is pglite-worker.js beside this file; under tsx a bootstrap registers tsx
function workerUrl(): URL {
  if (!import.meta.url.endsWith(".ts")) return new URL("./pglite-worker.js", import.meta.url);
  const api = import.meta.resolve("tsx/esm/api");
  const entry = new URL("./pglite-worker.ts", import.meta.url).href;
  const src = `import { register } from ${JSON.stringify(api)}; register(); await import(${JSON.stringify(entry)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(src)}`);
}

class SqlError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

type Pending = { resolve: (r: PgliteReply) => void; reject: (e: Error) => void };

export class PgliteDb implements Db {
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private readonly lockFile: string;

  constructor(private readonly dataDir: string) {
    this.lockFile = path.join(dataDir, "dlip-server.lock");
  }

  /** Starts the worker (once; again after it died) and waits for PGlite to open the directory. */
  private start(): Promise<void> {
    if (this.closed) return Promise.reject(new StoreUnavailable("the collections store is closed"));
    if (this.ready) return this.ready;
    fs.mkdirSync(this.dataDir, { recursive: true });
    takeLock(this.lockFile);
    const worker = new Worker(workerUrl(), { workerData: { dataDir: path.join(this.dataDir, "pgdata") } });
    this.worker = worker;
    this.ready = new Promise<void>((resolve, reject) => {
      this.pending.set(0, {
        resolve: (r) => ("error" in r ? reject(new StoreUnavailable(`PGlite: ${r.error.message}`)) : resolve()),
        reject,
      });
    });
    this.ready.catch(() => {});
    worker.on("message", (r: PgliteReply) => {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      p?.resolve(r);
    });
    const died = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.ready = null; // the next call starts a fresh worker
      for (const p of this.pending.values()) p.reject(new StoreUnavailable(why));
      this.pending.clear();
    };
    worker.on("error", (err) => died(`the PGlite worker failed: ${err.message}`));
    worker.on("exit", (code) => died(`the PGlite worker exited (code ${code})`));
    return this.ready;
  }

  private async call(
    req: { type: "query"; sql: string; params?: unknown[] } | { type: "tx"; statements: Statement[] },
  ): Promise<PgliteReply> {
    await this.start();
    const id = this.nextId++;
    const reply = await new Promise<PgliteReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ ...req, id });
    });
    if ("error" in reply) throw new SqlError(reply.error.message, reply.error.code);
    return reply;
  }

  async query(sql: string, params?: unknown[]): Promise<Row[]> {
    const r = await this.call({ type: "query", sql, params });
    return "rows" in r ? r.rows : [];
  }

  async transaction(statements: Statement[]): Promise<Row[][]> {
    const r = await this.call({ type: "tx", statements });
    return "results" in r ? r.results : [];
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    if (worker && this.ready) {
      try {
        await this.ready;
        const id = this.nextId++;
        await new Promise<void>((resolve) => {
          this.pending.set(id, { resolve: () => resolve(), reject: () => resolve() });
          worker.postMessage({ type: "close", id });
        });
      } catch {
        // never opened: nothing to flush
      }
      await worker.terminate();
    }
    this.worker = null;
    fs.rmSync(this.lockFile, { force: true });
  }
}

/**
 * Takes the data directory's lock: refused while another live process on this host holds it (two PGlite instances
 * on one directory corrupt it); a lock left by a process that is gone (kill -9) is taken over. Hosts sharing one
 * volume are kept apart by the deployment (one replica, ReadWriteOnce), not here: a pid means nothing across hosts.
 */
function takeLock(file: string): void {
  const me = { host: os.hostname(), pid: process.pid };
  try {
    const held = JSON.parse(fs.readFileSync(file, "utf8")) as { host?: string; pid?: number };
    if (held.host === me.host && typeof held.pid === "number" && held.pid !== me.pid && alive(held.pid))
      throw new Error(
        `the collections data directory ${path.dirname(file)} is in use by process ${held.pid} on this host; ` +
          "give each server its own COLLECTIONS_DATA_DIR, or set DATABASE_URL to share one PostgreSQL",
      );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT" && !(err instanceof SyntaxError)) throw err;
  }
  fs.writeFileSync(file, JSON.stringify(me));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
