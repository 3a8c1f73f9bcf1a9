import assert from "node:assert/strict";
import { test } from "node:test";
import { coefficients, FILTERS, pilResize } from "../../src/preprocess/resample.js";

test("coefficients of each output sum to 1 (in fixed point) and stay inside the input", () => {
  for (const [inSize, outSize] of [
    [40, 32],
    [30, 32],
    [16, 32],
    [320, 32],
    [7, 3],
  ]) {
    const { ksize, bounds, k } = coefficients(inSize, outSize, FILTERS.bicubic);
    for (let o = 0; o < outSize; o++) {
      const [min, n] = [bounds[o * 2], bounds[o * 2 + 1]];
      assert.ok(min >= 0 && min + n <= inSize);
      let sum = 0;
      for (let x = 0; x < n; x++) sum += k[o * ksize + x];
      assert.ok(Math.abs(sum - 2 ** 22) <= n, `sum ${sum} for ${inSize}->${outSize}`);
    }
  }
});

test("a constant image stays constant; identity size is a copy", () => {
  const flat = new Uint8Array(10 * 6 * 3).fill(77);
  assert.ok(pilResize(flat, 10, 6, 3, 4, 9, "bicubic").every((v) => v === 77));
  const ramp = Uint8Array.from({ length: 4 * 4 }, (_, i) => i * 10);
  assert.deepEqual(pilResize(ramp, 4, 4, 1, 4, 4, "bilinear"), ramp);
});

test("a hand-computed 2 -> 4 bilinear enlargement", () => {
  // Pillow: out x centres at 0.25, 0.75, 1.25, 1.75 of a 2-pixel row [0, 200]; weights clipped at the edges
  const out = pilResize(Uint8Array.from([0, 200]), 2, 1, 1, 4, 1, "bilinear");
  assert.deepEqual([...out], [0, 50, 150, 200]);
});
