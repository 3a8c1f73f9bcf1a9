// One load point on one endpoint: the requests (JSON bodies from the Shapes workload), autocannon at a number of
// connections between two scrapes of the server's /metrics, and what those scrapes say the server did in between
// (batch sizes formed, queue wait, inference time, CPU): the profile that explains a throughput.
import { GRAPHS, type GraphName } from "../src/bundle/manifest.js";
import { closedLoop, type LoadResult, type RequestSpec } from "./load.js";
import type { BenchOptions, Endpoint } from "./options.js";
import { counterDelta, histogramDelta, type Sample } from "./prom.js";
import type { ServerProcess } from "./server-process.js";
import { round, sleep } from "./timing.js";
import type { Workload } from "./workload.js";

const ROUTE: Record<Endpoint, string> = {
  embed_image: "/v1/embeddings",
  embed_text: "/v1/embeddings",
  caption: "/v1/captions",
  vqa: "/v1/vqa",
  rank: "/v1/rank",
};

export const REQUEST_SHAPE: Record<Endpoint, string> = {
  embed_image: "one image",
  embed_text: "one caption",
  caption: "one image, greedy",
  vqa: "one image and its question",
  rank: "an image query against 8 captions, top 4 re-ranked by ITM",
};

/** JSON bodies of one endpoint's requests, cycling through the workload (model: null = the server's default). */
export function requestSpec(e: Endpoint, w: Workload, model: string | null): RequestSpec {
  const b64 = w.images.map((b) => b.toString("base64"));
  const m = model === null ? {} : { model };
  const bodies = b64.map((img, i) => {
    if (e === "embed_image" || e === "caption") return { images: [img], ...m };
    if (e === "embed_text") return { texts: [w.captions[i]], ...m };
    if (e === "vqa") return { image: img, question: w.questions[i], ...m };
    const candidates = Array.from({ length: 8 }, (_, k) => w.captions[(i + k) % w.captions.length]);
    return { query: { image: img }, candidates, top_k: 4, ...m };
  });
  return { path: ROUTE[e], bodies: bodies.map((b) => JSON.stringify(b)) };
}

export interface GraphBreakdown {
  batches: number;
  mean_batch_rows: number;
  queue_wait_ms: number; // mean per row
  inference_ms: number; // mean per batch (a whole decode for the decoder)
  busy_share: number; // inference time / wall time
}

/** What the server did during one point, from its /metrics: the profile that explains a throughput. */
export interface Breakdown {
  server_ms: number; // mean time inside the server per request (arrival to reply)
  preprocess_ms: number; // mean image decoding + tokenising per request
  graphs: Partial<Record<GraphName, GraphBreakdown>>;
  worker_busy_share: number; // all inference time / (wall time x workers): 1 = the workers never wait
  server_cpu_cores: number; // process CPU seconds per second (all threads)
  cpu_ms_per_request: number; // process CPU time per answered request (all threads): robust to a busy machine
  tokens_per_request: number | null; // generated tokens (captions, answers)
}

export interface Point extends LoadResult {
  breakdown: Breakdown;
  client_cpu_cores: number; // CPU of this process (the load generator) per second: it shares the machine
}

export function breakdown(
  before: Sample[],
  after: Sample[],
  seconds: number,
  model: string,
  e: Endpoint,
  workers: number,
): Breakdown {
  const http = histogramDelta(before, after, "dlip_http_request_duration_seconds", { route: ROUTE[e] });
  const pre = histogramDelta(before, after, "dlip_preprocess_duration_seconds", { model });
  const graphs: Breakdown["graphs"] = {};
  let busy = 0;
  for (const g of GRAPHS) {
    const where = { model, graph: g };
    const size = histogramDelta(before, after, "dlip_batch_size_rows", where);
    if (size.count === 0) continue;
    const inf = histogramDelta(before, after, "dlip_inference_duration_seconds", where);
    busy += inf.sum;
    graphs[g] = {
      batches: size.count,
      mean_batch_rows: round(size.mean),
      queue_wait_ms: round(1000 * histogramDelta(before, after, "dlip_queue_wait_seconds", where).mean),
      inference_ms: round(1000 * inf.mean),
      busy_share: round(inf.sum / seconds),
    };
  }
  const tokens = counterDelta(before, after, "dlip_generated_tokens_total", { model });
  const cpu = counterDelta(before, after, "dlip_process_cpu_seconds_total");
  return {
    server_ms: round(1000 * http.mean),
    preprocess_ms: round(http.count ? (1000 * pre.sum) / http.count : NaN),
    graphs,
    worker_busy_share: round(busy / seconds / workers),
    server_cpu_cores: round(cpu / seconds),
    cpu_ms_per_request: round(http.count ? (1000 * cpu) / http.count : NaN),
    tokens_per_request: e === "caption" || e === "vqa" ? round(http.count ? tokens / http.count : NaN) : null,
  };
}

/**
 * One closed-loop point: warm-up, then `durationS` of load between two /metrics scrapes. When the window ends before
 * every connection had one answer (requests slower than the window: a big model, a busy machine), the point is
 * measured again as two whole requests per connection, so that it never reports nothing. With `fixed`, the warm-up and
 * the measurement are whole numbers of requests (a full-size model answers in seconds: a deadline would cut requests
 * off and leave them running into the next point).
 */
export async function point(
  server: ServerProcess,
  spec: RequestSpec,
  e: Endpoint,
  model: string,
  connections: number,
  opts: BenchOptions,
  fixed?: { warmup: number; requests: number }, // whole requests instead of durations (slow models: no request cut off)
): Promise<Point> {
  if (!fixed) await closedLoop(server.url, [spec], { connections, durationS: opts.warmupS });
  else if (fixed.warmup > 0) await closedLoop(server.url, [spec], { connections, amount: fixed.warmup });
  const measured = async (load: { durationS?: number; amount?: number }): Promise<Point> => {
    const before = await server.scrape();
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const loaded = await closedLoop(server.url, [spec], { connections, ...load, timeoutS: fixed ? 600 : undefined });
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    // autocannon notices the last answer at its next sample tick: over a few slow requests, time them here
    const result = fixed ? { ...loaded, duration_s: round(wall), throughput_rps: round(loaded.ok / wall) } : loaded;
    await sleep(50); // answers abandoned at the deadline finish before the second scrape
    const after = await server.scrape();
    const seconds = (performance.now() - t0) / 1000;
    return {
      ...result,
      breakdown: breakdown(before, after, seconds, model, e, opts.workers),
      client_cpu_cores: round((cpu.user + cpu.system) / 1e6 / seconds),
    };
  };
  if (fixed) return measured({ amount: fixed.requests });
  const p = await measured({ durationS: opts.durationS });
  return p.ok >= connections ? p : measured({ amount: 2 * connections });
}
