// The request inputs: the first N images of the Shapes test split (PNG bytes, as users send them), one reference
// caption and one question per image. `python -m dlip data synth --n 0 0 N` renders them deterministically.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

export interface Workload {
  root: string; // the Shapes image root
  files: string[]; // image paths, relative to root
  images: Buffer[]; // PNG bytes
  captions: string[]; // the first reference caption of each image (text inputs: embeddings, ranking)
  questions: string[]; // the first VQA question of each image
}

export class SetupError extends Error {}

/** training/.venv's Python; the benchmark needs it to render images and to draw plots. */
export function venvPython(root: string): string {
  const py = path.join(root, "training/.venv/bin/python");
  if (!existsSync(py))
    throw new SetupError(`${py} is missing: run 'npm run setup:python' first (it creates training/.venv)`);
  return py;
}

const imageFile = (i: number) => `images/test/test_${String(i).padStart(6, "0")}.png`;

function haveImages(dir: string, n: number): boolean {
  return (
    existsSync(path.join(dir, "annotations/vqa_test.json")) &&
    existsSync(path.join(dir, "annotations/caption_test.json")) &&
    existsSync(path.join(dir, imageFile(n - 1)))
  );
}

/** Renders the first `n` Shapes test images into `dir` unless they are there. */
export function ensureShapes(root: string, dir: string, n: number, log: (s: string) => void): void {
  if (haveImages(dir, n)) return;
  const py = venvPython(root);
  log(`rendering ${n} Shapes test images into ${path.relative(root, dir) || dir}`);
  execFileSync(py, ["-m", "dlip", "data", "synth", "--out", dir, "--n", "0", "0", String(n), "--workers", "1"], {
    cwd: path.join(root, "training"),
    stdio: ["ignore", "ignore", "inherit"],
  });
  if (!haveImages(dir, n)) throw new SetupError(`dlip data synth did not write ${n} test images into ${dir}`);
}

export function loadWorkload(dir: string, n: number): Workload {
  type Caption = { image: string; caption: string[] | string };
  type Question = { image: string; question: string };
  const captions = JSON.parse(readFileSync(path.join(dir, "annotations/caption_test.json"), "utf8")) as Caption[];
  const questions = JSON.parse(readFileSync(path.join(dir, "annotations/vqa_test.json"), "utf8")) as Question[];
  const files = Array.from({ length: n }, (_, i) => imageFile(i));
  const firstCaption = new Map<string, string>();
  for (const c of captions) if (!firstCaption.has(c.image)) firstCaption.set(c.image, [c.caption].flat()[0]);
  const firstQuestion = new Map<string, string>();
  for (const q of questions) if (!firstQuestion.has(q.image)) firstQuestion.set(q.image, q.question);
  return {
    root: dir,
    files,
    images: files.map((f) => readFileSync(path.join(dir, f))),
    captions: files.map((f) => firstCaption.get(f) ?? "a red circle"),
    questions: files.map((f) => firstQuestion.get(f) ?? "what color is the circle?"),
  };
}
