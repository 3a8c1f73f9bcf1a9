// The inference worker threads: spawned and initialised at boot, one job at a time each (the scheduler in
// batching/ decides which). A worker is lost when it exits (an exception outside a run, terminate()) or when one of
// its graph runs outlives STUCK_RUN_MS (the watchdog terminates it): the jobs it held are rejected with WorkerLost
// (the batcher runs their rows again, once) and a new worker takes its place at once (a start that fails is tried
// again, 1 s, 2 s, ... up to 30 s later). `healthy()` is what /healthz reports.
import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import { WorkerLost, type LossReason } from "../errors.js";
import {
  GRAPH_NAMES,
  runStamp,
  STAMP_BYTES,
  type Fault,
  type FaultReport,
  type InitMessage,
  type InitReply,
  type JobMessage,
  type JobReply,
  type RowReport,
  type TokenReport,
} from "./protocol.js";

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
type Pending = {
  resolve: (r: JobReply) => void;
  reject: (e: Error) => void;
  onReport?: (t: Report) => void;
  model: string | null; // the job's model, if it has one (what a loss is labelled with)
};

interface Slot {
  worker: Worker;
  epoch: number; // unique per worker started: rows a lost worker kept are known gone by it
  alive: boolean; // initialised and not lost
  lost: boolean; // exited, or stuck and terminated (its late messages are ignored)
  errored: boolean; // it threw outside a run (an uncaught exception) before it exited
  stamp: ReturnType<typeof runStamp>; // its graph run in progress (written by the worker)
  pending: Map<number, Pending>;
}

/** A worker was lost: why, and the model of what it was running ("none": it was idle). */
export interface LossEvent {
  worker: number;
  reason: LossReason;
  model: string;
}

/** The watchdog found a graph run older than STUCK_RUN_MS. */
export interface StuckEvent {
  worker: number;
  model: string;
  graph: string;
  batch: number;
  ms: number;
}

export interface PoolOptions {
  stuckRunMs: number; // STUCK_RUN_MS
  faultInjection: boolean; // FAULT_INJECTION (tests only)
}

/**
 * Events: "idle" (worker index: started, takes work), "lost" (LossEvent), "stuck" (StuckEvent), "start_failed"
 * (worker index: a new worker could not start; tried again later), "fault" (tests: an injected fault fires).
 */
export class WorkerPool extends EventEmitter {
  private slots: Slot[] = [];
  private nextId = 1;
  private nextHandle = 1;
  private started = 0; // workers started so far (each one's epoch)
  private failedStarts: number[] = []; // consecutive failed starts per slot (the retry's backoff)
  private futureFaults: { index: number; fault: Fault; spawn: number }[] = [];
  private timers = new Set<NodeJS.Timeout>();
  /** Bytes of typed arrays posted to workers and received from them (tests and benchmarks read it). */
  readonly posted = { toWorkers: 0, fromWorkers: 0 };
  private closing = false;
  provider: "cpu" | "cuda" = "cpu";

  constructor(
    private readonly size: number,
    private readonly init: Omit<InitMessage, "type" | "stamp" | "faults">,
    private readonly log: { warn: (o: object, m: string) => void; error: (o: object, m: string) => void },
    private readonly opts: PoolOptions = { stuckRunMs: 120_000, faultInjection: false },
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
    // the watchdog: a few looks per STUCK_RUN_MS, at most one a second
    const every = Math.max(10, Math.min(1000, this.opts.stuckRunMs / 4));
    this.keep(setInterval(() => this.watch(), every));
  }

  private spawn(index: number, reportWarning: boolean): Promise<void> {
    const stamp = new SharedArrayBuffer(STAMP_BYTES);
    const faults = this.opts.faultInjection ? this.faultsForSpawn(index) : null;
    const worker = new Worker(WORKER_URL);
    const slot: Slot = {
      worker,
      epoch: ++this.started,
      alive: false,
      lost: false,
      errored: false,
      stamp: runStamp(stamp),
      pending: new Map(),
    };
    this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on("message", (msg: InitReply | JobReply | Report | FaultReport) => {
        if (slot.lost) return; // its jobs were answered when it was lost
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
        if (msg.type === "fault") {
          this.emit("fault", { worker: index, ...msg });
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
        slot.errored = true;
        this.log.error({ err, worker: index }, "inference worker failed");
        if (!ready) reject(err);
      });
      worker.on("exit", (code) => {
        if (!ready) reject(new Error(`inference worker ${index} exited during start (code ${code})`));
        else this.lose(index, slot, slot.errored ? "error" : "exit", `inference worker ${index} exited (code ${code})`);
      });
      worker.postMessage({ type: "init", ...this.init, stamp, faults } satisfies InitMessage);
    });
  }

  /**
   * Worker `index` is lost: its jobs are rejected with WorkerLost (their rows run again elsewhere), and a new worker
   * takes its place.
   */
  private lose(index: number, slot: Slot, reason: LossReason, why: string): void {
    if (slot.lost) return;
    const model = this.running(slot)?.model ?? [...slot.pending.values()].find((p) => p.model)?.model ?? "none";
    slot.lost = true;
    slot.alive = false;
    slot.worker.unref(); // a thread hung in native code may outlive terminate(): it must not hold the process
    // closing: rows are not run again (nothing would run them)
    const err = this.closing ? new Error("the inference workers are closing") : new WorkerLost(index, reason, why);
    for (const p of slot.pending.values()) p.reject(err);
    slot.pending.clear();
    if (this.closing) return;
    this.log.error({ worker: index, reason, model }, `${why}; starting a new one`);
    this.emit("lost", { worker: index, reason, model } satisfies LossEvent);
    void this.restart(index);
  }

  /** Starts a new worker in slot `index`, trying again after 1 s, 2 s, 4 s, ... (at most 30 s) while it fails. */
  private async restart(index: number): Promise<void> {
    while (!this.closing) {
      try {
        await this.spawn(index, false);
        this.failedStarts[index] = 0;
        return;
      } catch (err) {
        const slot = this.slots[index];
        slot.lost = true;
        void slot.worker.terminate();
        const n = (this.failedStarts[index] = (this.failedStarts[index] ?? 0) + 1);
        const delay = Math.min(30_000, 1000 * 2 ** (n - 1));
        if (this.closing) return;
        this.log.error({ err, worker: index, retryInMs: delay }, "could not start a new inference worker");
        this.emit("start_failed", index);
        await new Promise((r) => this.keep(setTimeout(r, delay)));
      }
    }
  }

  /** The watchdog: a worker whose graph run is older than STUCK_RUN_MS is stuck: it is terminated and replaced. */
  private watch(): void {
    const now = performance.timeOrigin + performance.now();
    this.slots.forEach((slot, index) => {
      const run = slot?.alive ? this.running(slot) : null;
      if (!run || now - run.since <= this.opts.stuckRunMs) return;
      const ms = Math.round(now - run.since);
      const event: StuckEvent = { worker: index, model: run.model, graph: run.graph, batch: run.batch, ms };
      this.log.error(
        { ...event, stuckRunMs: this.opts.stuckRunMs },
        `inference worker ${index} is stuck: a ${run.graph} run of ${run.batch} rows (model ${run.model}) has run ` +
          `${ms} ms, over STUCK_RUN_MS; terminating it`,
      );
      this.emit("stuck", event);
      this.lose(index, slot, "stuck", `inference worker ${index} hung in a ${run.graph} run of ${run.batch} rows`);
      void slot.worker.terminate(); // ends a JavaScript hang at once; a native one when it returns to JavaScript
    });
  }

  /** The graph run `slot`'s worker has in progress (its stamp), or null. */
  private running(slot: Slot): { since: number; model: string; graph: string; batch: number } | null {
    const since = Number(Atomics.load(slot.stamp.since, 0));
    if (since === 0) return null;
    const [m, g, batch] = slot.stamp.what;
    return { since, model: this.init.models[m]?.name ?? "none", graph: GRAPH_NAMES[g] ?? "unknown", batch };
  }

  /** Some worker is running (initialised, not lost): what /healthz reports. */
  healthy(): boolean {
    return this.slots.some((s) => s?.alive);
  }

  usable(index: number): boolean {
    return this.slots[index]?.alive === true;
  }

  /** Which worker slot `index` holds now: changes when it is lost (what rows it kept were lost with it). */
  epoch(index: number): number {
    const s = this.slots[index];
    return s && !s.lost ? s.epoch : -1;
  }

  /**
   * Runs one job on worker `index`; the caller (the scheduler) makes sure it is idle. `onReport` hears a generate
   * job's token and row reports as they come, all before the job's reply. `onStart` gets the job's id (what `join`
   * names). Rejects with WorkerLost if the worker is lost before it replies.
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
    const model = "model" in job ? job.model : null;
    return new Promise<JobReply>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject, onReport, model });
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

  /**
   * Tests only (FAULT_INJECTION=true; no route calls it): arms `fault` in worker `index` now (`spawn` 0), or in the
   * `spawn`-th worker started in its place.
   */
  inject(index: number, fault: Fault, spawn = 0): void {
    if (!this.opts.faultInjection) throw new Error("fault injection is off (FAULT_INJECTION=false)");
    if (spawn > 0) this.futureFaults.push({ index, fault, spawn });
    else this.slots[index].worker.postMessage({ type: "inject", fault } satisfies JobMessage);
  }

  /** The faults armed for the worker about to start in slot `index`. */
  private faultsForSpawn(index: number): Fault[] {
    const now = this.futureFaults.filter((f) => f.index === index && --f.spawn === 0);
    this.futureFaults = this.futureFaults.filter((f) => !now.includes(f));
    return now.map((f) => f.fault);
  }

  /** Ends worker `index` from outside, as a crash would (tests): it is lost, its rows run again, a new one starts. */
  terminate(index: number): Promise<number> {
    return this.slots[index].worker.terminate();
  }

  private keep(t: NodeJS.Timeout): void {
    t.unref();
    this.timers.add(t);
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearTimeout(t);
    // a lost worker is not waited for: one hung in native code never ends
    await Promise.all(this.slots.filter((s) => s && !s.lost).map((s) => s.worker.terminate()));
  }
}

/** Bytes of the typed arrays in a message (what structured cloning copies or transfers). */
function arrayBytes(x: unknown): number {
  if (ArrayBuffer.isView(x)) return x.buffer instanceof SharedArrayBuffer ? 0 : x.byteLength;
  if (Array.isArray(x)) return x.reduce((n: number, y) => n + arrayBytes(y), 0);
  if (x && typeof x === "object") return Object.values(x).reduce((n: number, y) => n + arrayBytes(y), 0);
  return 0;
}
