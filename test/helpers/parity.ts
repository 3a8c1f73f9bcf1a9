// The Python side's results for the micro bundle (test/parity/expected.json, from scripts/make-parity-fixtures.sh).
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./app.js";

export interface ParityImage {
  file: string;
  rgb_u8: string; // base64 (S, S, 3) uint8: PIL's RGB after resize
  image_feat: number[];
  caption_greedy: { ids: number[]; text: string };
  caption_beam3: { ids: number[]; text: string };
  vqa: { question: string; ids: number[]; answer: string }[];
  itm_texts: string[];
  itm_match_logits: number[];
}

export interface Parity {
  bundle_files: Record<string, string>;
  tokenizer: { text: string; ids: number[]; decoded: string }[];
  text_feats: { texts: string[]; feats: number[][] };
  images: ParityImage[];
}

export const PARITY_DIR = path.join(ROOT, "test/parity");

export function loadParity(): Parity {
  const p = JSON.parse(readFileSync(path.join(PARITY_DIR, "expected.json"), "utf8")) as Parity;
  const manifest = JSON.parse(readFileSync(path.join(ROOT, "test/fixtures/micro/manifest.json"), "utf8"));
  for (const [f, sha] of Object.entries(p.bundle_files)) {
    if (manifest.files[f] !== sha)
      throw new Error(`test/parity is stale: ${f} changed in the micro bundle; run scripts/make-parity-fixtures.sh`);
  }
  return p;
}

export function imageBytes(img: ParityImage): Buffer {
  return readFileSync(path.join(PARITY_DIR, img.file));
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}
