// The grading behind the quality checks (helpers/shapes.ts, thresholds.ts), against hand-worked cases and against
// the Shapes generator's own references. Runs whether or not the default model exists.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { test } from "node:test";
import {
  captionNamesAnObject,
  captionNamesExactSet,
  namedPairs,
  rankCandidates,
  scenePairs,
  synthShapesTest,
  type ShapesImage,
  type ShapesObject,
} from "../helpers/shapes.js";
import {
  captionBar,
  exactSetBar,
  margin,
  rankBar,
  readReport,
  SAMPLE_IMAGES,
  vqaBar,
  wilsonLower,
  Z,
} from "./thresholds.js";

const obj = (color: string, shape: string, size = "small"): ShapesObject => ({ color, shape, size });

test("namedPairs reads colour-shape pairs, singular or plural, with or without a size word", () => {
  assert.deepEqual(namedPairs("a drawing of a purple star, a black circle, a gray square and an orange star"), [
    "purple star",
    "black circle",
    "gray square",
    "orange star",
  ]);
  assert.deepEqual(namedPairs("two small red circles above a large blue diamond"), ["red circle", "blue diamond"]);
  assert.deepEqual(namedPairs("A Red Triangle"), ["red triangle"]);
  assert.deepEqual(namedPairs("a red large star"), ["red star"]);
  // no pair: colour without shape, shape without colour, words that merely contain one
  for (const none of ["two red objects", "two stars", "a large star on the left", "a bored circle", "a red starfish"])
    assert.deepEqual(namedPairs(none), [], none);
});

test("captionNamesAnObject: some named pair is an object's colour and shape", () => {
  const scene = [obj("red", "circle"), obj("blue", "square"), obj("blue", "square", "large")];
  assert.equal(captionNamesAnObject("a red circle and two blue squares", scene), true);
  assert.equal(captionNamesAnObject("a green star and a red circle", scene), true, "one right pair is enough");
  assert.equal(captionNamesAnObject("a red square and a blue circle", scene), false, "colours and shapes swapped");
  assert.equal(captionNamesAnObject("a red object and two squares", scene), false, "no colour-shape pair");
  assert.equal(captionNamesAnObject("", scene), false);
  assert.deepEqual([...scenePairs(scene)], ["red circle", "blue square"]);
});

test("captionNamesExactSet: the named pairs are the scene's, each at least once, no other", () => {
  const scene = [obj("red", "circle"), obj("blue", "square"), obj("blue", "square", "large")];
  assert.equal(captionNamesExactSet("a red circle and two blue squares", scene), true);
  assert.equal(captionNamesExactSet("a blue square to the left of a red circle", scene), true, "any family");
  assert.equal(captionNamesExactSet("a red circle and a blue square", scene), true, "a set: counts are not checked");
  assert.equal(captionNamesExactSet("a red circle", scene), false, "a pair missing");
  assert.equal(captionNamesExactSet("a red circle, a blue square and a red star", scene), false, "a pair too many");
  assert.equal(captionNamesExactSet("a red circle, a blue square and a large", scene), true, "cut off after both");
  assert.equal(captionNamesExactSet("", scene), false);
});

test("rankCandidates: the true caption at i % 10 among 9 captions of images sharing none of its pairs", () => {
  const colors = ["red", "green", "blue", "yellow", "purple", "orange", "gray", "black"];
  const shapes = ["circle", "square", "triangle", "diamond", "star"];
  const images: ShapesImage[] = Array.from({ length: 24 }, (_, i) => {
    const objects = [obj(colors[i % 8], shapes[i % 5]), obj(colors[(i + 3) % 8], shapes[(i + 1) % 5])];
    return {
      file: `${i}.png`,
      captions: [`a ${objects[0].color} ${objects[0].shape} and a ${objects[1].color} ${objects[1].shape}`],
      objects,
      questions: [],
    };
  });
  for (const i of [0, 7, 13, 23]) {
    const { candidates, truth } = rankCandidates(images, i);
    assert.equal(candidates.length, 10);
    assert.equal(truth, i % 10);
    assert.equal(candidates[truth], images[i].captions[0]);
    assert.equal(new Set(candidates).size, 10, "no caption twice");
    for (const [k, c] of candidates.entries())
      if (k !== truth) assert.equal(captionNamesAnObject(c, images[i].objects), false, `"${c}" is false of image ${i}`);
    assert.deepEqual(rankCandidates(images, i), { candidates, truth }, "deterministic");
  }
  assert.throws(() => rankCandidates(images.slice(0, 5), 0), /only \d distractors/);
});

test("wilsonLower is the rate p at which the observed rate lies Z standard errors above p (bisection)", () => {
  for (const [hits, n] of [
    [10, 10],
    [9, 10],
    [5, 10],
    [0, 10],
    [70, 100],
  ]) {
    const observed = hits / n;
    let lo = 0;
    let hi = observed;
    for (let k = 0; k < 100; k++) {
      const p = (lo + hi) / 2;
      if (observed - p > Z * Math.sqrt((p * (1 - p)) / n)) lo = p;
      else hi = p;
    }
    assert.ok(Math.abs(wilsonLower(hits, n) - lo) < 1e-9, `${hits}/${n}: ${wilsonLower(hits, n)} vs ${lo}`);
  }
  assert.ok(Math.abs(margin(0.5, 100) - Z * 0.05) < 1e-12);
});

test("readReport takes the bars' inputs from manifest metrics and names the first one missing", () => {
  const metrics = {
    retrieval_tr1: 18.8,
    summary: {
      settings: { num_beams: 3 },
      vqa: { by_type: { color: 73.3, count: 35.4, shape: 26.8 } },
      caption: { greedy: { examples: ["x"] }, beam3: { examples: ["a red circle", "two stars"] } },
    },
  };
  assert.deepEqual(readReport({ name: "m", metrics: { ...metrics, caption_exact_set: 12.5 } }), {
    tr1: 18.8,
    vqaByType: { color: 73.3, count: 35.4 },
    numBeams: 3,
    captionExamples: ["a red circle", "two stars"],
    exactSet: { rate: 12.5, from: "its manifest's caption_exact_set" },
  });
  // without caption_exact_set (a bundle exported before captions were graded): no bar, a clear error
  assert.throws(() => readReport({ name: "m", metrics }), /model 'm'.*metrics\.caption_exact_set/);
  assert.throws(() => readReport({ name: "m", metrics: {} }), /model 'm'.*metrics\.summary\.settings\.num_beams/);
  const noCount = structuredClone(metrics) as { summary: { vqa: { by_type: Record<string, number> } } };
  delete noCount.summary.vqa.by_type.count;
  assert.throws(() => readReport({ name: "m", metrics: noCount }), /metrics\.summary\.vqa\.by_type\.count/);
});

test("bars: the report less the margin, at least the blind rate plus the margin", () => {
  const report = {
    tr1: 18.8,
    vqaByType: { color: 80, count: 30 },
    numBeams: 3,
    captionExamples: ["a red circle"],
    exactSet: { rate: 30, from: "test" },
  };
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  // colour: report 0.8 on 50 questions beats the constant "red" (10 of 50)
  const colour = vqaBar(report, "color", [
    ...Array(10).fill("red"),
    ...Array(40)
      .fill("blue")
      .map((_, i) => `c${i}`),
  ]);
  close(colour.fromReport, 0.8 - margin(0.8, 50));
  close(colour.floor, 0.2 + margin(0.2, 50));
  close(colour.bar, colour.fromReport);
  assert.match(colour.why, /constant answer "red" 0\.200/);
  // count: the report (0.3) is below the constant "0" (30 of 50): the blind floor rules
  const count = vqaBar(report, "count", [...Array(30).fill("0"), ...Array(20).fill("1")]);
  close(count.bar, 0.6 + margin(0.6, 50));
  // rank: TR@1 as it is, at least 1 in 10 plus the margin
  close(rankBar(report, 100).bar, Math.max(0.188, 0.1 + margin(0.1, 100)));
  close(rankBar({ ...report, tr1: 5 }, 100).bar, 0.1 + margin(0.1, 100));
  // captions: the one example names the only object right; every image holds a red circle
  const images: ShapesImage[] = Array.from({ length: 4 }, () => ({
    file: "",
    captions: ["a red circle"],
    objects: [obj("red", "circle")],
    questions: [],
  }));
  const caption = captionBar(report, images);
  const lower = wilsonLower(1, 1);
  close(caption.fromReport, lower - margin(lower, 4));
  close(caption.floor, 1);
  assert.match(caption.why, /1 of its 1 example captions/);
  // exact set: 30% less the margin of 4 images, against the commonest set (every image: red circle) as a caption
  const exact = exactSetBar(report, images);
  close(exact.fromReport, 0.3 - margin(0.3, 4));
  close(exact.floor, 1);
  assert.match(exact.why, /constant caption naming "red circle" 1\.000/);
  const mixed = [...images.slice(0, 3), { ...images[0], objects: [obj("red", "circle"), obj("gray", "star")] }];
  assert.match(exactSetBar(report, mixed).why, /"red circle" 0\.750/);
});

test("the generator's references read back as their scenes: first = every pair, the others only true pairs", () => {
  const { dir, images } = synthShapesTest(SAMPLE_IMAGES); // the quality checks' sample
  try {
    assert.equal(images.length, SAMPLE_IMAGES);
    assert.match(images[0].file, /images\/test\/test_000000\.png$/);
    for (const [i, im] of images.entries()) {
      assert.deepEqual(new Set(namedPairs(im.captions[0])), scenePairs(im.objects), `image ${i}: ${im.captions[0]}`);
      for (const c of im.captions)
        for (const p of namedPairs(c)) assert.ok(scenePairs(im.objects).has(p), `image ${i}: "${c}" names ${p}`);
      assert.ok(im.questions.length >= 4, `image ${i} has its questions`);
    }
    for (let i = 0; i < images.length; i++) rankCandidates(images, i); // 9 distractors exist for every image
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
