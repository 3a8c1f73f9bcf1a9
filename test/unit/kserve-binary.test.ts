// The v2 binary tensor codec (src/routes/kserve/binary.ts) against hand-built bytes.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  decodeBytes,
  decodeFp32,
  encodeBody,
  encodeBytes,
  encodeFp32,
  flattenData,
  slicePieces,
  splitBody,
} from "../../src/routes/kserve/binary.js";

test("BYTES: 4-byte little-endian length, then the bytes; round trip, empty elements included", () => {
  const enc = encodeBytes([Buffer.from("ab"), Buffer.alloc(0), Buffer.from([0xff])]);
  assert.deepEqual([...enc], [2, 0, 0, 0, 0x61, 0x62, 0, 0, 0, 0, 1, 0, 0, 0, 0xff]);
  assert.deepEqual(
    decodeBytes(enc, "t").map((b) => [...b]),
    [[0x61, 0x62], [], [0xff]],
  );
  assert.deepEqual(decodeBytes(Buffer.alloc(0), "t"), []);
  assert.throws(
    () => decodeBytes(Buffer.from([1, 0, 0]), "input 'x'"),
    /input 'x': BYTES element 0 has a truncated length prefix \(3 of 4 bytes\)/,
  );
  assert.throws(() => decodeBytes(Buffer.from([5, 0, 0, 0, 1]), "t"), /element 0 claims 5 bytes but only 1 remain/);
});

test("FP32: little-endian IEEE floats", () => {
  const enc = encodeFp32([1, -2.5]);
  assert.deepEqual([...enc], [0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0]);
  assert.deepEqual(decodeFp32(enc), [1, -2.5]);
  assert.deepEqual(decodeFp32(encodeFp32([0.1])), [Math.fround(0.1)]);
  assert.throws(() => decodeFp32(Buffer.alloc(3)), /not a multiple of 4/);
});

test("splitBody: the JSON header's length from Inference-Header-Content-Length, the rest binary", () => {
  const body = Buffer.concat([Buffer.from('{"a":1}'), Buffer.from([9, 9])]);
  const { json, binary } = splitBody(body, "7");
  assert.deepEqual(json, { a: 1 });
  assert.deepEqual([...binary], [9, 9]);
  assert.deepEqual(splitBody(Buffer.from('{"a":2}'), undefined).json, { a: 2 });
  assert.throws(() => splitBody(body, "10"), /is 10 but the body has only 9 bytes/);
  assert.throws(() => splitBody(body, "-1"), /must be a byte count/);
  assert.throws(() => splitBody(body, "6"), /invalid JSON header \(the first Inference-Header-Content-Length bytes\)/);
  assert.throws(() => splitBody(body, "0"), /no JSON header/);
  assert.throws(() => splitBody(Buffer.from("null"), undefined), /must be an object/);
});

test("slicePieces: consecutive pieces that add up exactly to the binary part", () => {
  const pieces = slicePieces(Buffer.from([1, 2, 3]), [
    { label: "a", size: 1 },
    { label: "b", size: 2 },
  ]);
  assert.deepEqual(
    pieces.map((p) => [...p]),
    [[1], [2, 3]],
  );
  assert.throws(
    () => slicePieces(Buffer.from([1, 2, 3]), [{ label: "a", size: 2 }]),
    /binary data is 3 bytes but the inputs' binary_data_size add up to 2 \(a: 2\)/,
  );
  assert.throws(() => slicePieces(Buffer.from([1]), []), /add up to 0 \(none\)/);
});

test("flattenData: flat or nested, row-major", () => {
  assert.deepEqual(flattenData([["a", "b"], ["c"]], "t"), ["a", "b", "c"]);
  assert.deepEqual(flattenData(["a"], "t"), ["a"]);
  assert.throws(() => flattenData("a", "input 'x'"), /input 'x': 'data' must be an array/);
});

test("encodeBody: JSON header then the binary pieces, with the header's byte length", () => {
  const { body, headerLength } = encodeBody({ s: "é" }, [Buffer.from([7])]);
  assert.equal(headerLength, Buffer.byteLength('{"s":"é"}'));
  assert.deepEqual(splitBody(body, String(headerLength)).json, { s: "é" });
  assert.deepEqual([...body.subarray(headerLength)], [7]);
});
