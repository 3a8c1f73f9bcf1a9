// Pass bars of the quality checks on the default model (default-model.test.ts): every number and rule in one place.
//
// Each bar is the larger of two numbers:
// - from the report: the rate this exact model reached in its own evaluation on the whole Shapes test split (1,000
//   images), read at test time from its manifest.json `metrics` (written by `python -m dlip export` from the run's
//   metrics.json: the numbers of training/REPORT.md and of the run's metrics.md), less the sampling margin of this
//   test's smaller sample (except TR@1, which measures a harder task), so the bars follow the model;
// - the blind floor: the best a model that ignores the image scores on the same sample (always the same caption or
//   answer, whichever is most often right; for ranking, 1 in 10), plus the margin, so no blind model passes.
// margin(p, n) = Z * sqrt(p (1 - p) / n): with Z = 2.33 a model exactly as good as its report (or a blind one) lands on
// the wrong side of its bar by sampling noise alone about 1 time in 100.
import { captionNamesAnObject, scenePairs, type ShapesImage } from "../helpers/shapes.js";

// The first 200 Shapes test images: 141 colour and 165 count questions. Not 100: with 81 count questions the count bar
// (blind floor 0.455) left the default student (38 right) one answer to spare.
export const SAMPLE_IMAGES = 200;
export const RANK_CANDIDATES = 10; // the true caption and 9 false ones per image
export const Z = 2.33; // one-sided 99%

export function margin(p: number, n: number): number {
  return Z * Math.sqrt((p * (1 - p)) / n);
}

/** Wilson's lower confidence bound (one-sided, Z) on a rate measured as `hits` of `n`. */
export function wilsonLower(hits: number, n: number): number {
  const p = hits / n;
  const z2 = Z * Z;
  return (p + z2 / (2 * n) - Z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
}

export interface Bar {
  bar: number; // the measured rate must be at least this: max(fromReport, floor)
  fromReport: number;
  floor: number; // the blind rate plus the margin
  why: string; // how both were derived, with their inputs
}

function makeBar(fromReport: number, reportWhy: string, blind: number, blindWhy: string, n: number): Bar {
  const floor = blind + margin(blind, n);
  const f = (x: number) => x.toFixed(3);
  return {
    bar: Math.max(fromReport, floor),
    fromReport,
    floor,
    why: `report ${f(fromReport)} (${reportWhy}), blind floor ${f(floor)} (${blindWhy} ${f(blind)} + margin)`,
  };
}

/** The parts of a manifest's `metrics` the bars come from (training/dlip/export/FORMAT.md, dlip/eval/evaluate.py). */
export interface Report {
  tr1: number; // `retrieval_tr1`: TR@1 (image -> its captions among the 5,000 test captions, ITC top-k + ITM), %
  vqaByType: { color: number; count: number }; // `summary.vqa.by_type`: VQA accuracy per question type, %
  numBeams: number; // `summary.settings.num_beams`: the beam width of the headline captions
  captionExamples: string[]; // `summary.caption.beam{k}.examples`: the model's captions of test images 0, 1, ... 9
  exactSet: { rate: number; from: string }; // `caption_exact_set` (%): beam captions naming exactly the scene's pairs
}

/** The value at a dotted path of nested objects ("summary.vqa.by_type"), or undefined. */
function at(obj: unknown, dotted: string): unknown {
  return dotted
    .split(".")
    .reduce<unknown>(
      (o, key) => (o !== null && typeof o === "object" ? (o as Record<string, unknown>)[key] : undefined),
      obj,
    );
}

/** Reads the report from a manifest, failing with the missing field's name. */
export function readReport(manifest: { name: string; metrics?: Record<string, unknown> }): Report {
  const get = <T>(field: string, ok: (v: unknown) => boolean): T => {
    const v = at(manifest.metrics, field);
    if (!ok(v))
      throw new Error(
        `model '${manifest.name}': manifest.json has no metrics.${field}; the quality bars come from the model's ` +
          "evaluation: run `python -m dlip eval RUN`, then export the run again",
      );
    return v as T;
  };
  const isNumber = (v: unknown) => typeof v === "number";
  const numBeams = get<number>("summary.settings.num_beams", isNumber);
  const report = {
    tr1: get<number>("retrieval_tr1", isNumber),
    vqaByType: {
      color: get<number>("summary.vqa.by_type.color", isNumber),
      count: get<number>("summary.vqa.by_type.count", isNumber),
    },
    numBeams,
    captionExamples: get<string[]>(
      `summary.caption.beam${numBeams}.examples`,
      (v) => Array.isArray(v) && v.length > 0 && v.every((c) => typeof c === "string"),
    ),
  };
  const exactSet = { rate: get<number>("caption_exact_set", isNumber), from: "its manifest's caption_exact_set" };
  return { ...report, exactSet };
}

/**
 * (a) Captions name a colour and a shape of some object in the image. The report's captioning numbers (BLEU, CIDEr)
 * are no rate of that; its example captions are: they are the model's captions of the first test images, graded here
 * the same way, and Wilson's lower bound on their rate is the report's bar before the margin. Blind: the one
 * colour-shape pair that most sample images hold, as a constant caption.
 */
export function captionBar(report: Report, images: ShapesImage[]): Bar {
  const examples = report.captionExamples.slice(0, images.length);
  const hits = examples.filter((c, i) => captionNamesAnObject(c, images[i].objects)).length;
  const lower = wilsonLower(hits, examples.length);
  const holding = new Map<string, number>();
  for (const im of images) for (const pair of scenePairs(im.objects)) holding.set(pair, (holding.get(pair) ?? 0) + 1);
  const [pair, most] = [...holding.entries()].reduce((a, b) => (b[1] > a[1] ? b : a));
  return makeBar(
    lower - margin(lower, images.length),
    `${hits} of its ${examples.length} example captions name an object right: lower bound ${lower.toFixed(3)} - margin`,
    most / images.length,
    `constant caption "${pair}"`,
    images.length,
  );
}

/** (b) VQA accuracy on one question type: the report's accuracy for that type; blind: the type's commonest answer. */
export function vqaBar(report: Report, type: "color" | "count", truths: string[]): Bar {
  const p = report.vqaByType[type] / 100;
  const counts = new Map<string, number>();
  for (const t of truths) counts.set(t, (counts.get(t) ?? 0) + 1);
  const [answer, most] = [...counts.entries()].reduce((a, b) => (b[1] > a[1] ? b : a));
  return makeBar(
    p - margin(p, truths.length),
    `its ${type} VQA accuracy ${p.toFixed(3)} - margin`,
    most / truths.length,
    `constant answer "${answer}"`,
    truths.length,
  );
}

/**
 * (c) The true caption ranked first among RANK_CANDIDATES: at least the report's TR@1, with no margin taken off,
 * since finding one true caption among 10 is a far easier task than among the 5,000 captions of 1,000 images.
 */
export function rankBar(report: Report, n: number): Bar {
  const p = report.tr1 / 100;
  return makeBar(p, "its TR@1 among 5,000 captions", 1 / RANK_CANDIDATES, `1 in ${RANK_CANDIDATES}`, n);
}

/**
 * (d) Captions name exactly the scene's set of (colour, shape) pairs: the report's exact-set rate on the whole test
 * split less the margin of this sample. Blind: the set of pairs that most sample images have, as a constant caption.
 */
export function exactSetBar(report: Report, images: ShapesImage[]): Bar {
  const p = report.exactSet.rate / 100;
  const sets = new Map<string, number>();
  for (const im of images) {
    const key = [...scenePairs(im.objects)].sort().join(" and ");
    sets.set(key, (sets.get(key) ?? 0) + 1);
  }
  const [set, most] = [...sets.entries()].reduce((a, b) => (b[1] > a[1] ? b : a));
  return makeBar(
    p - margin(p, images.length),
    `its exact-set rate ${p.toFixed(3)} (${report.exactSet.from}) - margin`,
    most / images.length,
    `constant caption naming "${set}"`,
    images.length,
  );
}
