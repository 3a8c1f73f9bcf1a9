// The inference service: one batching queue per model and graph over the worker pool, and the typed calls routes
// make: `app.inference.images(model, pixels, signal)` and so on. A call's rows leave their queue, or are rejected
// while their batch runs, as soon as `signal` aborts (the request's deadline or its client leaving).
// Rows that read what a lost worker kept are rebuilt before they run (kept.ts), and a decoding row whose worker was
// lost decodes again from its start (not a streamed one that sent tokens already: those cannot be taken back).
import { Batcher, type BatchKey, type Scheduler } from "../batching/batcher.js";
import { ContinuousBatcher, type DecodeJob } from "../batching/continuous.js";
import type { GenResult } from "../decode/search.js";
import {
  keptFusedFeeds,
  heldHandles,
  splitRows,
  splitStates,
  splitVision,
  textFeeds,
  visionFeeds,
  type FusedRow,
  type GenInput,
  type ImageRow,
  type Kept,
  type KeptImage,
  type StatesRow,
} from "../inference/graphs.js";
import type { WorkerPool } from "../inference/pool.js";
import type { JobReply, KeepSpec, Part, RowsFeed, WireTensor } from "../inference/protocol.js";
import { workerLost } from "../errors.js";
import { KeptRows } from "./kept.js";

/** An image for the vision graph; `keep` > 0: its tokens stay in the worker, for that many graph reads. */
interface VisionInput {
  pixels: Float32Array;
  keep: number;
}
import { requestTimings, StageTimer } from "../routes/timing.js";
import type { ServedModel } from "./models.js";

interface ModelQueues {
  vision: Batcher<VisionInput, ImageRow | KeptImage>;
  text: Batcher<number[], Float32Array>;
  itm: Batcher<FusedRow, number>;
  vqa_encoder: Batcher<FusedRow, StatesRow>;
  decoder: Batcher<GenInput, GenResult>; // a ContinuousBatcher with CONTINUOUS_BATCHING
}

export class Inference {
  private readonly queues = new Map<string, ModelQueues>();
  private readonly kept: KeptRows;
  private readonly streamed = new WeakSet<(token: number) => void>(); // onToken of rows that sent a token

  constructor(
    readonly scheduler: Scheduler,
    private readonly pool: WorkerPool,
    models: ServedModel[],
    opts: {
      maxBatch: number;
      maxDelayMs: number;
      maxQueue: number;
      continuous?: boolean;
      keptTtlMs?: number; // as long as the workers keep unread rows (InitMessage.storeTtlMs)
    },
  ) {
    this.kept = new KeptRows(pool, opts.keptTtlMs ?? 60_000);
    for (const m of models) {
      const key = (graph: string): BatchKey => ({ model: m.name, graph });
      const pad = m.manifest.tokenizer.special_tokens.pad;
      const { image_tokens: N, vision_width: Dv } = m.manifest.model;
      const run = async (
        worker: number,
        graph: string,
        feeds: Record<string, WireTensor | RowsFeed>,
        keep?: KeepSpec,
      ) => {
        const job = { type: "run" as const, model: m.name, graph, feeds, ...(keep ? { keep } : {}) };
        const reply = await this.pool.run(worker, job, transferables(feeds));
        return (reply as Extract<JobReply, { type: "result" }>).outputs;
      };
      const handles = (n: number[]) => {
        const fresh = this.pool.handles(n.filter((x) => x > 0).length);
        return n.map((x) => (x > 0 ? fresh.shift()! : null));
      };
      const release = (x: Float32Array | Kept) => this.release([x]);
      const recomputeImage = (pixels: Float32Array) => async (signal?: AbortSignal) =>
        (await this.q(m).vision.submit([{ pixels, keep: 0 }], signal))[0].embeds as Float32Array;
      this.queues.set(m.name, {
        vision: new Batcher(
          key("vision"),
          opts,
          async (rows, w) => {
            const epoch = this.pool.epoch(w);
            const kept = handles(rows.map((r) => r.keep));
            const feeds = visionFeeds(
              rows.map((r) => r.pixels),
              m.image.size,
            );
            const uses = rows.map((r) => r.keep);
            const out = splitVision(
              await run(w, "vision", feeds, { output: "image_embeds", handles: kept, uses }),
              rows.length,
              kept,
              w,
            );
            this.kept.remember(kept, uses, w, epoch, (i) => recomputeImage(rows[i].pixels));
            return out;
          },
          scheduler,
          { discard: (im) => release(im.embeds) },
        ),
        text: new Batcher(
          key("text"),
          opts,
          async (ids, w) => splitRows((await run(w, "text", textFeeds(ids, pad))).text_feat, ids.length),
          scheduler,
        ),
        itm: new Batcher(
          key("itm"),
          opts,
          async (rows, w) => {
            const logits = (await run(w, "itm", keptFusedFeeds(rows, pad, N, Dv))).itm_logits; // (B, 2)
            return rows.map((_, i) => (logits.data as Float32Array)[i * 2 + 1]); // the match logit
          },
          scheduler,
        ),
        vqa_encoder: new Batcher(
          key("vqa_encoder"),
          opts,
          async (rows, w) => {
            const epoch = this.pool.epoch(w);
            // states stay where their image's tokens are
            const kept = handles(rows.map((r) => (r.embeds instanceof Float32Array ? 0 : 1)));
            const keep = {
              output: "question_states",
              handles: kept,
              uses: rows.map(() => 1),
              lengths: rows.map((r) => r.ids.length),
            };
            const out = splitStates(await run(w, "vqa_encoder", keptFusedFeeds(rows, pad, N, Dv), keep), rows, kept, w);
            // a row's states are recomputed from its image's tokens, recomputed (taken before this read counts)
            const images = rows.map((r) =>
              r.embeds instanceof Float32Array ? r.embeds : this.kept.recompute(r.embeds.handle),
            );
            this.kept.used(rows.flatMap((r) => (r.embeds instanceof Float32Array ? [] : [r.embeds.handle])));
            this.kept.remember(kept, keep.uses, w, epoch, (i) => async (signal) => {
              const image = images[i];
              const embeds = image instanceof Float32Array ? image : await image(signal);
              const [q] = await this.q(m).vqa_encoder.submit([{ embeds, ids: rows[i].ids }], signal);
              return q.states as Float32Array;
            });
            return out;
          },
          scheduler,
          {
            affinity: (r) =>
              r.embeds instanceof Float32Array || this.kept.lost(r.embeds.handle) ? null : r.embeds.worker,
            discard: (q) => release(q.states),
            stale: (r) => !(r.embeds instanceof Float32Array) && this.kept.lost(r.embeds.handle),
            rebuild: async (r, signal) =>
              r.embeds instanceof Float32Array
                ? r
                : { ...r, embeds: await this.kept.recompute(r.embeds.handle)(signal) },
          },
        ),
        decoder: opts.continuous
          ? new ContinuousBatcher<GenInput, GenResult>(
              key("decoder"),
              opts,
              (rows, w, onRow) => this.decode(m, rows, w, onRow),
              scheduler,
              this.decoderPlacement(),
            )
          : new Batcher(
              key("decoder"),
              opts,
              async (rows, w) => {
                const results: GenResult[] = [];
                const job = this.decode(m, rows, w, (i, r) => (results[i] = r), false);
                await job.done;
                return results;
              },
              scheduler,
              this.decoderPlacement(),
            ),
      });
    }
  }

  /** A decoder row reads kept rows lost with their worker. */
  private staleRow(r: GenInput): boolean {
    return r.parts.some((p) => typeof p === "number" && this.kept.lost(p));
  }

  /**
   * Decoder rows run where their kept parts are; a row whose worker was lost is rebuilt with its parts recomputed,
   * and decodes from its start again, unless it already streamed tokens to its client (those cannot be taken back).
   */
  private decoderPlacement() {
    return {
      affinity: (r: GenInput) => (r.worker === null || this.staleRow(r) ? null : r.worker),
      stale: (r: GenInput) => this.staleRow(r),
      rebuild: async (r: GenInput, signal?: AbortSignal): Promise<GenInput> => {
        if (r.onToken && this.streamed.has(r.onToken))
          throw workerLost("the inference worker streaming this answer was lost after its first tokens");
        if (r.worker === null) return r;
        const parts: Part[] = await Promise.all(
          r.parts.map((p) => (typeof p === "number" ? this.kept.recompute(p)(signal ?? r.signal) : p)),
        );
        return { ...r, parts, worker: null };
      },
    };
  }

  /**
   * A generate job on worker `w`: rows 0..n-1 now, more through `join` while it runs (continuous), each row's result
   * to `onRow` as it finishes (continuous) or all at the end. A row whose request went away mid-decode stops at the
   * next step (its stop flag) and is counted as dropped, by its abort reason.
   */
  private decode(
    m: ServedModel,
    first: GenInput[],
    w: number,
    onRow: (row: number, r: GenResult) => void,
    continuous = true,
  ): DecodeJob<GenInput> {
    const sp = m.manifest.tokenizer.special_tokens;
    const inputs: GenInput[] = [];
    const unlisten: (() => void)[] = [];
    const prepare = (rows: GenInput[], base: number) => {
      rows.forEach((r, i) => (inputs[base + i] = r));
      const stop = new Int32Array(new SharedArrayBuffer(4 * rows.length)); // 1: the worker drops that row
      for (const [signal, at] of rowsBySignal(rows))
        unlisten.push(watchAbort(signal, () => at.forEach((i) => Atomics.store(stop, i, 1))));
      // kept parts are handles: the rows' encoder states are read where they are (this worker)
      return {
        encoders: rows.map((r) => r.parts),
        lengths: rows.map((r) => r.length),
        stop,
        rows: rows.map((r) => r.row),
      };
    };
    const result = (row: number, r: GenResult) => {
      this.kept.used(heldHandles(inputs[row])); // the worker took them when the row started
      if (r.finish === "aborted")
        this.scheduler.events.onDrop?.({ model: m.name, graph: "decoder" }, 1, abortCode(inputs[row].signal));
      onRow(row, r);
    };
    let id = -1;
    const f = prepare(first, 0);
    const reply = this.pool.run(
      w,
      {
        type: "generate",
        model: m.name,
        encoders: f.encoders,
        encoderLengths: f.lengths,
        rows: f.rows,
        bos: sp.dec,
        eos: sp.sep,
        stop: f.stop,
        continuous,
      },
      [],
      (t) => (t.type === "token" ? inputs[t.row].onToken?.(t.token) : result(t.row, t.result)),
      (jobId) => (id = jobId),
    );
    const done = reply
      .then((r) => {
        const g = r as Extract<JobReply, { type: "generated" }>;
        g.results.forEach((x, i) => x && result(i, x));
        return g.joined;
      })
      .finally(() => unlisten.forEach((off) => off()));
    return {
      done,
      join: (rows, base) => {
        const j = prepare(rows, base);
        this.pool.join(w, {
          type: "join",
          id,
          base,
          encoders: j.encoders,
          encoderLengths: j.lengths,
          rows: j.rows,
          stop: j.stop,
        });
      },
    };
  }

  private q(model: ServedModel): ModelQueues {
    return this.queues.get(model.name)!;
  }

  /** Image tokens and ITC features, one row per image. */
  images(model: ServedModel, pixels: Float32Array[], signal?: AbortSignal): Promise<ImageRow[]> {
    const rows = pixels.map((p) => ({ pixels: p, keep: 0 }));
    return this.q(model).vision.submit(rows, signal, new StageTimer(requestTimings())) as Promise<ImageRow[]>;
  }

  /**
   * ITC features, with each image's tokens kept in the worker that ran the vision graph, for `uses` graph reads
   * there (a caption's decode; a question's encoder, and its decode where the decoder reads the image). What the
   * reads do not take is released when the request ends (`release`), or by the worker after a timeout.
   */
  keptImages(model: ServedModel, pixels: Float32Array[], uses: number, signal?: AbortSignal): Promise<KeptImage[]> {
    const rows = pixels.map((p) => ({ pixels: p, keep: uses }));
    return this.q(model).vision.submit(rows, signal, new StageTimer(requestTimings())) as Promise<KeptImage[]>;
  }

  /** Drops what these rows keep in workers (their request ended before a graph read it); idempotent. */
  release(kept: (Float32Array | Kept)[]): void {
    for (const k of kept) {
      if (k instanceof Float32Array) continue;
      this.pool.release(k.worker, [k.handle]);
      this.kept.forget(k.handle);
    }
  }

  /** ITC features of token rows starting with [CLS]. */
  texts(model: ServedModel, ids: number[][], signal?: AbortSignal): Promise<Float32Array[]> {
    return this.q(model).text.submit(ids, signal, new StageTimer(requestTimings()));
  }

  /** ITM match logits of (image tokens, [ENC] text) pairs. */
  itm(model: ServedModel, rows: FusedRow[], signal?: AbortSignal): Promise<number[]> {
    return this.q(model).itm.submit(rows, signal, new StageTimer(requestTimings()));
  }

  /** Question states (cross-attention over the image) for VQA. */
  questions(model: ServedModel, rows: FusedRow[], signal?: AbortSignal): Promise<StatesRow[]> {
    return this.q(model).vqa_encoder.submit(rows, signal, new StageTimer(requestTimings()));
  }

  /**
   * Greedy or beam decoding; caption and VQA rows decode in the same batches. Rows with `row.stream` report each
   * token to `onToken(i, token)` (i: the row's index in `rows`) as the worker chooses it. When `signal` aborts, the
   * rows leave their queue or, already decoding, stop at the decoder's next step.
   */
  generate(
    model: ServedModel,
    rows: GenInput[],
    signal?: AbortSignal,
    onToken?: (i: number, token: number) => void,
  ): Promise<GenResult[]> {
    const inputs = rows.map((r, i) => {
      const tell = onToken && ((t: number) => (this.streamed.add(tell!), onToken(i, t)));
      return { ...r, signal, onToken: tell };
    });
    return this.q(model)
      .decoder.submit(inputs, signal, new StageTimer(requestTimings()))
      .catch((err: unknown) => {
        // rows a decode did not take keep their rows in a worker: release them (a taken handle is ignored)
        for (const r of rows)
          if (r.worker !== null) this.release(heldHandles(r).map((handle) => ({ worker: r.worker!, handle })));
        throw err;
      });
  }
}

/** The rows of each request (their abort signal) in a batch: one listener per request, not per row. */
function rowsBySignal(rows: GenInput[]): Map<AbortSignal, number[]> {
  const by = new Map<AbortSignal, number[]>();
  rows.forEach((r, i) => {
    if (r.signal) by.set(r.signal, [...(by.get(r.signal) ?? []), i]);
  });
  return by;
}

/** Calls `fn` once when `signal` aborts (now, if it already has); returns what removes the listener. */
function watchAbort(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    fn();
    return () => {};
  }
  signal.addEventListener("abort", fn, { once: true });
  return () => signal.removeEventListener("abort", fn);
}

function abortCode(signal: AbortSignal | undefined): string {
  return (signal?.reason as { code?: string } | undefined)?.code ?? "aborted";
}

function transferables(feeds: Record<string, WireTensor | RowsFeed>): ArrayBuffer[] {
  return Object.values(feeds).flatMap((t) => (t.type === "rows" ? [] : [t.data.buffer as ArrayBuffer]));
}
