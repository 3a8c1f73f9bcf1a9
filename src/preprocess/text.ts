// Tokenisation from the bundle's tokenizer.json, mirroring training/dlip/data/tokenizer.py (TextTokenizer):
// "[CLS] text [SEP]" from the file's own normalizer / pre-tokenizer / WordPiece / post-processor; encodings longer
// than max_length keep their first max_length - 1 tokens and end with [SEP]; batches are right-padded with [PAD].
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import type { SpecialTokenIds } from "../bundle/manifest.js";

export interface EncodedBatch {
  ids: number[][]; // (B, L_i) unpadded rows, each starting with [CLS] (or the first token asked for)
}

export class TextTokenizer {
  private readonly tok: Tokenizer;

  constructor(
    json: object,
    readonly special: SpecialTokenIds,
  ) {
    this.tok = new Tokenizer(json, {});
    for (const [role, id] of Object.entries(special)) {
      if (this.tok.id_to_token(id) === undefined)
        throw new Error(`tokenizer: special token ${role} id ${id} is not in the vocabulary`);
    }
  }

  static fromFile(file: string, special: SpecialTokenIds): TextTokenizer {
    return new TextTokenizer(JSON.parse(readFileSync(file, "utf8")), special);
  }

  /** One text -> ids ([CLS] ... [SEP]), truncated to maxLength keeping [SEP] last. */
  encode(text: string, maxLength: number): number[] {
    if (maxLength < 2) throw new Error(`tokenizer: maxLength must be >= 2, got ${maxLength}`);
    const ids = this.tok.encode(text).ids;
    return ids.length <= maxLength ? ids : [...ids.slice(0, maxLength - 1), this.special.sep];
  }

  /** Like encode, with the first token replaced ([ENC] for ITM and VQA questions, as BLIP's with_first_token). */
  encodeWithFirst(text: string, maxLength: number, first: number): number[] {
    const ids = this.encode(text, maxLength);
    ids[0] = first;
    return ids;
  }

  /** Generated ids -> text, WordPiece pieces joined, special tokens dropped (as Python's decode). */
  decode(ids: readonly number[]): string {
    return this.tok.decode([...ids], { skip_special_tokens: true });
  }
}

// BLIP's text cleaning, as the training and evaluation apply it (training/dlip/data/annotations.py): the model
// was trained and scored on cleaned texts only, so the server cleans the same way (an uncleaned ':' or '.' is a
// token the model never saw, and moves the embedding).
const BLIP_PUNCT = /[.!"()*#:;~]/g;
/** DataConfig.max_words (training/dlip/config.py): captions and questions keep their first 30 words. */
export const MAX_WORDS = 30;

/** pre_caption: lowercase; . ! " ( ) * # : ; ~ become spaces; whitespace runs one space; trimmed; first maxWords words. */
export function preCaption(caption: string, maxWords = MAX_WORDS): string {
  let c = caption
    .toLowerCase()
    .replace(BLIP_PUNCT, " ")
    .replace(/\s{2,}/g, " ");
  c = c.replace(/\n+$/, "").replace(/^ +| +$/g, "");
  const words = c.split(" ");
  return words.length > maxWords ? words.slice(0, maxWords).join(" ") : c;
}

/** pre_question: lowercase; . ! " ( ) * # : ; ~ deleted; trailing spaces dropped; first maxWords words. */
export function preQuestion(question: string, maxWords = MAX_WORDS): string {
  const q = question.toLowerCase().replace(BLIP_PUNCT, "").replace(/ +$/, "");
  const words = q.split(" ");
  return words.length > maxWords ? words.slice(0, maxWords).join(" ") : q;
}

/**
 * A text as the model was trained and scored on it: BLIP's cleaning (preCaption, or preQuestion for VQA questions)
 * for bundles of this project's training; none for a Hugging Face checkpoint served as it is (`source.hf_checkpoint`
 * in its manifest), since transformers' BlipProcessor feeds the text as given and export checked parity that way.
 */
export function cleanText(source: { hf_checkpoint?: string }, text: string, kind: "caption" | "question"): string {
  if (source.hf_checkpoint !== undefined) return text;
  return kind === "question" ? preQuestion(text) : preCaption(text);
}

/** Right-pads rows to the longest -> row-major BigInt64 ids and mask, (B, L). */
export function padRows(
  rows: readonly (readonly number[])[],
  pad: number,
): { ids: BigInt64Array; mask: BigInt64Array; length: number } {
  const length = Math.max(1, ...rows.map((r) => r.length));
  const ids = new BigInt64Array(rows.length * length).fill(BigInt(pad));
  const mask = new BigInt64Array(rows.length * length);
  rows.forEach((r, i) => {
    for (let j = 0; j < r.length; j++) {
      ids[i * length + j] = BigInt(r[j]);
      mask[i * length + j] = 1n;
    }
  });
  return { ids, mask, length };
}
