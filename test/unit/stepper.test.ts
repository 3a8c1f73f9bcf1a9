// The format 3 stepper on the micro bundle's real graphs (cross_kv + decoder): rows that join a running decode,
// left-padded with mask 0 and their own position_ids, decode exactly as alone; greedy rows in order copy no cache.
import assert from "node:assert/strict";
import path from "node:path";
import { before, test } from "node:test";
import * as ort from "onnxruntime-node";
import { readManifest } from "../../src/bundle/manifest.js";
import { Decoding, generate, type GenResult, type GenRow } from "../../src/decode/search.js";
import { OnnxStepper, type DecoderShape } from "../../src/inference/stepper.js";
import { MICRO } from "../helpers/app.js";

const m = readManifest(MICRO);
const D = m.model.vision_width;
const shape: DecoderShape = {
  layers: m.model.decoder_layers,
  heads: m.model.decoder_heads,
  headDim: m.model.decoder_head_dim,
  vocab: m.model.vocab_size,
};
const { dec, sep } = m.tokenizer.special_tokens;
let decoder: ort.InferenceSession;
let crossKv: ort.InferenceSession;
before(async () => {
  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1 };
  decoder = await ort.InferenceSession.create(path.join(MICRO, m.graphs.decoder!.file), opts);
  crossKv = await ort.InferenceSession.create(path.join(MICRO, m.graphs.cross_kv!.file), opts);
});

/** Encoder states of M tokens, deterministic per seed (image tokens or question states alike). */
function states(seed: number, M: number): Float32Array {
  let h = 2166136261 ^ seed;
  return Float32Array.from({ length: M * D }, () => {
    h = Math.imul(h ^ 0x9e37, 16777619);
    return ((h >>> 8) % 2000) / 1000 - 1;
  });
}

const stepper = () => new OnnxStepper(decoder, crossKv, ort.Tensor, shape, D);

async function alone(hidden: Float32Array, M: number, row: GenRow): Promise<GenResult> {
  const s = stepper();
  s.addEncoders(hidden, [M]);
  return (await generate(s, [row], dec, sep))[0];
}

const greedy: GenRow = { numBeams: 1, maxTokens: 12, minTokens: 1 };
const beam: GenRow = { numBeams: 3, maxTokens: 12, minTokens: 1 };

test("rows joining and leaving a running decode get the tokens they get alone (greedy, beam; image and question lengths)", async () => {
  const N = m.model.image_tokens;
  // [seed, M, row, the step it joins at]: captions (M = N) and questions of other lengths, greedy and beam
  const plan: [number, number, GenRow, number][] = [
    [1, N, greedy, 0],
    [2, N, beam, 0],
    [3, 5, greedy, 2],
    [4, N, { ...greedy, maxTokens: 3 }, 1],
    [5, 9, beam, 3],
    [6, N, greedy, 5],
    [7, 4, { ...beam, numBeams: 2 }, 5],
  ];
  const want = await Promise.all(plan.map(([seed, M, row]) => alone(states(seed, M), M, row)));
  const s = stepper();
  const d = new Decoding(s, dec, sep);
  const got = new Map<number, GenResult>();
  const rowOf = new Map<number, number>(); // decoding row -> plan index
  let maxLive = 0;
  for (let step = 0; got.size < plan.length; step++) {
    plan.forEach(([seed, M, row, at], i) => {
      if (at !== step) return;
      const [enc] = s.addEncoders(states(seed, M), [M]);
      rowOf.set(d.add([row], [enc])[0], i);
    });
    maxLive = Math.max(maxLive, d.live);
    for (const { row, result } of await d.step()) got.set(rowOf.get(row)!, result);
  }
  assert.ok(maxLive >= 4, "rows overlapped");
  plan.forEach((_, i) => assert.deepEqual(got.get(i)!.ids, want[i].ids, `row ${i}`));
  plan.forEach((_, i) => assert.equal(got.get(i)!.logprob.toFixed(4), want[i].logprob.toFixed(4), `row ${i} score`));
});

test("greedy rows that keep their order copy no cache rows; beams and leaving rows gather", async () => {
  const N = m.model.image_tokens;
  const s = stepper();
  const hidden = new Float32Array(2 * N * D);
  hidden.set(states(1, N), 0);
  hidden.set(states(1, N), N * D);
  s.addEncoders(hidden, [N, N]);
  const rows = [greedy, greedy].map((r) => ({ ...r, minTokens: 8, maxTokens: 8 })); // both run 8 steps together
  await generate(s, rows, dec, sep);
  assert.equal(s.steps, 8);
  assert.equal(s.gatheredRows, 0, "only the first step sets the slots up; nothing is copied afterwards");
  const b = stepper();
  b.addEncoders(states(2, N), [N]);
  await generate(b, [beam], dec, sep);
  assert.ok(b.gatheredRows > 0, "beams reorder their cache");
});
