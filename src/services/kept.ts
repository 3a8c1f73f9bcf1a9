// Rows kept in the inference workers (image tokens, question states), as the main thread knows them: which worker
// holds each (and which of the workers started in that slot), how many graph reads it has left, and how to recompute
// it. When its worker is lost (it exited, or hung and was replaced) a kept row is gone with it: the rows that read it
// are rebuilt with it recomputed on a running worker and sent inline, never looked up where it was.
import { workerLost } from "../errors.js";
import type { WorkerPool } from "../inference/pool.js";

/** A kept row recomputed (inline), its request's signal aborting the work. */
export type Recompute = (signal?: AbortSignal) => Promise<Float32Array>;

interface Entry {
  worker: number;
  epoch: number; // pool.epoch(worker) when it was kept: another now means the row was lost with its worker
  uses: number; // graph reads left (the worker drops it after the last, as we do)
  expires: number; // ms (performance.now): the worker drops it unread then too
  recompute: Recompute; // memoised
}

export class KeptRows {
  private readonly rows = new Map<number, Entry>(); // by handle, in the order kept (the order they expire)

  constructor(
    private readonly pool: Pick<WorkerPool, "epoch">,
    private readonly ttlMs: number, // as long as the workers keep a row unread (InitMessage.storeTtlMs)
  ) {}

  /** Rows kept in worker `w` (started as `epoch`) under `handles` (null: not kept); row i recomputed by `redo(i)`. */
  remember(handles: (number | null)[], uses: number[], w: number, epoch: number, redo: (i: number) => Recompute): void {
    const now = performance.now();
    for (const [h, e] of this.rows) {
      if (e.expires > now) break;
      this.rows.delete(h); // the worker dropped it too
    }
    handles.forEach((h, i) => {
      if (h === null) return;
      let value: Float32Array | undefined;
      const once = redo(i);
      const recompute = async (signal?: AbortSignal) => (value ??= await once(signal));
      this.rows.set(h, { worker: w, epoch, uses: uses[i], expires: now + this.ttlMs, recompute });
    });
  }

  /** Graph reads took these rows (each forgotten after its last read). */
  used(handles: number[]): void {
    for (const h of handles) {
      const e = this.rows.get(h);
      if (e && --e.uses <= 0) this.rows.delete(h);
    }
  }

  /** Row `h` was lost with its worker (it exited or hung since): it must be recomputed, not read. */
  lost(h: number): boolean {
    const e = this.rows.get(h);
    return e !== undefined && this.pool.epoch(e.worker) !== e.epoch;
  }

  /** How row `h` is recomputed; a row no longer known (released, expired) cannot be. */
  recompute(h: number): Recompute {
    const e = this.rows.get(h);
    if (!e)
      return () => Promise.reject(workerLost("the inference worker holding this request's encoded image was lost"));
    return e.recompute;
  }

  /** Row `h` was released (its request ended). */
  forget(h: number): void {
    this.rows.delete(h);
  }
}
