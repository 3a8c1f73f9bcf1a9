// Dynamic batching, the way Triton's dynamic batcher and text-embeddings-inference do it: one bounded queue per
// model and graph; whenever an inference worker is free, the queue whose oldest row has waited longest sends a
// batch: up to maxBatch rows, at once, or after its oldest row has waited maxDelayMs when the batch is not full.
// Rows gather while every worker is busy. Rows whose request was aborted (client left, deadline passed) leave the
// queue before inference; a request that does not fit in its queue is refused whole (429). Rows whose worker was lost
// mid-run (it exited, or hung) run again once, at the front of their queue; a row lost twice is answered 503.
import { ApiError, workerLost, WorkerLost, type LossReason } from "../errors.js";

/** Hears a request's rows waiting and running (ms; routes/timing.ts's StageTimer). */
export interface RowTimer {
  waited(ms: number): void;
  ran(start: number, end: number): void;
  finish(): void;
}

export interface BatchOptions {
  maxBatch: number;
  maxDelayMs: number;
  maxQueue: number;
}

export interface BatchEvents {
  /** a batch is about to run: its size and how long each row waited */
  onBatch?(key: BatchKey, size: number, waitsS: number[]): void;
  onRun?(key: BatchKey, seconds: number, ok: boolean): void;
  onDepth?(key: BatchKey, depth: number): void;
  /** rows of an aborted request left the queue before inference; reason: the abort reason's code */
  onDrop?(key: BatchKey, rows: number, reason: string): void;
  /** rows joined a running decode (continuous batching): how long each waited */
  onJoin?(key: BatchKey, waitsS: number[]): void;
  /** rows of a run whose worker was lost go back to their queue, to run again */
  onRerun?(key: BatchKey, rows: number, reason: LossReason): void;
}

export interface BatchKey {
  model: string;
  graph: string;
}

/**
 * Rows that must run on one worker (it keeps what they read: image tokens, question states): `affinity` names it
 * (null: any worker); such rows wait for that worker. `discard` gets the outputs of rows whose request had already
 * gone when their batch ended (so what they hold in a worker can be released).
 */
export interface RowPlacement<I, O> {
  affinity?: (input: I) => number | null;
  discard?: (output: O) => void;
  /** The input reads rows kept in a worker that was lost since (they are gone): `rebuild` it before it runs. */
  stale?: (input: I) => boolean;
  /**
   * The input made to run on any worker, what it read from a lost worker recomputed: for a stale row before it runs,
   * and for each row of a lost worker's run before it runs again. Rejects (the row's answer) where it cannot be.
   */
  rebuild?: (input: I, signal?: AbortSignal) => Promise<I>;
}

/** What runs a batch: `inputs` in order, one output per input, on worker `worker`. */
export type RunBatch<I, O> = (inputs: I[], worker: number) => Promise<O[]>;

export interface Item<I, O> {
  input: I;
  enqueuedAt: number; // ms (performance.now)
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
  settled: boolean;
  timer?: RowTimer;
  signal?: AbortSignal; // its request's
  reruns: number; // times it went back to the queue because its worker was lost (at most 1)
}

export class Batcher<I, O> {
  protected queue: Item<I, O>[] = [];

  constructor(
    readonly key: BatchKey,
    readonly opts: BatchOptions,
    readonly runBatch: RunBatch<I, O>,
    protected readonly scheduler: Scheduler,
    protected readonly placement: RowPlacement<I, O> = {},
  ) {
    scheduler.add(this as Batcher<unknown, unknown>);
  }

  /** Whether `item` may run on `worker` (any worker when undefined). */
  protected fits(item: Item<I, O>, worker?: number): boolean {
    if (worker === undefined || !this.placement.affinity) return true;
    const w = this.placement.affinity(item.input);
    return w === null || w === worker;
  }

  /**
   * Takes up to `n` queued rows that may run on `worker`, oldest first; stale ones (what they read was lost with a
   * worker) are rebuilt and queued again instead.
   */
  protected take(n: number, worker?: number): Item<I, O>[] {
    let taken: Item<I, O>[] = [];
    if (!this.placement.affinity || worker === undefined) taken = this.queue.splice(0, n);
    else this.queue = this.queue.filter((i) => !(taken.length < n && this.fits(i, worker) && taken.push(i)));
    const { stale } = this.placement;
    if (!stale) return taken;
    for (const i of taken) if (stale(i.input)) this.again(i, true);
    return taken.filter((i) => !stale(i.input));
  }

  /** Queues `item` again, at the front; rebuilt first (`rebuild`), or answered with the rebuild's error. */
  private again(item: Item<I, O>, rebuild: boolean): void {
    const requeue = (input: I) => {
      if (item.settled) return; // its request ended meanwhile
      item.input = input;
      this.queue.unshift(item);
      this.reportDepth();
      this.requeued();
    };
    if (!rebuild || !this.placement.rebuild) return requeue(item.input);
    this.placement.rebuild(item.input, item.signal).then(requeue, (err) => item.reject(err));
  }

  /** Rows went back to the queue. */
  protected requeued(): void {
    this.scheduler.poke();
  }

  /**
   * Rows of a run whose worker was lost (`err`) run again, once, at the front of the queue (rebuilt: what they read
   * in that worker is gone); a row lost a second time is answered 503 worker_lost.
   */
  protected rerun(items: Item<I, O>[], err: WorkerLost): void {
    const open = items.filter((i) => !i.settled);
    for (const i of open.filter((x) => x.reruns > 0))
      i.reject(workerLost(`the inference worker running this request was lost twice (last: ${err.reason})`));
    const once = open.filter((x) => x.reruns === 0);
    if (once.length) this.scheduler.events.onRerun?.(this.key, once.length, err.reason);
    for (const i of once.reverse()) {
      i.reruns++;
      this.again(i, true);
    }
  }

  get depth(): number {
    return this.queue.length;
  }

  /** Time the oldest row entered, or Infinity when the queue is empty. */
  get oldest(): number {
    return this.queue.length ? this.queue[0].enqueuedAt : Infinity;
  }

  /** Time the oldest row that may run on `worker` entered, or Infinity. */
  oldestFor(worker: number): number {
    return this.queue.find((i) => this.fits(i, worker))?.enqueuedAt ?? Infinity;
  }

  /** Queues a request's rows (all or none); resolves with their outputs in order. */
  submit(inputs: I[], signal?: AbortSignal, timer?: RowTimer): Promise<O[]> {
    if (inputs.length === 0) return Promise.resolve([]);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queue.length + inputs.length > this.opts.maxQueue) {
      return Promise.reject(
        new ApiError("queue_full", `the ${this.key.model}/${this.key.graph} queue is full; retry shortly`, 1),
      );
    }
    const now = performance.now();
    let open = inputs.length;
    const settle = (item: Item<I, O>) => {
      item.settled = true;
      if (--open === 0) timer?.finish(); // before any of the request's awaits resume
    };
    const items = inputs.map((input) => {
      const item = { input, enqueuedAt: now, settled: false, timer, signal, reruns: 0 } as Item<I, O>;
      const p = new Promise<O>((resolve, reject) => {
        item.resolve = (o) => {
          if (item.settled) return;
          settle(item);
          resolve(o);
        };
        item.reject = (e) => {
          if (item.settled) return;
          settle(item);
          reject(e);
        };
      });
      return { item, p };
    });
    for (const { item } of items) this.queue.push(item);
    if (signal) {
      const onAbort = () => {
        const mine = new Set(items.map((x) => x.item));
        const before = this.queue.length;
        this.queue = this.queue.filter((q) => !mine.has(q));
        const dropped = before - this.queue.length;
        if (dropped > 0)
          this.scheduler.events.onDrop?.(this.key, dropped, (signal.reason as { code?: string })?.code ?? "aborted");
        for (const { item } of items) if (!item.settled) item.reject(signal.reason);
        this.reportDepth();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      void Promise.allSettled(items.map((x) => x.p)).then(() => signal.removeEventListener("abort", onAbort));
    }
    this.reportDepth();
    this.scheduler.poke();
    return Promise.all(items.map((x) => x.p));
  }

  /** Whether this queue may send a batch to `worker` now (a worker being free is the scheduler's business). */
  ready(now: number, worker?: number): boolean {
    const rows = worker === undefined ? this.queue : this.queue.filter((i) => this.fits(i, worker));
    return rows.length >= this.opts.maxBatch || (rows.length > 0 && now - rows[0].enqueuedAt >= this.opts.maxDelayMs);
  }

  /** Runs the next batch on `worker`; settles its rows. */
  async dispatch(worker: number): Promise<void> {
    const items = this.takeBatch(worker);
    if (items.length === 0) return; // its rows were stale: they are being rebuilt
    const t0 = performance.now();
    let ok = false;
    const ran = () => {
      const t1 = performance.now();
      for (const i of items) i.timer?.ran(t0, t1); // before the rows settle: their requests' timings are complete
      return t1;
    };
    let t1 = t0;
    try {
      const outputs = await this.runBatch(
        items.map((i) => i.input),
        worker,
      );
      t1 = ran();
      if (outputs.length !== items.length)
        throw new Error(`batch of ${items.length} returned ${outputs.length} outputs`);
      items.forEach((item, i) => (item.settled ? this.placement.discard?.(outputs[i]) : item.resolve(outputs[i])));
      ok = true;
    } catch (err) {
      if (t1 === t0) t1 = ran();
      if (err instanceof WorkerLost) this.rerun(items, err);
      else for (const item of items) item.reject(err);
    } finally {
      this.scheduler.events.onRun?.(this.key, (t1 - t0) / 1000, ok);
    }
  }

  /** The next batch for `worker`: taken from the queue, with the queue's depth, the batch and each row's wait
   * reported (metrics and the rows' request timings). */
  protected takeBatch(worker: number): Item<I, O>[] {
    const items = this.take(this.opts.maxBatch, worker);
    this.reportDepth();
    if (items.length === 0) return items;
    const now = performance.now();
    this.scheduler.events.onBatch?.(
      this.key,
      items.length,
      items.map((i) => (now - i.enqueuedAt) / 1000),
    );
    for (const i of items) i.timer?.waited(now - i.enqueuedAt);
    return items;
  }

  protected reportDepth(): void {
    this.scheduler.events.onDepth?.(this.key, this.queue.length);
  }
}

/** Hands free workers to ready queues, oldest row first. One per worker pool. */
export class Scheduler {
  private batchers: Batcher<unknown, unknown>[] = [];
  private busy = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private running = 0;

  constructor(
    private readonly workers: number,
    private readonly usable: (worker: number) => boolean = () => true,
    readonly events: BatchEvents = {},
  ) {}

  add(b: Batcher<unknown, unknown>): void {
    this.batchers.push(b);
  }

  /** Batches currently running. */
  get inFlight(): number {
    return this.running;
  }

  /** Rows waiting in every queue. */
  get queued(): number {
    return this.batchers.reduce((n, b) => n + b.depth, 0);
  }

  poke(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    for (;;) {
      const free = this.freeWorkers();
      if (free.length === 0) return;
      const now = performance.now();
      // the ready queue whose oldest row (that may run on the free worker) waited longest; rows bound to a busy
      // worker wait for it (its dispatch ending pokes again)
      let next: { b: Batcher<unknown, unknown>; worker: number; oldest: number } | null = null;
      let due = Infinity;
      for (const b of this.batchers) {
        if (b.depth === 0) continue;
        for (const worker of free) {
          const oldest = b.oldestFor(worker);
          if (oldest === Infinity) continue;
          if (b.ready(now, worker)) {
            if (!next || oldest < next.oldest) next = { b, worker, oldest };
          } else due = Math.min(due, oldest + b.opts.maxDelayMs);
        }
      }
      if (!next) {
        if (due < Infinity) this.timer = setTimeout(() => this.poke(), Math.max(0, due - now));
        return;
      }
      const { b, worker } = next;
      this.busy.add(worker);
      this.running++;
      void b.dispatch(worker).finally(() => {
        this.busy.delete(worker);
        this.running--;
        this.poke();
      });
    }
  }

  private freeWorkers(): number[] {
    const free: number[] = [];
    for (let w = 0; w < this.workers; w++) if (!this.busy.has(w) && this.usable(w)) free.push(w);
    return free;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
