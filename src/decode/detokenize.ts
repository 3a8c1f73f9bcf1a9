// Text of a generation as it grows, one token at a time, for streaming: each token's delta is the new text, so
// that the deltas put together are the whole text. delta = decode(prefix + ids) minus what was given out before:
// WordPiece '##' continuations join the previous word, spaces come with the word they precede. A prompt prefix is
// decoded with the ids and left out of the text (the text is what follows it).

export interface Detokenizer {
  decode(ids: readonly number[]): string;
}

export class TextStream {
  private readonly ids: number[];
  private given: string; // the decoded prefix, then everything handed out
  private readonly base: number; // length of the decoded prefix

  constructor(
    private readonly tok: Detokenizer,
    prefix: readonly number[] = [],
  ) {
    this.ids = [...prefix];
    this.given = prefix.length ? tok.decode(prefix) : "";
    this.base = this.given.length;
  }

  /** The text `token` adds. If decoding rewrote earlier text (never seen with WordPiece), only new text is given. */
  push(token: number): string {
    this.ids.push(token);
    const full = this.tok.decode(this.ids);
    let common = 0;
    while (common < this.given.length && common < full.length && full[common] === this.given[common]) common++;
    const delta = full.slice(Math.max(common, this.given.length));
    this.given += delta;
    return delta;
  }

  /** Everything handed out so far: the text of the tokens pushed. */
  get text(): string {
    return this.given.slice(this.base);
  }
}

/** The text of generated `ids` after `prefix`, exactly the deltas a TextStream would give for them. */
export function continuation(tok: Detokenizer, ids: readonly number[], prefix: readonly number[] = []): string {
  const s = new TextStream(tok, prefix);
  for (const id of ids) s.push(id);
  return s.text;
}
