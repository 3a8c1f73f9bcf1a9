// Timing helpers: repeat a call until enough runs and enough time have passed, and summarise latencies.

export interface Timing {
  runs: number;
  median_ms: number;
  mean_ms: number;
  p90_ms: number;
  min_ms: number;
  cpu_ms: number; // CPU time of this process per run (all threads), mean: unlike wall time, robust to a busy machine
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
}

/** The q-quantile (0..1) of sorted values, linearly interpolated (NumPy's default); NaN for none. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function percentiles(values: readonly number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return {
    p50: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    p99: quantile(s, 0.99),
    mean: s.length ? mean : NaN,
    max: s.length ? s[s.length - 1] : NaN,
  };
}

/** Runs `fn` once to warm up, then until both `minRuns` runs and `minSeconds` have passed. */
export async function measure(
  fn: () => Promise<unknown>,
  opts: { minRuns: number; minSeconds: number; maxRuns?: number },
): Promise<Timing> {
  await fn();
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const maxRuns = opts.maxRuns ?? 10_000;
  while (
    times.length < maxRuns &&
    (times.length < opts.minRuns || performance.now() - start < opts.minSeconds * 1000)
  ) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  return timing(times, (cpu.user + cpu.system) / 1000);
}

/** The summary of one call's run times (ms), with the CPU time (ms) all its runs took together. */
function timing(times: readonly number[], cpuMs: number): Timing {
  const s = [...times].sort((a, b) => a - b);
  return {
    runs: s.length,
    median_ms: round(quantile(s, 0.5)),
    mean_ms: round(s.reduce((a, b) => a + b, 0) / s.length),
    p90_ms: round(quantile(s, 0.9)),
    min_ms: round(s[0]),
    cpu_ms: round(cpuMs / s.length),
  };
}

/** Rounds to 4 significant digits (results are read by people; more digits are noise). */
export function round(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(4));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Times several calls side by side: one warm-up call each (unless `warm` is false), then rounds that run each call
 * once in turn (the order reversed every other round), until every call has `minRuns` runs and `minSeconds` have
 * passed. A load that comes and goes on a shared machine then lands on all of them alike, so their ratios hold
 * better than those of calls timed one after the other.
 */
export async function alternate(
  fns: readonly (() => Promise<unknown>)[],
  opts: { minRuns: number; minSeconds: number; warm?: boolean },
): Promise<Timing[]> {
  if (opts.warm !== false) for (const fn of fns) await fn();
  const times: number[][] = fns.map(() => []);
  const cpu: number[] = fns.map(() => 0);
  const start = performance.now();
  for (let round = 0; times[0].length < opts.minRuns || performance.now() - start < opts.minSeconds * 1000; round++) {
    const order = fns.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await fns[i]();
      times[i].push(performance.now() - t0);
      const c = process.cpuUsage(cpu0);
      cpu[i] += (c.user + c.system) / 1000;
    }
  }
  return times.map((t, i) => timing(t, cpu[i]));
}
