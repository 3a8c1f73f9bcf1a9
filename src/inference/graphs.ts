// Rows <-> batched tensors for each graph of FORMAT.md: stacking, padding token rows, splitting outputs per row.
// Pure functions (the batcher calls them around a worker run); shapes in comments follow FORMAT.md.
import type { GenRow } from "../decode/search.js";
import { padRows } from "../preprocess/text.js";
import type { Part, RowsFeed, WireTensor } from "./protocol.js";

export type Feeds = Record<string, WireTensor>;

/** A row kept in worker `worker` under `handle` (protocol.ts): what a later graph there reads without a copy. */
export interface Kept {
  worker: number;
  handle: number;
}

export interface ImageRow {
  embeds: Float32Array; // (N * Dv) image token embeddings, [CLS] first
  feat: Float32Array; // (E) L2-normalised ITC feature
}

/** An encoded image whose tokens stayed in the worker that ran the vision graph (captions, VQA). */
export interface KeptImage {
  embeds: Kept; // (N * Dv) there
  feat: Float32Array;
}

export interface FusedRow {
  embeds: Float32Array | Kept; // (N * Dv) image tokens of the pair
  ids: number[]; // [ENC] text [SEP]
}

export interface StatesRow {
  states: Float32Array | Kept; // (Lq * Dt) question states (kept where the image tokens were)
  length: number; // Lq (all real tokens: padding is cut off)
}

export interface GenInput {
  // (M * D) encoder states: image tokens (captions) or question states (VQA), then the image's tokens where the
  // bundle says so; inline, or handles kept in worker `worker` (the row's decode runs there)
  parts: Part[];
  worker: number | null;
  length: number; // M
  row: GenRow;
  // main thread only (never sent to a worker): where this row's streamed tokens go, and what stops it mid-decode
  onToken?: (token: number) => void;
  signal?: AbortSignal;
}

export function visionFeeds(pixels: Float32Array[], size: number): Feeds {
  const chw = 3 * size * size;
  const data = new Float32Array(pixels.length * chw); // (B, 3, S, S)
  pixels.forEach((p, i) => data.set(p, i * chw));
  return { pixel_values: { type: "float32", dims: [pixels.length, 3, size, size], data } };
}

/** Per image: its ITC feature, and its tokens, or their handle where row i was kept in worker `worker`. */
export function splitVision(out: Feeds, B: number): ImageRow[];
export function splitVision(out: Feeds, B: number, kept: (number | null)[], worker: number): (ImageRow | KeptImage)[];
export function splitVision(
  out: Feeds,
  B: number,
  kept: (number | null)[] = new Array<null>(B).fill(null),
  worker = -1,
): (ImageRow | KeptImage)[] {
  const e = out.image_embeds; // (B', N, Dv): the rows not kept
  const f = out.image_feat; // (B, E)
  const es = e.dims[1] * e.dims[2];
  const fs = f.dims[1];
  let back = 0;
  return kept.map((h, i) => {
    const feat = (f.data as Float32Array).slice(i * fs, (i + 1) * fs);
    if (h !== null) return { embeds: { worker, handle: h }, feat };
    const at = back++ * es;
    return { embeds: (e.data as Float32Array).slice(at, at + es), feat };
  });
}

export function textFeeds(rows: number[][], pad: number): Feeds {
  const { ids, mask, length } = padRows(rows, pad); // (B, L)
  return {
    input_ids: { type: "int64", dims: [rows.length, length], data: ids },
    attention_mask: { type: "int64", dims: [rows.length, length], data: mask },
  };
}

/** Row i of a (B, ...) float output as its own array. */
export function splitRows(t: WireTensor, B: number): Float32Array[] {
  const size = t.dims.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: B }, (_, i) => (t.data as Float32Array).slice(i * size, (i + 1) * size));
}

export function fusedFeeds(rows: { embeds: Float32Array; ids: number[] }[], pad: number, N: number, Dv: number): Feeds {
  const embeds = new Float32Array(rows.length * N * Dv); // (B, N, Dv)
  rows.forEach((r, i) => embeds.set(r.embeds, i * N * Dv));
  return {
    image_embeds: { type: "float32", dims: [rows.length, N, Dv], data: embeds },
    ...textFeeds(
      rows.map((r) => r.ids),
      pad,
    ),
  };
}

/** fusedFeeds, where image tokens kept in the worker make `image_embeds` a rows feed the worker stacks. */
export function keptFusedFeeds(
  rows: FusedRow[],
  pad: number,
  N: number,
  Dv: number,
): Record<string, WireTensor | RowsFeed> {
  if (rows.every((r) => r.embeds instanceof Float32Array))
    return fusedFeeds(rows as { embeds: Float32Array; ids: number[] }[], pad, N, Dv);
  const parts = rows.map((r) => [r.embeds instanceof Float32Array ? r.embeds : r.embeds.handle]);
  return {
    image_embeds: { type: "rows", dims: [rows.length, N, Dv], rows: parts },
    ...textFeeds(
      rows.map((r) => r.ids),
      pad,
    ),
  };
}

/** Question states per row, cut to its real length; rows `kept` stayed in worker `worker` (none sent back). */
export function splitStates(
  out: Feeds,
  rows: FusedRow[],
  kept: (number | null)[] = rows.map(() => null),
  worker = -1,
): StatesRow[] {
  const q = out.question_states; // (B', Lq, Dt): the rows not kept
  const [, L, D] = q.dims;
  let back = 0;
  return rows.map((r, i) => {
    const h = kept[i];
    if (h !== null) return { states: { worker, handle: h }, length: r.ids.length };
    const at = back++ * L * D;
    return { states: (q.data as Float32Array).slice(at, at + r.ids.length * D), length: r.ids.length };
  });
}

/**
 * What the VQA answer decoder reads for one question: its states, followed by its image's tokens where the bundle says
 * so (`model.vqa_decoder_reads_image`); `length` counts both (`N` image tokens). Cross-attention has no positions, so
 * packing the real question tokens before the image tokens equals the exporter's padded layout. Kept parts stay
 * handles (the worker joins them, in this order).
 */
export function answerContext(
  q: StatesRow,
  image: ImageRow | KeptImage,
  readsImage: boolean,
  N: number,
): { parts: Part[]; worker: number | null; length: number } {
  const part = (x: Float32Array | Kept): Part => (x instanceof Float32Array ? x : x.handle);
  const where = (x: Float32Array | Kept) => (x instanceof Float32Array ? null : x.worker);
  if (!readsImage) return { parts: [part(q.states)], worker: where(q.states), length: q.length };
  const worker = where(q.states) ?? where(image.embeds);
  return { parts: [part(q.states), part(image.embeds)], worker, length: q.length + N };
}

/** Encoder states of inline rows, right-padded to the longest, (B, M, D), with each row's real length. */
export function generationFeeds(rows: GenInput[], D: number): { hidden: WireTensor; lengths: number[] } {
  const M = Math.max(...rows.map((r) => r.length));
  const hidden = new Float32Array(rows.length * M * D);
  rows.forEach((r, i) => {
    let at = i * M * D;
    for (const p of r.parts) {
      if (typeof p === "number") throw new Error("generationFeeds: a kept row is not here");
      hidden.set(p, at);
      at += p.length;
    }
  });
  return { hidden: { type: "float32", dims: [rows.length, M, D], data: hidden }, lengths: rows.map((r) => r.length) };
}

/** The handles a decoder row holds (to release when its request ends without a decode taking them). */
export function heldHandles(r: GenInput): number[] {
  return r.parts.filter((p): p is number => typeof p === "number");
}
