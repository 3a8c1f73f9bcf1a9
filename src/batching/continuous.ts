// Iteration-level (continuous) batching of decodes, as TGI and vLLM schedule them: a decode batch runs on a worker
// as one job; rows submitted while it runs join it at its next step boundary (up to maxBatch live rows), and each
// row leaves it, its request answered, the step it finishes. Rows that find no running decode with room wait in the
// queue and start one when a worker is free, as the dynamic batcher's rows do.
import { WorkerLost } from "../errors.js";
import { Batcher, type BatchKey, type BatchOptions, type Item, type RowPlacement, type Scheduler } from "./batcher.js";

/** A running decode job, as the service starts it: rows join it; the job ends when none is left. */
export interface DecodeJob<I> {
  /** Sends rows numbered from `base` to the job's next step. */
  join(inputs: I[], base: number): void;
  /** Resolves when the job ends, with the `base` of each join it took in (others are queued again). */
  done: Promise<number[]>;
}

/** Starts a decode of `inputs` (rows 0..n-1) on `worker`; `onRow(i, output)` as each row finishes. */
export type StartDecode<I, O> = (inputs: I[], worker: number, onRow: (row: number, output: O) => void) => DecodeJob<I>;

interface Running<I, O> {
  job: DecodeJob<I>;
  worker: number;
  rows: Map<number, { item: Item<I, O>; start: number }>; // live rows by number
  next: number; // the next row number
  joins: Map<number, Item<I, O>[]>; // by base: sent, not yet known to be taken in
}

export class ContinuousBatcher<I, O> extends Batcher<I, O> {
  private readonly running = new Set<Running<I, O>>();

  constructor(
    key: BatchKey,
    opts: BatchOptions,
    private readonly start: StartDecode<I, O>,
    scheduler: Scheduler,
    placement: RowPlacement<I, O> = {},
  ) {
    super(key, opts, async () => [], scheduler, placement);
  }

  /** Rows decoding in running batches. */
  get decoding(): number {
    let n = 0;
    for (const r of this.running) n += r.rows.size;
    return n;
  }

  override submit(...args: Parameters<Batcher<I, O>["submit"]>): Promise<O[]> {
    const p = super.submit(...args);
    this.feed();
    return p;
  }

  /**
   * A queued row starts a new decode only when no running one it may join has room (else it joins that one). A
   * decode runs on its worker, so rows bound to a free worker never have one to join.
   */
  override ready(now: number, worker?: number): boolean {
    const room = [...this.running].some((r) => r.rows.size < this.opts.maxBatch);
    if (!room) return super.ready(now, worker);
    if (worker === undefined || !this.placement.affinity) return false;
    const rows = this.queue.filter((i) => this.placement.affinity!(i.input) === worker);
    return rows.length >= this.opts.maxBatch || (rows.length > 0 && now - rows[0].enqueuedAt >= this.opts.maxDelayMs);
  }

  protected override requeued(): void {
    this.feed();
    super.requeued();
  }

  /** Queued rows join running decodes with room (on a worker they may run on), oldest first. */
  private feed(): void {
    for (const r of this.running) {
      const room = this.opts.maxBatch - r.rows.size;
      if (room <= 0 || this.queue.length === 0) continue;
      const items = this.take(room, r.worker);
      if (items.length === 0) continue;
      this.reportDepth();
      const now = performance.now();
      for (const i of items) i.timer?.waited(now - i.enqueuedAt);
      this.scheduler.events.onJoin?.(
        this.key,
        items.map((i) => (now - i.enqueuedAt) / 1000),
      );
      const base = r.next;
      r.next += items.length;
      items.forEach((item, k) => r.rows.set(base + k, { item, start: now }));
      r.joins.set(base, items);
      r.job.join(
        items.map((i) => i.input),
        base,
      );
    }
  }

  override async dispatch(worker: number): Promise<void> {
    const items = this.takeBatch(worker);
    if (items.length === 0) return; // its rows were stale: they are being rebuilt
    const t0 = performance.now();
    const r: Running<I, O> = {
      job: null as unknown as DecodeJob<I>,
      worker,
      rows: new Map(items.map((item, k) => [k, { item, start: t0 }])),
      next: items.length,
      joins: new Map(),
    };
    let ok = false;
    try {
      r.job = this.start(
        items.map((i) => i.input),
        worker,
        (row, output) => {
          const live = r.rows.get(row);
          if (!live) return;
          r.rows.delete(row);
          live.item.timer?.ran(live.start, performance.now());
          live.item.resolve(output);
          this.feed(); // its place goes to a waiting row
        },
      );
      this.running.add(r);
      this.feed();
      const joined = new Set(await r.job.done);
      // joins sent after the job ended go back to the front of the queue
      const again = [...r.joins].filter(([base]) => !joined.has(base)).flatMap(([, xs]) => xs);
      for (const item of again) for (const [row, live] of r.rows) if (live.item === item) r.rows.delete(row);
      this.queue.unshift(...again.filter((i) => !i.settled));
      ok = true;
      this.running.delete(r);
      this.feed(); // rows queued again may join another running decode
    } catch (err) {
      this.running.delete(r); // nothing joins it any more
      const live = [...r.rows.values()].map((x) => x.item);
      r.rows.clear();
      // rows decoding on a lost worker start their decode again (rows it finished were answered already)
      if (err instanceof WorkerLost) this.rerun(live, err);
      else for (const item of live) item.reject(err);
    } finally {
      this.running.delete(r);
      for (const { item } of r.rows.values()) if (!item.settled) item.reject(new Error("decode ended without the row"));
      this.scheduler.events.onRun?.(this.key, (performance.now() - t0) / 1000, ok);
    }
  }
}
