// Per-request timings sent back as response headers, as text-embeddings-inference sends them: `x-<name>-time` in
// milliseconds (three decimals: sub-millisecond steps are common here), for each of `req.timings` that the request's
// work set. One record per request, one onSend hook.
//
// Definitions (the same events the histograms observe):
// - preprocess: the request's image decoding and resizing and text tokenising (routes/task.ts), the durations
//   dlip_preprocess_duration_seconds observes for it.
// - queue: for each call the request made to an inference queue (one graph: vision, then the decoder, ...), the time
//   from submission until its last row started running (dlip_queue_wait_seconds observes each row's wait), summed
//   over the request's calls.
// - inference: for each such call, the time during which at least one of its rows was running (the union of its
//   rows' run intervals: a batch's run, dlip_inference_duration_seconds; a decode row from joining the running batch
//   to its last step), summed over the request's calls.
// The record reaches the inference service through an AsyncLocalStorage scope opened for each request, so routes and
// services keep their signatures.
import { AsyncLocalStorage } from "node:async_hooks";
import type { FastifyInstance } from "fastify";

export interface Timings {
  preprocess?: number; // ms
  queue?: number;
  inference?: number;
}

declare module "fastify" {
  interface FastifyRequest {
    timings: Timings;
  }
}

const scope = new AsyncLocalStorage<Timings>();

/** The timing record of the request being served here, if any. */
export function requestTimings(): Timings | undefined {
  return scope.getStore();
}

/** Adds `ms` to the record's `name`. */
export function addTiming(t: Timings | undefined, name: keyof Timings, ms: number): void {
  if (t) t[name] = (t[name] ?? 0) + ms;
}

/**
 * What one queue call of a request spent: each row's wait and run interval (ms, performance.now) are reported as they
 * happen; `finish()` adds the call's queue and inference times to the request's record.
 */
export class StageTimer {
  private wait = 0;
  private runs: [number, number][] = [];
  constructor(private readonly into: Timings | undefined) {}

  waited(ms: number): void {
    this.wait = Math.max(this.wait, ms);
  }

  ran(start: number, end: number): void {
    this.runs.push([start, end]);
  }

  finish(): void {
    if (!this.into) return;
    let busy = 0;
    let until = -Infinity;
    for (const [a, b] of [...this.runs].sort((x, y) => x[0] - y[0])) {
      if (b <= until) continue;
      busy += b - Math.max(a, until);
      until = b;
    }
    addTiming(this.into, "queue", this.wait);
    addTiming(this.into, "inference", busy);
  }
}

/** Opens each request's timing scope and writes its headers. */
export function registerTimings(app: FastifyInstance): void {
  app.decorateRequest("timings", null as unknown as Timings);
  app.addHook("onRequest", (req, _reply, done) => {
    req.timings = {};
    scope.run(req.timings, done);
  });
  app.addHook("onSend", async (req, reply, payload) => {
    for (const [name, ms] of Object.entries(req.timings ?? {}))
      if (typeof ms === "number") reply.header(`x-${name}-time`, ms.toFixed(3));
    return payload;
  });
}
