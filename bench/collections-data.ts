// The collections benchmark's vectors (bench/collections_embed.py: the default model's own ITC embeddings of rendered
// Shapes images, and of the Shapes test captions as text queries), read back as Float32Arrays; and the exact top-k
// by brute force, the reference of the ANN index's recall.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { readManifest } from "../src/bundle/manifest.js";

export interface EmbeddingsMeta {
  n: number;
  dim: number;
  seed: number;
  model: string;
  weights_sha256: string;
  image_tokens: number | null; // T where image_tokens.f16 was written
  vision_width: number;
  render_s: number;
  vision_graph_s: number;
  total_s: number;
  images_per_s_vision_graph: number;
  queries: string[];
}

export interface Embeddings {
  meta: EmbeddingsMeta;
  images: Float32Array; // (n, dim) row-major
  queries: Float32Array; // (Q, dim)
  tokensFile: string | null; // (n, T, Dv) float16 little-endian, where written
}

function readF32(file: string): Float32Array {
  const b = readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** The first `n` embeddings of `bundle`'s model, computed once into `cacheDir` and reused while the weights match. */
export function ensureEmbeddings(
  root: string,
  bundle: string,
  n: number,
  queriesRoot: string,
  cacheDir: string,
  tokens: boolean,
  log: (s: string) => void,
): Embeddings {
  const m = readManifest(bundle);
  const weights =
    (m as unknown as { files: Record<string, string> }).files?.["weights.safetensors"] ?? m.graphs.vision!.sha256;
  const dir = path.join(cacheDir, `${m.name}-${n}${tokens ? "-tokens" : ""}`);
  const metaFile = path.join(dir, "meta.json");
  const fresh = () => {
    if (!existsSync(metaFile)) return false;
    const meta = JSON.parse(readFileSync(metaFile, "utf8")) as EmbeddingsMeta;
    return meta.weights_sha256 === weights && meta.n === n;
  };
  if (!fresh()) {
    log(`embedding ${n} rendered Shapes images with ${m.name}'s vision graph into ${path.relative(root, dir)}`);
    execFileSync(
      path.join(root, "training/.venv/bin/python"),
      [
        path.join(root, "bench/collections_embed.py"),
        ...["--bundle", bundle, "--n", String(n), "--queries", queriesRoot, "--out", dir],
        ...(tokens ? ["--tokens"] : []),
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
  }
  const meta = JSON.parse(readFileSync(metaFile, "utf8")) as EmbeddingsMeta;
  return {
    meta,
    images: readF32(path.join(dir, "image_feat.f32")),
    queries: readF32(path.join(dir, "query_feat.f32")),
    tokensFile: tokens ? path.join(dir, "image_tokens.f16") : null,
  };
}

/** Row i of a (rows, dim) matrix. */
export function row(x: Float32Array, dim: number, i: number): Float32Array {
  return x.subarray(i * dim, (i + 1) * dim);
}

/** The indices of the `k` rows among the first `n` of `x` with the largest dot product with `q` (cosine: the rows
 * are L2-normalised), best first; ties go to the lower index. */
export function exactTopK(x: Float32Array, dim: number, n: number, q: Float32Array, k: number): number[] {
  const best: { i: number; s: number }[] = [];
  for (let i = 0; i < n; i++) {
    let s = 0;
    const o = i * dim;
    for (let d = 0; d < dim; d++) s += x[o + d] * q[d];
    if (best.length < k) best.push({ i, s });
    else if (s > best[k - 1].s) best[k - 1] = { i, s };
    else continue;
    for (let j = best.length - 1; j > 0 && best[j - 1].s < best[j].s; j--)
      [best[j - 1], best[j]] = [best[j], best[j - 1]];
  }
  return best.map((b) => b.i);
}

/** |found ∩ truth| / |truth|. */
export function recall(found: readonly number[], truth: readonly number[]): number {
  const t = new Set(truth);
  return found.filter((x) => t.has(x)).length / truth.length;
}
