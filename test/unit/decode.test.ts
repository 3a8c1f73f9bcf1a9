import assert from "node:assert/strict";
import { test } from "node:test";
import { generate, logSoftmaxRow, type DecoderStepper, type GenRow } from "../../src/decode/search.js";

const V = 7;
const BOS = 5;
const EOS = 3;

/** Deterministic pseudo-random logits from (encoder row, tokens so far): a stand-in for the decoder graph. */
function logitsFor(row: number, history: readonly number[], seed: number): Float32Array {
  let h = 2166136261 ^ seed ^ (row * 7919);
  const out = new Float32Array(V);
  for (const t of history) h = Math.imul(h ^ t, 16777619);
  for (let v = 0; v < V; v++) {
    h = Math.imul(h ^ (v + 101), 16777619);
    out[v] = ((h >>> 8) % 1000) / 250 - 2 + (v === EOS ? history.length / 4 - 1 : 0); // [SEP] grows likelier
  }
  return out;
}

/** A fake stepper that tracks each slot's history through `from`, as the real one tracks its cache. */
class FakeStepper implements DecoderStepper {
  readonly vocab = V;
  calls: number[] = []; // slots per step
  private slots: { row: number; hist: number[] }[] = [];
  constructor(private readonly seed: number) {}
  async step(tokens: readonly number[], from: readonly number[]): Promise<Float32Array> {
    this.slots = tokens.map((tok, i) => {
      const prev = from[i] < 0 ? { row: -1 - from[i], hist: [] as number[] } : this.slots[from[i]];
      return { row: prev.row, hist: [...prev.hist, tok] };
    });
    this.calls.push(tokens.length);
    const out = new Float32Array(tokens.length * V);
    this.slots.forEach((s, i) => out.set(logitsFor(s.row, s.hist, this.seed), i * V));
    return out;
  }
}

// ---- references: straight ports of training/dlip/infer/search.py for one row ------------------------------

function refGreedy(row: number, seed: number, max: number, min: number, prefix: number[] = []): number[] {
  const hist = [BOS, ...prefix];
  const out: number[] = [];
  for (let t = 0; t < max; t++) {
    const l = logitsFor(row, hist, seed);
    if (t < min) l[EOS] = -Infinity;
    let nxt = 0;
    for (let v = 1; v < V; v++) if (l[v] > l[nxt]) nxt = v;
    out.push(nxt);
    if (nxt === EOS) break;
    hist.push(nxt);
  }
  return out.includes(EOS) ? out.slice(0, out.indexOf(EOS)) : out;
}

function refBeam(row: number, seed: number, max: number, k: number, min: number, lp = 1): number[] {
  return refBeamAll(row, seed, max, k, min, lp)[0]?.[1] ?? [];
}

/** Every finished hypothesis of the reference beam search, best first (stable: first of equals first). */
function refBeamAll(row: number, seed: number, max: number, k: number, min: number, lp = 1): [number, number[]][] {
  // k slots from the start, beams 1.. at -inf, as the Python code (B = 1)
  let seqs: number[][] = Array.from({ length: k }, () => []);
  let scores = Array.from({ length: k }, (_, i) => (i === 0 ? 0 : -Infinity));
  const finished: [number, number[]][] = [];
  for (let t = 0; t < max; t++) {
    const cand: [number, number][] = [];
    for (let b = 0; b < k; b++) {
      const lpRow = logSoftmaxRow(logitsFor(row, [BOS, ...seqs[b]], seed), 0, V);
      if (t < min) lpRow[EOS] = -Infinity;
      for (let v = 0; v < V; v++) cand.push([scores[b] + lpRow[v], b * V + v]);
    }
    cand.sort((x, y) => y[0] - x[0] || x[1] - y[1]);
    const top = cand.slice(0, 2 * k);
    const newScores = Array(k).fill(-Infinity);
    const src = Array(k).fill(0);
    const tok = Array(k).fill(EOS);
    let filled = 0;
    for (const [s, j] of top) {
      const beam = Math.floor(j / V);
      const token = j % V;
      if (s === -Infinity) break;
      if (token === EOS || t === max - 1) {
        const hyp = token === EOS ? seqs[beam] : [...seqs[beam], token];
        finished.push([s / Math.max(hyp.length + 1, 1) ** lp, hyp]);
        continue;
      }
      newScores[filled] = s;
      src[filled] = beam;
      tok[filled] = token;
      filled++;
      if (filled === k) break;
    }
    const done = (() => {
      if (finished.length < k) return false;
      const worst = finished.map((f) => f[0]).sort((a, b) => b - a)[k - 1];
      const best = Math.max(...newScores);
      return !(best !== -Infinity && best / (t + 2) ** lp > worst);
    })();
    if (t === max - 1 || done) break;
    seqs = src.map((b, i) => [...seqs[b], tok[i]]);
    scores = newScores;
  }
  return finished
    .map((f, i) => [f, i] as const)
    .sort((x, y) => y[0][0] - x[0][0] || x[1] - y[1])
    .map(([f]) => f);
}

test("greedy equals the reference, per row, min_tokens honoured", async () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rows: GenRow[] = [0, 1, 2, 3].map((r) => ({ numBeams: 1, maxTokens: 4 + r * 3, minTokens: r % 2 }));
    const res = await generate(new FakeStepper(seed), rows, BOS, EOS);
    rows.forEach((r, i) =>
      assert.deepEqual(res[i].ids, refGreedy(i, seed, r.maxTokens, r.minTokens), `seed ${seed} row ${i}`),
    );
    for (const [i, r] of res.entries()) {
      assert.ok(r.ids.length <= rows[i].maxTokens);
      assert.ok(Number.isFinite(r.logprob) && r.logprob <= 0);
      if (rows[i].minTokens) assert.ok(r.ids.length >= 1);
    }
  }
});

test("beam search equals the reference (Python's algorithm) for each row alone", async () => {
  for (const seed of [11, 12, 13, 14, 15, 16]) {
    for (const k of [2, 3, 4]) {
      const res = await generate(new FakeStepper(seed), [{ numBeams: k, maxTokens: 9, minTokens: 1 }], BOS, EOS);
      assert.deepEqual(res[0].ids, refBeam(0, seed, 9, k, 1), `seed ${seed} k ${k}`);
    }
  }
});

test("rows with different beams and budgets decode together, each as if alone", async () => {
  const rows: GenRow[] = [
    { numBeams: 3, maxTokens: 8, minTokens: 1 },
    { numBeams: 1, maxTokens: 5, minTokens: 0 },
    { numBeams: 2, maxTokens: 12, minTokens: 2 },
    { numBeams: 1, maxTokens: 1, minTokens: 1 },
  ];
  const stepper = new FakeStepper(21);
  const res = await generate(stepper, rows, BOS, EOS);
  assert.deepEqual(res[0].ids, refBeam(0, 21, 8, 3, 1));
  assert.deepEqual(res[1].ids, refGreedy(1, 21, 5, 0));
  assert.deepEqual(res[2].ids, refBeam(2, 21, 12, 2, 2));
  assert.deepEqual(res[3].ids, refGreedy(3, 21, 1, 1));
  assert.equal(stepper.calls[0], 4, "first step: one slot per row");
  assert.ok(stepper.calls.length <= 12, "stops once every row is done");
  assert.ok(stepper.calls.at(-1)! <= 3, "finished rows drop out of the batch");
});

test("max_tokens = 1 yields exactly one token when [SEP] is forbidden", async () => {
  const res = await generate(
    new FakeStepper(3),
    [
      { numBeams: 1, maxTokens: 1, minTokens: 1 },
      { numBeams: 3, maxTokens: 1, minTokens: 1 },
    ],
    BOS,
    EOS,
  );
  assert.equal(res[0].ids.length, 1);
  assert.equal(res[1].ids.length, 1);
  assert.notEqual(res[0].ids[0], EOS);
});

test("bad rows are refused", async () => {
  await assert.rejects(generate(new FakeStepper(1), [{ numBeams: 0, maxTokens: 3, minTokens: 0 }], BOS, EOS));
});

test("n-best: the n best finished hypotheses of a beam row, best first; the first is the n = 1 result", async () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    for (const k of [2, 3, 4]) {
      const one = await generate(new FakeStepper(seed), [{ numBeams: k, maxTokens: 9, minTokens: 1 }], BOS, EOS);
      const row = { numBeams: k, maxTokens: 9, minTokens: 1, numReturn: k };
      const [res] = await generate(new FakeStepper(seed), [row], BOS, EOS);
      const ref = refBeamAll(0, seed, 9, k, 1).slice(0, k);
      assert.deepEqual(
        res.nbest!.map((h) => h.ids),
        ref.map((r) => r[1]),
        `seed ${seed} k ${k}`,
      );
      assert.deepEqual(
        res.nbest!.map((h) => h.logprob),
        ref.map((r) => r[0]),
      );
      for (let i = 1; i < res.nbest!.length; i++) assert.ok(res.nbest![i - 1].logprob >= res.nbest![i].logprob);
      assert.deepEqual({ ...res, nbest: undefined }, { ...one[0], nbest: undefined }, "best = the n = 1 result");
      assert.equal(one[0].nbest, undefined, "n = 1 results carry no list");
    }
  }
  await assert.rejects(
    generate(new FakeStepper(1), [{ numBeams: 2, maxTokens: 3, minTokens: 0, numReturn: 3 }], BOS, EOS),
    /bad row/,
  );
});

test("finish: stop when [SEP] ended a row, length when the budget did", async () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    for (const max of [1, 2, 4, 12]) {
      const ref = refGreedy(0, seed, max, 0);
      const [g] = await generate(new FakeStepper(seed), [{ numBeams: 1, maxTokens: max, minTokens: 0 }], BOS, EOS);
      assert.equal(g.finish, ref.length === max ? "length" : "stop", `seed ${seed} max ${max}`);
      const [b] = await generate(
        new FakeStepper(seed),
        [{ numBeams: 3, maxTokens: max, minTokens: 0, numReturn: 3 }],
        BOS,
        EOS,
      );
      for (const h of b.nbest!) assert.equal(h.finish, h.ids.length === max ? "length" : "stop");
    }
  }
  const [cut] = await generate(new FakeStepper(2), [{ numBeams: 1, maxTokens: 1, minTokens: 1 }], BOS, EOS);
  assert.equal(cut.finish, "length");
});

test("a prompt prefix is fed after [DEC] and left out of the result and of the budget", async () => {
  for (const seed of [1, 2, 3, 4]) {
    const prefix = [0, 6, 2];
    const rows: GenRow[] = [
      { numBeams: 1, maxTokens: 6, minTokens: 1, prefix },
      { numBeams: 1, maxTokens: 6, minTokens: 1 },
    ];
    const res = await generate(new FakeStepper(seed), rows, BOS, EOS);
    assert.deepEqual(res[0].ids, refGreedy(0, seed, 6, 1, prefix), `seed ${seed}`);
    assert.deepEqual(res[1].ids, refGreedy(1, seed, 6, 1), "other rows of the batch are unchanged");
  }
});

test("streaming rows report each token as it is chosen; stopped rows end at the next step", async () => {
  const seen: [number, number, number][] = [];
  const stepper = new FakeStepper(4);
  const rows: GenRow[] = [
    { numBeams: 1, maxTokens: 12, minTokens: 3, stream: true },
    { numBeams: 1, maxTokens: 12, minTokens: 3 },
  ];
  const res = await generate(stepper, rows, BOS, EOS, 1, {
    onToken: (row, tok) => seen.push([row, stepper.calls.length, tok]),
  });
  assert.deepEqual(
    seen.map(([, , t]) => t),
    res[0].ids,
    "one report per generated token, in order",
  );
  assert.deepEqual(
    seen.map(([, step]) => step),
    res[0].ids.map((_, i) => i + 1),
    "reported at the step that chose it",
  );
  const stop = new Set<number>();
  const s2 = new FakeStepper(4);
  const cut = await generate(s2, [{ ...rows[0], minTokens: 12 }, rows[1]], BOS, EOS, 1, {
    onToken: (row, tok) => {
      if (row === 0 && tok >= 0 && s2.calls.length === 2) stop.add(0);
    },
    stopped: (row) => stop.has(row),
  });
  assert.equal(cut[0].finish, "aborted");
  assert.equal(cut[0].ids.length, 2, "the row stopped at the step after it was asked to");
  assert.deepEqual(cut[1].ids, refGreedy(1, 4, 12, 3), "the other row decodes on");
});
