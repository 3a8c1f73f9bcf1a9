// The collections benchmark's pure parts (bench/collections-data.ts): the exact top-k that recall is measured
// against, and recall itself, each against a brute-force or hand-computed reference.
import assert from "node:assert/strict";
import { test } from "node:test";
import { exactTopK, recall, row } from "../../bench/collections-data.js";
import { rng } from "../../bench/load.js";

test("exactTopK equals a full sort by dot product (ties: the lower index first), over the first n rows only", () => {
  const r = rng(7);
  const dim = 8;
  const n = 500;
  const x = Float32Array.from({ length: (n + 20) * dim }, () => Math.round((r() - 0.5) * 8) / 4); // many ties
  for (let q = 0; q < 20; q++) {
    const qv = row(x, dim, n + q);
    const dots = Array.from({ length: n }, (_, i) => {
      let s = 0;
      for (let d = 0; d < dim; d++) s += x[i * dim + d] * qv[d];
      return { i, s };
    });
    const want = dots
      .sort((a, b) => b.s - a.s || a.i - b.i)
      .slice(0, 10)
      .map((d) => d.i);
    assert.deepEqual(exactTopK(x, dim, n, qv, 10), want);
  }
  assert.deepEqual(exactTopK(x, dim, 3, row(x, dim, 0), 10).sort(), [0, 1, 2], "fewer rows than k: all of them");
});

test("recall is the share of the true top k found", () => {
  assert.equal(recall([1, 2, 3, 4], [4, 3, 2, 1]), 1);
  assert.equal(recall([1, 2, 9, 8], [1, 2, 3, 4]), 0.5);
  assert.equal(recall([], [1, 2]), 0);
});
