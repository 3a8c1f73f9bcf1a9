import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { readManifest } from "../../src/bundle/manifest.js";
import { padRows, TextTokenizer } from "../../src/preprocess/text.js";
import { MICRO } from "../helpers/app.js";
import { loadParity } from "../helpers/parity.js";

const manifest = readManifest(MICRO);
const tok = TextTokenizer.fromFile(path.join(MICRO, "tokenizer.json"), manifest.tokenizer.special_tokens);
const parity = loadParity();

test("token ids equal Python's (TextTokenizer) on the fixture strings, truncation included", () => {
  assert.ok(parity.tokenizer.length >= 10);
  for (const c of parity.tokenizer) {
    assert.deepEqual(tok.encode(c.text, manifest.tokenizer.max_text_tokens), c.ids, `ids of ${JSON.stringify(c.text)}`);
  }
});

test("decoding equals Python's (special tokens dropped, pieces joined)", () => {
  for (const c of parity.tokenizer) assert.equal(tok.decode(c.ids), c.decoded, `decode of ${JSON.stringify(c.text)}`);
});

test("truncation keeps [SEP] last; [ENC] replaces [CLS]", () => {
  const sp = manifest.tokenizer.special_tokens;
  const ids = tok.encode("circle ".repeat(50), 8);
  assert.equal(ids.length, 8);
  assert.equal(ids[0], sp.cls);
  assert.equal(ids[7], sp.sep);
  const enc = tok.encodeWithFirst("a red circle", 35, sp.enc);
  assert.equal(enc[0], sp.enc);
  assert.deepEqual(enc.slice(1), tok.encode("a red circle", 35).slice(1));
  assert.throws(() => tok.encode("x", 1));
});

test("padRows right-pads with [PAD] and masks the padding", () => {
  const { ids, mask, length } = padRows(
    [
      [2, 9, 3],
      [2, 3],
    ],
    0,
  );
  assert.equal(length, 3);
  assert.deepEqual([...ids], [2n, 9n, 3n, 2n, 3n, 0n]);
  assert.deepEqual([...mask], [1n, 1n, 1n, 1n, 1n, 0n]);
});

test("a special token id missing from the vocabulary is refused", () => {
  assert.throws(
    () =>
      TextTokenizer.fromFile(path.join(MICRO, "tokenizer.json"), { ...manifest.tokenizer.special_tokens, dec: 99999 }),
    /dec id 99999/,
  );
});
