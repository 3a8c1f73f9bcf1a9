// Why a target was missed, from the same run's numbers: one sentence per missed target family, computed from the
// JSON, so that results.md says met or not and why without prose written after the fact. Each sentence names the
// numbers it rests on; a family whose numbers are absent says nothing.
import type { ModelsResult } from "./models.js";
import type { ServerResult } from "./serving.js";
import type { TargetCheck } from "./targets.js";

const f = (v: number | undefined, digits = 2) => (v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(digits));
const pct = (v: number) => `${(100 * v).toFixed(0)}%`;

/** The saturation point's server CPU per request of an endpoint (ms, all threads). */
function serverCpu(s: ServerResult, e: keyof ServerResult["endpoints"]): number | undefined {
  const r = s.endpoints[e];
  return r?.points.find((p) => p.connections === r.saturation.concurrency)?.breakdown.cpu_ms_per_request;
}

/** Markdown bullets explaining the missed targets of `checks` (empty when nothing was missed). */
export function explainMisses(models: ModelsResult | null, s: ServerResult | null, checks: TargetCheck[]): string[] {
  const missed = (prefix: string) => checks.some((c) => c.met === false && c.target.startsWith(prefix));
  const out: string[] = [];
  const pre = s?.preprocessing;
  if (s && pre && missed("server throughput at saturation vs the raw onnxruntime ceiling")) {
    const c = s.ceiling.embed_image;
    out.push(
      `- **Graphs-only ceiling**: it leaves out preprocessing by definition. An image request costs the server ` +
        `${f(serverCpu(s, "embed_image"))} ms of CPU at saturation, of which the vision graph is ` +
        `${f(c?.cpu_ms_per_request)} ms and preprocessing a PNG ${f(pre.cpu_ms_per_image)} ms; against the ` +
        `in-process ceiling, which does the same work, the server reaches ` +
        `${["embed_image", "caption", "vqa"].map((t) => pct(s.in_process_ceiling?.[t as "caption"]?.ratio ?? NaN)).join(" / ")} ` +
        `(image embeddings / captions / VQA).`,
    );
  }
  if (s && pre && missed("preprocessing CPU per 256 px Shapes PNG")) {
    out.push(
      `- **Preprocessing**: ${f(pre.cpu_ms_per_image)} ms of CPU (${f(pre.ms_per_image)} ms wall, ${pre.concurrency} ` +
        `at a time) per 256 px PNG: sharp's header read, decode and libvips resize, then the JS ` +
        `normalise; the CPU profile below shows sharp's input/output stages and the base64 checks of the JSON body ` +
        `on the HTTP thread. Reaching 2 ms needs a cheaper decode and resize than sharp's pipeline gives here.`,
    );
  }
  if (s?.batching && missed("dynamic batching")) {
    out.push(
      `- **Dynamic batching** (${f(s.batching.ratio)}x): batching shrinks only the graph's share of a request ` +
        `(vision ${f(s.ceiling.embed_image?.cpu_ms_per_request)} ms CPU per image at the batch sizes formed) while ` +
        `preprocessing (${f(pre?.cpu_ms_per_image)} ms CPU) is paid per image either way; batching off already ` +
        `uses ${f(s.batching.off.breakdown.server_cpu_cores)} cores of ${s.stamp.machine.cores}.`,
    );
  }
  const tails = checks.filter((c) => c.met === false && c.target.startsWith("p99 / p50 latency at half"));
  if (s && tails.length) {
    const worst = Object.entries(s.half_load).sort((a, b) => b[1]!.p99_over_p50 - a[1]!.p99_over_p50)[0];
    out.push(
      `- **Tail latency at half load** (${tails.map((c) => `${c.target.split(", ").pop()} ${c.measured}`).join(", ")}): ` +
        `open-loop Poisson arrivals queue behind running batches on a machine whose ${s.stamp.machine.cores} cores ` +
        `the HTTP thread (JSON, base64, sharp) and the inference worker share; the worst, ${worst[0]}, has a p50 of ` +
        `${f(worst[1]!.result.latency_ms.p50)} ms and a p99 of ${f(worst[1]!.result.latency_ms.p99)} ms, a few batch ` +
        `runs (the batch times are in the saturation table).`,
    );
  }
  const kv1 = s?.kv_cache.find((k) => k.batch === 1 && k.length === "natural");
  if (
    s &&
    kv1 &&
    missed("cached captioning (key/value and cross_kv caches) vs uncached, tokens per second (batch 1)")
  ) {
    const fixed = s.kv_cache.find((k) => k.batch === 1 && k.length === "max");
    const big = s.kv_cache
      .filter((k) => k.batch > 1 && k.length === "natural")
      .map((k) => `${f(k.ratio)}x at ${k.batch}`);
    out.push(
      `- **Cached decoding at batch 1** (${f(kv1.ratio)}x over ${kv1.tokens} tokens): a caption of ~${kv1.tokens} ` +
        `tokens gives the uncached decoder short prefixes to recompute, and at one row each step's fixed cost ` +
        `(onnxruntime-node's run call and output copies) is most of a step; at the full length the ratio is ` +
        `${f(fixed?.ratio)}x, and with more rows ${big.join(", ")}.`,
    );
  }
  const cb = s?.continuous;
  if (cb && missed("captions at 64 connections, continuous batching vs CONTINUOUS_BATCHING=false, throughput")) {
    const dec = (p: typeof cb.on) => p.breakdown.graphs.decoder?.busy_share;
    out.push(
      `- **Continuous batching** (${f(cb.ratio)}x throughput, p99 ${f(cb.on.latency_ms.p99, 0)} vs ` +
        `${f(cb.off.latency_ms.p99, 0)} ms): both servers are CPU-bound at 64 connections (server CPU ` +
        `${f(cb.on.breakdown.server_cpu_cores)} / ${f(cb.off.breakdown.server_cpu_cores)} cores of ` +
        `${s!.stamp.machine.cores}, worker busy ${f(cb.on.breakdown.worker_busy_share)} / ` +
        `${f(cb.off.breakdown.worker_busy_share)}), and the decoder is only part of the worker's time (busy share ` +
        `${f(dec(cb.on))} / ${f(dec(cb.off))}) next to the vision graph and ${f(pre?.cpu_ms_per_image)} ms of ` +
        `preprocessing CPU per image; joining rows at step boundaries can only win back the decoder's idle slots.`,
    );
  }
  if (s?.teacher && missed("student vs teacher end to end per image in one server")) {
    const raw = models?.ratios;
    out.push(
      `- **Student vs teacher in one server** (${Object.entries(s.teacher.tasks)
        .map(([t, r]) => `${t} ${f(r.throughput_ratio)}x`)
        .join(", ")}): both pay the same per-request costs outside the graphs (preprocessing ` +
        `${f(pre?.cpu_ms_per_image)} ms CPU per image, HTTP and JSON), large next to the student's graphs ` +
        `(${f(s.ceiling.caption?.cpu_ms_per_request)} ms CPU per caption request at the server's batch sizes); on ` +
        `raw onnxruntime, where only the graphs run, the student is ${f(raw?.caption_fp32_b1)}x (captions) and ` +
        `${f(raw?.vqa_fp32_b1)}x (VQA) faster per image at batch 1.`,
    );
  }
  return out.length ? ["### Why the missed targets are missed (from this run's numbers)", "", ...out, ""] : [];
}
