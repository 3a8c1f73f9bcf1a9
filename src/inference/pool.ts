// The inference worker threads: spawned and initialised at boot, one job at a time each (the scheduler in
// batching/ decides which), replaced when one dies. `alive()` is what /healthz reports.
import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import type { InitMessage, InitReply, JobMessage, JobReply, RowReport, TokenReport } from "./protocol.js";

// Built, the worker is worker.js beside this file. Under tsx (tests, development) it is worker.ts, and a worker
// thread does not inherit tsx's loader: a one-line bootstrap registers it in the thread, then imports the worker.
function workerUrl(): URL {
  if (!import.meta.url.endsWith(".ts")) return new URL("./worker.js", import.meta.url);
  const api = import.meta.resolve("tsx/esm/api");
  const entry = new URL("./worker.ts", import.meta.url).href;
  const src = `import { register } from ${JSON.stringify(api)}; register(); await import(${JSON.stringify(entry)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(src)}`);
}
const WORKER_URL = workerUrl();

type Job = JobMessage extends infer M ? (M extends JobMessage ? Omit<M, "id"> : never) : never;
export type Report = TokenReport | RowReport;
type Pending = { resolve: (r: JobReply) => void; reject: (e: Error) => void; onReport?: (t: Report) => void };

interface Slot {
  worker: Worker;
  alive: boolean; // initialised and not exited
  pending: Map<number, Pending>;
}

export class WorkerPool extends EventEmitter {
  private slots: Slot[] = [];
  private nextId = 1;
  private nextHandle = 1;
  /** Bytes of typed arrays posted to workers and received from them (tests and benchmarks read it). */
  readonly posted = { toWorkers: 0, fromWorkers: 0 };
  private closing = false;
  provider: "cpu" | "cuda" = "cpu";

  constructor(
    private readonly size: number,
    private readonly init: Omit<InitMessage, "type">,
    private readonly log: { warn: (o: object, m: string) => void; error: (o: object, m: string) => void },
  ) {
    super();
  }

  get count(): number {
    return this.size;
  }

  /** Starts every worker and waits for their sessions (rejects with the first init error: bad bundle, no CUDA). */
  async start(): Promise<void> {
    const inits = Array.from({ length: this.size }, (_, i) => this.spawn(i, i === 0));
    try {
      await Promise.all(inits);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private spawn(index: number, reportWarning: boolean): Promise<void> {
    const worker = new Worker(WORKER_URL);
    const slot: Slot = { worker, alive: false, pending: new Map() };
    this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on("message", (msg: InitReply | JobReply | Report) => {
        this.posted.fromWorkers += arrayBytes(msg);
        if (msg.type === "ready") {
          ready = true;
          slot.alive = true;
          this.provider = msg.provider;
          if (msg.warning && reportWarning) this.log.warn({ device: this.init.device }, msg.warning);
          resolve();
          this.emit("idle", index);
          return;
        }
        if (msg.type === "init_error") {
          reject(new Error(msg.message));
          return;
        }
        const p = slot.pending.get(msg.id);
        if (!p) return;
        if (msg.type === "token" || msg.type === "row") {
          p.onReport?.(msg); // the job goes on
          return;
        }
        slot.pending.delete(msg.id);
        if (msg.type === "error") p.reject(new Error(msg.message));
        else p.resolve(msg);
      });
      worker.on("error", (err) => {
        this.log.error({ err, worker: index }, "inference worker failed");
        if (!ready) reject(err);
      });
      worker.on("exit", (code) => {
        slot.alive = false;
        for (const p of slot.pending.values()) p.reject(new Error(`inference worker ${index} exited (code ${code})`));
        slot.pending.clear();
        if (!this.closing && ready) {
          // a crashed worker is replaced; /healthz reports unhealthy until the new one is ready
          this.log.error({ worker: index, code }, "inference worker exited; starting a new one");
          this.spawn(index, false).catch((err) =>
            this.log.error({ err, worker: index }, "could not restart inference worker"),
          );
        } else if (!ready) reject(new Error(`inference worker ${index} exited during start (code ${code})`));
      });
      worker.postMessage({ type: "init", ...this.init } satisfies InitMessage);
    });
  }

  /** Every worker is running (none exited or restarting). */
  alive(): boolean {
    return this.slots.length === this.size && this.slots.every((s) => s.alive);
  }

  usable(index: number): boolean {
    return this.slots[index]?.alive === true;
  }

  /**
   * Runs one job on worker `index`; the caller (the scheduler) makes sure it is idle. `onReport` hears a generate
   * job's token and row reports as they come, all before the job's reply. `onStart` gets the job's id (what `join`
   * names).
   */
  run(
    index: number,
    job: Job,
    transfer: ArrayBuffer[] = [],
    onReport?: (t: Report) => void,
    onStart?: (id: number) => void,
  ): Promise<JobReply> {
    const slot = this.slots[index];
    if (!slot?.alive) return Promise.reject(new Error(`inference worker ${index} is not running`));
    const id = this.nextId++;
    onStart?.(id);
    return new Promise<JobReply>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject, onReport });
      const msg = { ...job, id } as JobMessage;
      this.posted.toWorkers += arrayBytes(msg);
      slot.worker.postMessage(msg, transfer);
    });
  }

  /** Sends rows to generate job `id` running on worker `index` (no reply: its `generated` reply lists the joins). */
  join(index: number, msg: Extract<JobMessage, { type: "join" }>, transfer: ArrayBuffer[] = []): void {
    this.posted.toWorkers += arrayBytes(msg);
    this.slots[index]?.worker.postMessage(msg, transfer);
  }

  /** Handles for rows a worker is to keep: unique for the pool's life (a restarted worker never reuses one). */
  handles(n: number): number[] {
    return Array.from({ length: n }, () => this.nextHandle++);
  }

  /** Drops kept rows on worker `index` (their request ended without a graph reading them). */
  release(index: number, handles: number[]): void {
    if (handles.length) this.slots[index]?.worker.postMessage({ type: "release", handles } satisfies JobMessage);
  }

  /** Rows worker `index` keeps now. */
  async stored(index: number): Promise<number> {
    const reply = await this.run(index, { type: "stored" });
    return (reply as Extract<JobReply, { type: "done" }>).stored ?? 0;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.filter(Boolean).map((s) => s.worker.terminate()));
  }
}

/** Bytes of the typed arrays in a message (what structured cloning copies or transfers). */
function arrayBytes(x: unknown): number {
  if (ArrayBuffer.isView(x)) return x.buffer instanceof SharedArrayBuffer ? 0 : x.byteLength;
  if (Array.isArray(x)) return x.reduce((n: number, y) => n + arrayBytes(y), 0);
  if (x && typeof x === "object") return Object.values(x).reduce((n: number, y) => n + arrayBytes(y), 0);
  return 0;
}
