// Rows <-> batched tensors for each graph of FORMAT.md: stacking, padding token rows, splitting outputs per row.
// Pure functions (the batcher calls them around a worker run); shapes in comments follow FORMAT.md.
import type { GenRow } from "../decode/search.js";
import { padRows } from "../preprocess/text.js";
import type { WireTensor } from "./protocol.js";

export type Feeds = Record<string, WireTensor>;

export interface ImageRow {
  embeds: Float32Array; // (N * Dv) image token embeddings, [CLS] first
  feat: Float32Array; // (E) L2-normalised ITC feature
}

export interface FusedRow {
  embeds: Float32Array; // (N * Dv) image tokens of the pair
  ids: number[]; // [ENC] text [SEP]
}

export interface StatesRow {
  states: Float32Array; // (Lq * Dt) question states
  length: number; // Lq (all real tokens: padding is cut off)
}

export interface GenInput {
  hidden: Float32Array; // (M * D) encoder states: image tokens (captions) or question states (VQA)
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

export function splitVision(out: Feeds, B: number): ImageRow[] {
  const e = out.image_embeds; // (B, N, Dv)
  const f = out.image_feat; // (B, E)
  const es = e.dims[1] * e.dims[2];
  const fs = f.dims[1];
  return Array.from({ length: B }, (_, i) => ({
    embeds: (e.data as Float32Array).slice(i * es, (i + 1) * es),
    feat: (f.data as Float32Array).slice(i * fs, (i + 1) * fs),
  }));
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

export function fusedFeeds(rows: FusedRow[], pad: number, N: number, Dv: number): Feeds {
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

export function splitStates(out: Feeds, rows: FusedRow[]): StatesRow[] {
  const q = out.question_states; // (B, Lq, Dt)
  const [, L, D] = q.dims;
  return rows.map((r, i) => ({
    states: (q.data as Float32Array).slice(i * L * D, i * L * D + r.ids.length * D),
    length: r.ids.length,
  }));
}

/**
 * What the VQA answer decoder reads for one question: its states, followed by its image's tokens where the bundle says
 * so (`model.vqa_decoder_reads_image`); `length` counts both. Cross-attention has no positions, so packing
 * the real question tokens before the image tokens equals the exporter's padded layout.
 */
export function answerContext(
  q: StatesRow,
  image: ImageRow,
  readsImage: boolean,
): { hidden: Float32Array; length: number } {
  if (!readsImage) return { hidden: q.states, length: q.length };
  const hidden = new Float32Array(q.states.length + image.embeds.length);
  hidden.set(q.states, 0);
  hidden.set(image.embeds, q.states.length);
  const D = q.states.length / q.length;
  return { hidden, length: q.length + image.embeds.length / D };
}

/** Encoder states of several rows, right-padded to the longest, (B, M, D), with each row's real length. */
export function generationFeeds(rows: GenInput[], D: number): { hidden: WireTensor; lengths: number[] } {
  const M = Math.max(...rows.map((r) => r.length));
  const hidden = new Float32Array(rows.length * M * D);
  rows.forEach((r, i) => hidden.set(r.hidden.subarray(0, r.length * D), i * M * D));
  return { hidden: { type: "float32", dims: [rows.length, M, D], data: hidden }, lengths: rows.map((r) => r.length) };
}
