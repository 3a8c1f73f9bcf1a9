// A bundle's graphs run directly on onnxruntime-node in this process: no HTTP, no worker thread, no queue. The
// server's own code builds the feeds (inference/graphs.ts), preprocesses images and decodes (decode/search.ts with
// the key/value-cache stepper), so the only difference from the server is everything around the graphs.
import path from "node:path";
import * as ort from "onnxruntime-node";
import { cacheNames } from "../src/bundle/contract.js";
import { GRAPHS, readManifest, type GraphName, type Manifest } from "../src/bundle/manifest.js";
import { generate, type DecoderStepper, type GenResult, type GenRow } from "../src/decode/search.js";
import {
  fusedFeeds,
  generationFeeds,
  splitStates,
  splitVision,
  textFeeds,
  visionFeeds,
  type Feeds,
  type GenInput,
  type ImageRow,
  type StatesRow,
} from "../src/inference/graphs.js";
import type { WireTensor } from "../src/inference/protocol.js";
import { gatherRows, OnnxStepper, type DecoderShape } from "../src/inference/stepper.js";
import { imageSpec, preprocessImage } from "../src/preprocess/image.js";
import { TextTokenizer } from "../src/preprocess/text.js";
import type { Workload } from "./workload.js";

export type Variant = "fp32" | "int8";
export type GpuVariant = "fp32" | "fp16"; // bench/gpu.ts: the float graphs, or the bundle's float16 ones
export type ExecutionProvider = "cpu" | "cuda";

// Decoder graph timings feed one new token after this many cached positions (about half a Shapes caption)
export const DECODER_PAST = 10;

export function sessionOptions(threads: number, ep: ExecutionProvider = "cpu"): ort.InferenceSession.SessionOptions {
  // the worker's options (src/inference/worker.ts); cuda: device 0, the nodes it cannot run on the CPU
  return {
    executionProviders: ep === "cuda" ? [{ name: "cuda", deviceId: 0 }] : ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  };
}

export function hasInt8(m: Manifest): boolean {
  return GRAPHS.every((g) => m.graphs[g]?.int8 !== undefined);
}

/** A graph's float16 file, where the manifest lists one (bundle format 4: graphs.G.fp16.file). */
export function fp16File(m: Manifest, g: GraphName): string | undefined {
  return (m.graphs[g] as { fp16?: { file: string } }).fp16?.file;
}

export function hasFp16(m: Manifest): boolean {
  return GRAPHS.every((g) => fp16File(m, g) !== undefined);
}

const toOrt = (t: WireTensor) => new ort.Tensor(t.type, t.data, t.dims);

/** Inputs derived from the workload once per model: pixels, token rows, image tokens. */
export interface ModelInputs {
  pixels: Float32Array[]; // (3 * S * S) per image
  captionIds: number[][]; // [CLS] caption [SEP]
  pairIds: number[][]; // [ENC] caption [SEP] (ITM)
  questionIds: number[][]; // [ENC] question [SEP] (VQA)
  images: ImageRow[]; // vision outputs of the pixels
}

/** Rows 0..B-1 of xs, cycling when B exceeds its length. */
export function take<T>(xs: readonly T[], B: number): T[] {
  return Array.from({ length: B }, (_, i) => xs[i % xs.length]);
}

export class RawModel {
  private constructor(
    readonly dir: string,
    readonly variant: Variant | GpuVariant,
    readonly manifest: Manifest,
    readonly tokenizer: TextTokenizer,
    readonly sessions: Record<GraphName, ort.InferenceSession>,
  ) {}

  /** The bundle's graphs; int8: its own int8 files, or `int8Files` (absolute paths) for a bundle without them. */
  static async load(
    dir: string,
    variant: Variant | GpuVariant,
    threads: number,
    int8Files?: Record<GraphName, string>,
    ep: ExecutionProvider = "cpu",
  ): Promise<RawModel> {
    const manifest = readManifest(dir);
    if (variant === "int8" && !hasInt8(manifest) && !int8Files)
      throw new Error(`${dir}: the bundle has no int8 graphs`);
    if (variant === "fp16" && !hasFp16(manifest))
      throw new Error(`${dir}: the bundle has no fp16 graphs (export it with --fp16)`);
    const sessions = {} as Record<GraphName, ort.InferenceSession>;
    for (const g of GRAPHS) {
      const spec = manifest.graphs[g]!; // the bench loads bundles of every task (every graph)
      const file =
        variant === "fp32"
          ? path.join(dir, spec.file)
          : variant === "fp16"
            ? path.join(dir, fp16File(manifest, g)!)
            : (int8Files?.[g] ?? path.join(dir, spec.int8!.file));
      sessions[g] = await ort.InferenceSession.create(file, sessionOptions(threads, ep));
    }
    const tk = manifest.tokenizer;
    return new RawModel(
      dir,
      variant,
      manifest,
      TextTokenizer.fromFile(path.join(dir, tk.file), tk.special_tokens),
      sessions,
    );
  }

  get special() {
    return this.manifest.tokenizer.special_tokens;
  }

  get decoderShape(): DecoderShape {
    const m = this.manifest.model;
    return { layers: m.decoder_layers, heads: m.decoder_heads, headDim: m.decoder_head_dim, vocab: m.vocab_size };
  }

  async release(graphs: readonly GraphName[] = GRAPHS): Promise<void> {
    for (const g of graphs) {
      await this.sessions[g]?.release();
      delete (this.sessions as Partial<Record<GraphName, ort.InferenceSession>>)[g];
    }
  }

  async run(
    graph: GraphName,
    feeds: Feeds | Record<string, ort.Tensor>,
  ): Promise<ort.InferenceSession.OnnxValueMapType> {
    const ortFeeds = Object.fromEntries(
      Object.entries(feeds).map(([k, v]) => [k, v instanceof ort.Tensor ? v : toOrt(v as WireTensor)]),
    );
    return this.sessions[graph].run(ortFeeds);
  }

  async prepare(w: Workload): Promise<ModelInputs> {
    const spec = imageSpec(this.manifest.preprocessing, 40_000_000);
    const pixels = await Promise.all(w.images.map((b, i) => preprocessImage(b, spec, w.files[i])));
    const tk = this.manifest.tokenizer;
    const enc = this.special.enc;
    return {
      pixels,
      captionIds: w.captions.map((c) => this.tokenizer.encode(c, tk.max_text_tokens)),
      pairIds: w.captions.map((c) => this.tokenizer.encodeWithFirst(c, tk.max_text_tokens, enc)),
      questionIds: w.questions.map((q) => this.tokenizer.encodeWithFirst(q, tk.max_text_tokens, enc)),
      images: await this.encodeImages(pixels),
    };
  }

  async encodeImages(pixels: Float32Array[]): Promise<ImageRow[]> {
    const size = this.manifest.preprocessing.image_size;
    const out = await this.run("vision", visionFeeds(pixels, size));
    return splitVision(out as unknown as Feeds, pixels.length);
  }

  async questionStates(images: ImageRow[], ids: number[][]): Promise<StatesRow[]> {
    const { image_tokens: N, vision_width: Dv } = this.manifest.model;
    const rows = images.map((im, i) => ({ embeds: im.embeds, ids: ids[i] }));
    const out = await this.run("vqa_encoder", fusedFeeds(rows, this.special.pad, N, Dv));
    return splitStates(out as unknown as Feeds, rows);
  }

  /**
   * Greedy or beam decoding of `rows` as the server's worker does it: cross_kv once, then the decoder steps with the
   * self-attention cache; uncached: every step runs cross_kv and the decoder over the whole prefix, nothing kept.
   */
  async generate(rows: GenInput[], cached = true): Promise<{ results: GenResult[]; steps: number }> {
    const D = rows[0].parts.reduce<number>((n, p) => n + (p as Float32Array).length, 0) / rows[0].length;
    const { hidden, lengths } = generationFeeds(rows, D);
    const stepper = cached
      ? new OnnxStepper(this.sessions.decoder, this.sessions.cross_kv, ort.Tensor, this.decoderShape, D)
      : new UncachedStepper(
          this.sessions.decoder,
          this.sessions.cross_kv,
          this.decoderShape,
          hidden.data as Float32Array,
          lengths,
          D,
        );
    if (stepper instanceof OnnxStepper) stepper.addEncoders(hidden.data as Float32Array, lengths);
    const results = await generate(
      stepper,
      rows.map((r) => r.row),
      this.special.dec,
      this.special.sep,
    );
    return { results, steps: stepper.steps };
  }

  /** Feeds of one graph at batch B, from the prepared inputs (decoder: one token after DECODER_PAST positions). */
  graphFeeds(graph: GraphName, inputs: ModelInputs, B: number): Feeds {
    const { image_tokens: N, vision_width: Dv, decoder_heads: H, decoder_head_dim: Dh } = this.manifest.model;
    const pad = this.special.pad;
    const images = take(inputs.images, B);
    if (graph === "vision") return visionFeeds(take(inputs.pixels, B), this.manifest.preprocessing.image_size);
    if (graph === "text") return textFeeds(take(inputs.captionIds, B), pad);
    if (graph === "itm" || graph === "vqa_encoder") {
      const ids = take(graph === "itm" ? inputs.pairIds : inputs.questionIds, B);
      return fusedFeeds(
        images.map((im, i) => ({ embeds: im.embeds, ids: ids[i] })),
        pad,
        N,
        Dv,
      );
    }
    const { hidden } = generationFeeds(
      images.map((im) => ({
        parts: [im.embeds],
        worker: null,
        length: N,
        row: { numBeams: 1, maxTokens: 1, minTokens: 0 },
      })),
      Dv,
    );
    if (graph === "cross_kv") return { encoder_hidden: hidden };
    const P = DECODER_PAST;
    const names = cacheNames(this.manifest.model.decoder_layers);
    const feeds: Feeds = {
      input_ids: { type: "int64", dims: [B, 1], data: new BigInt64Array(B).fill(BigInt(this.special.dec)) },
      position_ids: { type: "int64", dims: [B, 1], data: new BigInt64Array(B).fill(BigInt(P)) },
      attention_mask: { type: "int64", dims: [B, P + 1], data: new BigInt64Array(B * (P + 1)).fill(1n) },
      encoder_mask: { type: "int64", dims: [B, N], data: new BigInt64Array(B * N).fill(1n) },
    };
    for (const name of names.past)
      feeds[name] = { type: "float32", dims: [B, H, P, Dh], data: new Float32Array(B * H * P * Dh).fill(0.01) };
    for (const name of names.cross)
      feeds[name] = { type: "float32", dims: [B, H, N, Dh], data: new Float32Array(B * H * N * Dh).fill(0.01) };
    return feeds;
  }
}

/**
 * Decoding without any cache: every step runs cross_kv over the slots' encoder states again and feeds the whole
 * prefix ([DEC] and the tokens so far) to the decoder with an empty past (P = 0), keeping the last position's logits.
 * Same tokens as the cached stepper, more work per step (what a decoder without the format's caches would do).
 */
export class UncachedStepper implements DecoderStepper {
  readonly vocab: number;
  steps = 0;
  private seqs: number[][] = []; // tokens fed so far per slot, [DEC] first
  private rows: number[] = []; // encoder row per slot
  private readonly M: number;

  constructor(
    private readonly decoder: ort.InferenceSession,
    private readonly crossKv: ort.InferenceSession,
    private readonly shape: DecoderShape,
    private readonly hidden: Float32Array, // (B, M, D), rows right-padded
    private readonly lengths: readonly number[],
    private readonly D: number,
  ) {
    this.vocab = shape.vocab;
    this.M = hidden.length / (lengths.length * D);
  }

  async step(tokens: readonly number[], from: readonly number[]): Promise<Float32Array> {
    const R = tokens.length;
    const { layers, heads, headDim, vocab } = this.shape;
    const names = cacheNames(layers);
    const M = this.M;
    this.rows = from.map((f) => (f < 0 ? -1 - f : this.rows[f]));
    this.seqs = from.map((f, i) => [...(f < 0 ? [] : this.seqs[f]), tokens[i]]);
    const T = this.seqs[0].length; // every live slot has fed the same number of tokens (no rows join)
    const hidden = gatherRows(this.hidden, M * this.D, this.rows);
    const mask = new BigInt64Array(R * M);
    this.rows.forEach((row, r) => mask.fill(1n, r * M, r * M + this.lengths[row]));
    const cross = await this.crossKv.run({ encoder_hidden: new ort.Tensor("float32", hidden, [R, M, this.D]) });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(this.seqs.flat(), BigInt), [R, T]),
      position_ids: new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: R * T }, (_, i) => BigInt(i % T)),
        [R, T],
      ),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(R * T).fill(1n), [R, T]),
      encoder_mask: new ort.Tensor("int64", mask, [R, M]),
    };
    for (const name of names.past) feeds[name] = new ort.Tensor("float32", new Float32Array(0), [R, heads, 0, headDim]);
    for (const name of names.cross) feeds[name] = cross[name];
    const out = await this.decoder.run(feeds);
    this.steps++;
    const all = out.logits.data as Float32Array; // (R, T, V): keep position T - 1 of each row
    const logits = new Float32Array(R * vocab);
    for (let r = 0; r < R; r++) logits.set(all.subarray((r * T + T - 1) * vocab, (r * T + T) * vocab), r * vocab);
    return logits;
  }
}

/** Generation rows for images: captions as the server decodes them (greedy, at least one token). */
export function captionRows(images: ImageRow[], N: number, row: GenRow): GenInput[] {
  return images.map((im) => ({ parts: [im.embeds], worker: null, length: N, row }));
}
