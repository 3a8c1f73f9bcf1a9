import assert from "node:assert/strict";
import { test } from "node:test";
import { cachedCoefficients, coefficients, FILTERS, resize } from "../../src/preprocess/resample.js";
import { pilResize } from "../helpers/pil-resize.js";

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

test("resize (cached coefficients, int32 passes) equals the Pillow port bit for bit: random images, sizes, filters", () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32; // deterministic LCG
  const sizes = [1, 2, 3, 5, 7, 16, 31, 32, 33, 48, 64, 100, 256, 320];
  let cases = 0;
  for (let t = 0; t < 160; t++) {
    const w = sizes[Math.floor(rand() * sizes.length)];
    const h = sizes[Math.floor(rand() * sizes.length)];
    const c = [1, 3, 4][t % 3];
    const outW = sizes[Math.floor(rand() * sizes.length)];
    const outH = sizes[Math.floor(rand() * sizes.length)];
    // extremes (0 and 255) exercise the clipping of the cubic's negative lobes
    const src = Uint8Array.from({ length: w * h * c }, () => (rand() < 0.3 ? (rand() < 0.5 ? 0 : 255) : rand() * 256));
    for (const f of ["bicubic", "bilinear"] as const) {
      const want = pilResize(src, w, h, c, outW, outH, f);
      const got = resize(src, w, h, c, outW, outH, f);
      assert.equal(got.length, want.length);
      assert.ok(
        got.every((v, i) => v === want[i]),
        `${w}x${h}x${c} -> ${outW}x${outH} ${f}`,
      );
      cases++;
    }
  }
  assert.equal(cases, 320);
  // the 256 px Shapes case, and a copy (not the input itself) at identity size
  const big = Uint8Array.from({ length: 256 * 256 * 3 }, () => rand() * 256);
  assert.deepEqual(resize(big, 256, 256, 3, 64, 64, "bicubic"), pilResize(big, 256, 256, 3, 64, 64, "bicubic"));
  const same = resize(big, 256, 256, 3, 256, 256, "bicubic");
  assert.notEqual(same, big);
  assert.deepEqual(same, big);
});

test("cachedCoefficients: computed once per (input, output, filter)", () => {
  const a = cachedCoefficients(256, 64, "bicubic");
  assert.equal(cachedCoefficients(256, 64, "bicubic"), a);
  assert.notEqual(cachedCoefficients(256, 64, "bilinear"), a);
  assert.deepEqual(a, coefficients(256, 64, FILTERS.bicubic));
});
