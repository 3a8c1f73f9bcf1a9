// preCaption / preQuestion against training/dlip/data/annotations.py (pre_caption / pre_question): the expected
// strings are Python's outputs for these inputs (maxWords 3 and the default 30).
import assert from "node:assert/strict";
import { test } from "node:test";
import { cleanText, preCaption, preQuestion } from "../../src/preprocess/text.js";

// [input, pre_caption(t, 3), pre_caption(t), pre_question(t, 3), pre_question(t)]
const CASES: [string, string, string, string, string][] = [
  [
    "Four objects: a large purple star, a small gray square.",
    "four objects a",
    "four objects a large purple star, a small gray square",
    "four objects a",
    "four objects a large purple star, a small gray square",
  ],
  ['  A (big)  "red" circle!!  ', "a big red", "a big red circle", "  a", "  a big  red circle"],
  [
    "tabs\tand\nnewlines~#;*",
    "tabs\tand\nnewlines",
    "tabs\tand\nnewlines",
    "tabs\tand\nnewlines",
    "tabs\tand\nnewlines",
  ],
  ["one two three four five", "one two three", "one two three four five", "one two three", "one two three four five"],
  ["", "", "", "", ""],
];

test("preCaption and preQuestion give Python's pre_caption and pre_question", () => {
  for (const [t, c3, c, q3, q] of CASES) {
    assert.equal(preCaption(t, 3), c3, `preCaption(${JSON.stringify(t)}, 3)`);
    assert.equal(preCaption(t), c, `preCaption(${JSON.stringify(t)})`);
    assert.equal(preQuestion(t, 3), q3, `preQuestion(${JSON.stringify(t)}, 3)`);
    assert.equal(preQuestion(t), q, `preQuestion(${JSON.stringify(t)})`);
  }
});

test("cleanText: this project's bundles get BLIP's cleaning; a Hugging Face checkpoint's text goes in as given", () => {
  const text = "Four objects: a large purple star.";
  assert.equal(cleanText({}, text, "caption"), "four objects a large purple star");
  assert.equal(cleanText({}, "What colour is it?", "question"), "what colour is it?");
  assert.equal(cleanText({ hf_checkpoint: "/ckpt/blip" }, text, "caption"), text);
  assert.equal(cleanText({ hf_checkpoint: "/ckpt/blip" }, text, "question"), text);
});
