// The server's /metrics (Prometheus text) read back: samples, sums over label subsets, and the differences between
// two scrapes, which say what the server did during one load point (batch sizes formed, time per stage).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples named `name` whose labels include `where`. */
export function total(samples: readonly Sample[], name: string, where: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

/** A histogram's change between two scrapes: observations, their sum and mean (NaN without observations). */
export function histogramDelta(
  before: readonly Sample[],
  after: readonly Sample[],
  name: string,
  where: Record<string, string> = {},
): { count: number; sum: number; mean: number } {
  const count = total(after, `${name}_count`, where) - total(before, `${name}_count`, where);
  const sum = total(after, `${name}_sum`, where) - total(before, `${name}_sum`, where);
  return { count, sum, mean: count > 0 ? sum / count : NaN };
}

export function counterDelta(
  before: readonly Sample[],
  after: readonly Sample[],
  name: string,
  where: Record<string, string> = {},
): number {
  return total(after, name, where) - total(before, name, where);
}
