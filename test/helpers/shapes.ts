// The Shapes benchmark's test images, made by the real generator, and the grading of a model's answers against
// their ground truth (used by test/quality/). `python -m dlip data synth --n 0 0 N` draws image i of a split from its
// own seed (seed 0, split, i), so its N test images are exactly the first N of the benchmark's test split, the one
// the training report evaluates on.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./app.js";

// The generator's vocabulary (training/dlip/data/shapes_scene.py); captions name objects "[size] colour shape(s)".
export const COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "gray", "black"] as const;
export const SHAPES = ["circle", "square", "triangle", "diamond", "star"] as const;
export const COUNT_ANSWERS = ["0", "1", "2", "3", "4"] as const; // every count question's answer is one of these

export interface ShapesObject {
  color: string;
  shape: string;
  size: string;
}

export interface ShapesQuestion {
  question: string;
  answer: string; // the 10 annotator answers of the VQAv2 file are identical
  type: string; // color, shape, count, exist, size, region or relation
}

export interface ShapesImage {
  file: string; // absolute path of the 256 x 256 PNG
  captions: string[]; // the 5 references; the first enumerates every object by colour and shape
  objects: ShapesObject[]; // the scene graph (scenes_test.jsonl): the ground truth every sentence was made from
  questions: ShapesQuestion[];
}

const PYTHON = path.join(ROOT, "training/.venv/bin/python");

/** Generates the first `n` Shapes test images into a new temporary folder and reads them back, in index order. */
export function synthShapesTest(n: number): { dir: string; images: ShapesImage[] } {
  if (!existsSync(PYTHON))
    throw new Error(
      `${PYTHON} is missing: the Shapes test images come from the Python generator; ` +
        "run `npm test` (or `bash scripts/setup-venv.sh`) once to create training/.venv",
    );
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-shapes-"));
  execFileSync(PYTHON, ["-m", "dlip", "data", "synth", "--out", dir, "--n", "0", "0", String(n), "--workers", "1"], {
    cwd: path.join(ROOT, "training"),
    stdio: ["ignore", "ignore", "pipe"],
  });
  return { dir, images: readShapesTest(dir) };
}

interface CaptionEntry {
  image: string;
  caption: string[];
}
interface VqaEntry {
  image: string;
  question: string;
  answer: string[];
  question_type: string;
}
interface SceneEntry {
  image: string;
  objects: ShapesObject[];
}

/** The test split of a folder written by `data synth`: images, references, scene graphs and questions. */
export function readShapesTest(dir: string): ShapesImage[] {
  const read = <T>(file: string): T => JSON.parse(readFileSync(path.join(dir, file), "utf8")) as T;
  const scenes = new Map(
    readFileSync(path.join(dir, "scenes_test.jsonl"), "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as SceneEntry)
      .map((s) => [s.image, s.objects.map(({ color, shape, size }) => ({ color, shape, size }))]),
  );
  const questions = new Map<string, ShapesQuestion[]>();
  for (const q of read<VqaEntry[]>("annotations/vqa_test.json")) {
    const list = questions.get(q.image) ?? [];
    list.push({ question: q.question, answer: q.answer[0], type: q.question_type });
    questions.set(q.image, list);
  }
  return read<CaptionEntry[]>("annotations/caption_test.json").map((c) => {
    const objects = scenes.get(c.image);
    if (!objects) throw new Error(`${dir}: no scene for ${c.image}`);
    return {
      file: path.join(dir, c.image),
      captions: c.caption,
      objects,
      questions: questions.get(c.image) ?? [],
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Grading
// ---------------------------------------------------------------------------------------------------------------

const PAIR = new RegExp(`\\b(${COLORS.join("|")}) (?:(?:small|large) )?(${SHAPES.join("|")})s?\\b`, "g");

/** The colour-shape pairs a sentence names, as "colour shape" in order of appearance: "two small red circles" and
 * "a red circle" both name "red circle"; "two red objects" and "a large star" name none. */
export function namedPairs(text: string): string[] {
  return [...text.toLowerCase().matchAll(PAIR)].map((m) => `${m[1]} ${m[2]}`);
}

/** The distinct colour-shape pairs of a scene's objects. */
export function scenePairs(objects: ShapesObject[]): Set<string> {
  return new Set(objects.map((o) => `${o.color} ${o.shape}`));
}

/** Whether a caption names some object of the scene right: a colour together with that object's shape. */
export function captionNamesAnObject(caption: string, objects: ShapesObject[]): boolean {
  const truth = scenePairs(objects);
  return namedPairs(caption).some((p) => truth.has(p));
}

/** Whether a caption names exactly the scene's set of colour-shape pairs: each of them at least once and no other
 * (the exact-set measure of training/dlip/eval/caption_correctness.py, whose grammar-based reading gives the same
 * pairs for every sentence of the data card's grammar). */
export function captionNamesExactSet(caption: string, objects: ShapesObject[]): boolean {
  const truth = scenePairs(objects);
  const named = new Set(namedPairs(caption));
  return named.size === truth.size && [...named].every((p) => truth.has(p));
}

/** The chance that a caption naming one colour-shape pair drawn uniformly at random names an object of the scene. */
export function captionChance(images: ShapesImage[]): number {
  const pairs = COLORS.length * SHAPES.length;
  return images.reduce((sum, im) => sum + scenePairs(im.objects).size / pairs, 0) / images.length;
}

/**
 * Ten captions for image `i` of `images`: its first reference (the enumeration of every object by colour and shape)
 * and the first references of the next 9 images (in index order, wrapping) that share no colour-shape pair with it.
 * Every Shapes caption asserts that the objects it names exist, so a caption naming only pairs that image `i` lacks
 * is false of it. The true caption sits at position `i % 10`, so that ties cannot favour it.
 */
export function rankCandidates(images: ShapesImage[], i: number, count = 10): { candidates: string[]; truth: number } {
  const own = scenePairs(images[i].objects);
  const truthText = images[i].captions[0];
  const others: string[] = [];
  for (let step = 1; step < images.length && others.length < count - 1; step++) {
    const other = images[(i + step) % images.length];
    const text = other.captions[0];
    if (text === truthText || others.includes(text)) continue;
    if ([...scenePairs(other.objects)].some((p) => own.has(p))) continue;
    others.push(text);
  }
  if (others.length < count - 1) throw new Error(`only ${others.length} distractors for image ${i}; use more images`);
  const truth = i % count;
  return { candidates: [...others.slice(0, truth), truthText, ...others.slice(truth)], truth };
}
