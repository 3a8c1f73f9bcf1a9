import assert from "node:assert/strict";
import { test } from "node:test";
import { dot, rankResults, topK } from "../../src/postprocess/rank.js";

test("topK: best first, ties by index, k capped", () => {
  assert.deepEqual(topK([0.1, 0.9, 0.5, 0.9], 3), [1, 3, 2]);
  assert.deepEqual(topK([0.1, 0.2], 10), [1, 0]);
  assert.deepEqual(topK([], 3), []);
});

test("rankResults: itm + itc when re-ranked, itc alone otherwise", () => {
  const sims = [0.2, 0.8, 0.5];
  const top = topK(sims, 2); // [1, 2]
  const plain = rankResults(sims, top, null);
  assert.deepEqual(
    plain.map((r) => r.index),
    [1, 2],
  );
  assert.equal(plain[0].itm_score, null);
  const re = rankResults(sims, top, [-3, 1]); // candidate 2's ITM overturns ITC
  assert.deepEqual(
    re.map((r) => r.index),
    [2, 1],
  );
  assert.ok(Math.abs(re[0].score - 1.5) < 1e-12);
  assert.equal(re[1].itm_score, -3);
  assert.equal(dot([1, 2], [3, 4]), 11);
});
