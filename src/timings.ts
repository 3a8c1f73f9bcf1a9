// Per-request timings users can see, as text-embeddings-inference sends them: each step a request went through adds
// its milliseconds to `req.timings[name]` (the same duration its histogram observes), and one onSend hook writes
// `x-<name>-time: <ms>` for every name that was set. Today: preprocess (images decoded and resized, texts
// tokenised; the sum over the request's calls, = its observations of dlip_preprocess_duration_seconds). A batching
// step adds "queue" and "inference" the same way: `addTiming(req, "queue", ms)` next to its histogram's observe().
import type { FastifyInstance, FastifyRequest } from "fastify";

export const TIMING_NAMES = ["preprocess", "queue", "inference"] as const;
export type TimingName = (typeof TIMING_NAMES)[number];
export type Timings = Partial<Record<TimingName, number>>; // milliseconds, summed over the request's steps

/** Adds `ms` to the request's `name` timing. */
export function addTiming(req: FastifyRequest, name: TimingName, ms: number): void {
  const t = (req.timings ??= {});
  t[name] = (t[name] ?? 0) + ms;
}

/** The header value: milliseconds with microsecond resolution (TEI sends whole ms; sub-ms steps need more). */
export const formatMs = (ms: number): string => ms.toFixed(3);

/** Registers the request decoration and the hook that writes the x-<name>-time headers. */
export function timingHeaders(app: FastifyInstance): void {
  app.decorateRequest("timings", null);
  app.addHook("onSend", async (req, reply, payload) => {
    const t = req.timings;
    if (t)
      for (const name of TIMING_NAMES) if (t[name] !== undefined) reply.header(`x-${name}-time`, formatMs(t[name]));
    return payload;
  });
}

declare module "fastify" {
  interface FastifyRequest {
    timings: Timings | null; // set by the first addTiming
  }
}
