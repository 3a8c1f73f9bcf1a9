// Image tokens kept for ITM re-ranking as IEEE half floats (src/collections/tokens.ts): exact for values a half holds,
// round to nearest otherwise (within half a unit in the last place), subnormals, signed zero, overflow and NaN.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeHalf, encodeHalf } from "../../src/collections/tokens.js";

test("fp16 round trip: exact for halves (subnormals and signed zero included), 2 bytes a value", () => {
  const exact = Float32Array.from([0, -0, 1, -2, 0.5, 65504, -65504, 2 ** -14, 2 ** -24, 3 * 2 ** -24, 1.5, 3.140625]);
  const b = encodeHalf(exact);
  assert.equal(b.length, exact.length * 2);
  assert.deepEqual(Array.from(decodeHalf(b)), Array.from(exact));
  assert.ok(Object.is(decodeHalf(encodeHalf(Float32Array.from([-0])))[0], -0));
});

test("fp16: values between halves round to the nearest (within half an ulp); overflow is infinite, NaN stays NaN", () => {
  let a = 11;
  const r = () => ((a = (a * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 40; // a fixed sequence in (-20, 20)
  const x = Float32Array.from({ length: 2000 }, r);
  const y = decodeHalf(encodeHalf(x));
  for (let i = 0; i < x.length; i++) {
    const ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x[i]))), -14) - 10);
    assert.ok(Math.abs(y[i] - x[i]) <= ulp / 2, `${x[i]} -> ${y[i]}`);
  }
  assert.equal(decodeHalf(encodeHalf(Float32Array.from([1e6])))[0], Infinity);
  assert.equal(decodeHalf(encodeHalf(Float32Array.from([-1e6])))[0], -Infinity);
  assert.ok(Number.isNaN(decodeHalf(encodeHalf(Float32Array.from([NaN])))[0]));
});
