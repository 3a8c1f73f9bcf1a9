// HTTP load. Closed loop: autocannon, N connections each sending its next request as soon as the last is answered
// (throughput vs concurrency, saturation). Open loop: requests at a fixed average rate with Poisson arrivals, each
// on its own (latency at a given throughput). autocannon's own rate limit sends each connection's quota in a burst
// at the start of every second, which measures the bursts rather than the server, so open loops are paced here.
import autocannon from "autocannon";
import { percentiles, round, sleep, type Percentiles } from "./timing.js";

export interface RequestSpec {
  path: string; // e.g. /v1/embeddings
  bodies: string[]; // JSON bodies, sent in turn
}

export interface LoadResult {
  connections: number | null; // closed loop; null for an open loop
  rate_rps: number | null; // open loop: the offered rate
  duration_s: number;
  ok: number; // 2xx responses
  failed: number; // non-2xx responses, errors and timeouts
  failed_by_status: Record<string, number>; // the failures by HTTP status ("429": 12), "error" for no response
  throughput_rps: number; // ok / duration
  latency_ms: Percentiles; // of the 2xx responses
}

const HEADERS = { "content-type": "application/json" };

export interface ClosedLoop {
  connections: number;
  durationS?: number; // either a duration ...
  amount?: number; // ... or a number of requests
  timeoutS?: number; // a request unanswered this long counts as an error (default 60)
  onResponse?: (ok: boolean) => void;
}

/** autocannon at `connections`; several specs are sent in turn on each connection (a mixed workload). */
export async function closedLoop(url: string, specs: RequestSpec[], o: ClosedLoop): Promise<LoadResult> {
  const cursors = specs.map(() => 0);
  const latencies: number[] = [];
  const byStatus: Record<string, number> = {};
  const instance = autocannon({
    url,
    connections: o.connections,
    ...(o.amount !== undefined ? { amount: o.amount } : { duration: o.durationS }),
    timeout: o.timeoutS ?? 60,
    sampleInt: 100, // ms; autocannon checks its deadline once per sample: a second by default, too coarse for short points
    requests: specs.map((s, i) => ({
      method: "POST",
      path: s.path,
      headers: HEADERS,
      setupRequest: (req) => ({ ...req, body: s.bodies[cursors[i]++ % s.bodies.length] }),
    })),
  });
  instance.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    const ok = status >= 200 && status < 300;
    if (ok) latencies.push(ms);
    else byStatus[status] = (byStatus[status] ?? 0) + 1;
    o.onResponse?.(ok);
  });
  const r = await instance;
  const ok = r["2xx"];
  return {
    connections: o.connections,
    rate_rps: null,
    duration_s: r.duration,
    ok,
    failed: r.non2xx + r.errors,
    failed_by_status: r.errors > 0 ? { ...byStatus, error: r.errors } : byStatus,
    throughput_rps: round(ok / r.duration),
    latency_ms: roundAll(percentiles(latencies)),
  };
}

/** Deterministic uniform numbers in [0, 1) (mulberry32): reproducible arrival times, test vectors. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Requests at `rate` per second on average (exponential gaps), for `durationS`; waits for the last answers. */
export async function openLoop(
  url: string,
  spec: RequestSpec,
  rate: number,
  durationS: number,
  seed = 1,
): Promise<LoadResult> {
  const random = rng(seed);
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  const byStatus: Record<string, number> = {};
  const fail = (status: string) => {
    failed++;
    byStatus[status] = (byStatus[status] ?? 0) + 1;
  };
  let sent = 0;
  const inflight = new Set<Promise<void>>();
  const send = (body: string) => {
    const t0 = performance.now();
    const p = fetch(url + spec.path, { method: "POST", headers: HEADERS, body })
      .then(async (r) => {
        await r.arrayBuffer();
        if (r.ok) {
          ok++;
          latencies.push(performance.now() - t0);
        } else fail(String(r.status));
      })
      .catch(() => fail("error"))
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const start = performance.now();
  const end = start + durationS * 1000;
  let next = start;
  while (next < end) {
    const now = performance.now();
    if (next > now) await sleep(next - now);
    while (next <= performance.now() && next < end) {
      send(spec.bodies[sent++ % spec.bodies.length]);
      next += (-Math.log(1 - random()) / rate) * 1000;
    }
  }
  await Promise.all(inflight);
  const duration = (performance.now() - start) / 1000;
  return {
    connections: null,
    rate_rps: round(rate),
    duration_s: round(duration),
    ok,
    failed,
    failed_by_status: byStatus,
    throughput_rps: round(ok / duration),
    latency_ms: roundAll(percentiles(latencies)),
  };
}

function roundAll(p: Percentiles): Percentiles {
  return { p50: round(p.p50), p95: round(p.p95), p99: round(p.p99), mean: round(p.mean), max: round(p.max) };
}
