// Retrieval scoring, BLIP's protocol: rank candidates by ITC cosine, re-rank the top k by the ITM match logit;
// the re-ranked score is itm_logit + itc_cosine (training/dlip/infer/tasks.py, retrieval_scores).

export interface RankResult {
  index: number; // candidate index in the request
  score: number; // itm_score + itc_score when re-ranked, else itc_score
  itc_score: number; // cosine similarity of the L2-normalised ITC features
  itm_score: number | null; // ITM match logit (null without re-ranking)
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Indices of the k highest similarities, best first (ties: lower index first). */
export function topK(sims: readonly number[], k: number): number[] {
  return sims
    .map((s, i) => [s, i] as const)
    .sort((x, y) => y[0] - x[0] || x[1] - y[1])
    .slice(0, Math.max(0, Math.min(k, sims.length)))
    .map(([, i]) => i);
}

/** Results for the candidates `top` (ITC order), re-ranked by itm + itc when `itm` (aligned with `top`) is given. */
export function rankResults(
  sims: readonly number[],
  top: readonly number[],
  itm: readonly number[] | null,
): RankResult[] {
  const results = top.map((index, j) => ({
    index,
    itc_score: sims[index],
    itm_score: itm ? itm[j] : null,
    score: itm ? itm[j] + sims[index] : sims[index],
  }));
  return results.sort((a, b) => b.score - a.score || a.index - b.index);
}
