// collections.md from collections.json: the collections part's tables (both stores side by side), its targets, and
// what each number means. Written by `npm run bench` after the part runs, and by `npm run bench:report`.
import type { CollectionsResult, StoreResult } from "./collections.js";
import type { RerankSize } from "./collections-rerank.js";
import type { Percentiles } from "./timing.js";

export interface CollectionsTarget {
  target: string;
  goal: string;
  measured: string;
  met: boolean | null;
}

const f = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d);
const ms = (p: Percentiles | null) => (p ? `${f(p.p50)} / ${f(p.p99)}` : "–");
const table = (head: string[], rows: (string | number)[][]) =>
  [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");

export function collectionsTargets(r: CollectionsResult): CollectionsTarget[] {
  const out: CollectionsTarget[] = [];
  for (const s of r.stores) {
    for (const z of s.sizes)
      out.push({
        target: `${s.store}: ANN recall@10 vs exact scan at ${z.items} items`,
        goal: ">= 0.95",
        measured: f(z.recall_at_10, 3),
        met: Number.isFinite(z.recall_at_10) ? z.recall_at_10 >= 0.95 : null,
      });
    const largest = s.sizes.find((z) => z.items === 100_000);
    out.push({
      target: `${s.store}: search p99 at 100,000 items, no re-ranking (API, text query)`,
      goal: "<= 50 ms",
      measured: largest
        ? `${f(largest.api_search_ms.p99)} ms (store alone ${f(largest.store_search_ms.p99)} ms)`
        : "not measured",
      met: largest ? largest.api_search_ms.p99 <= 50 : null,
    });
    const q = s.quality;
    for (const [mode, ref] of [
      ["itc", r.reference.itc],
      ["itm", r.reference.itm],
    ] as const)
      out.push({
        target: `${s.store}: text-to-image R@1 through the API (${mode === "itm" ? "ITM re-ranked" : "ITC only"}) = dlip eval's within its sampling error`,
        goal: `${f(ref.r1, 2)} ± ${f(ref.se_r1, 2)}`,
        measured: f(q[mode].r1, 2),
        met: q.captions >= 5000 ? Math.abs(q[mode].r1 - ref.r1) <= ref.se_r1 : null,
      });
  }
  return out;
}

function storeRows(stores: StoreResult[]): string {
  const rows: (string | number)[][] = [];
  for (const s of stores)
    for (const z of s.sizes)
      rows.push([
        s.store,
        z.items.toLocaleString("en-US"),
        f(z.load_s),
        f(z.items_per_s, 0),
        f(z.recall_at_10, 3),
        ms(z.store_search_ms),
        ms(z.api_search_ms),
        ms(z.api_search_rerank_ms),
      ]);
  return table(
    [
      "store",
      "items",
      "bulk load (s)",
      "writes (items/s)",
      "recall@10",
      "store search p50 / p99 (ms)",
      "API search p50 / p99 (ms)",
      "API search + ITM re-rank p50 / p99 (ms)",
    ],
    rows,
  );
}

function rerankRows(rr: RerankSize[], stores: StoreResult[]): string {
  const rows = rr.map((x) => [
    `${x.model}${x.random_weights ? " (random weights)" : ""}`,
    `${x.image_tokens} x ${x.width}`,
    x.k,
    `${f(x.tokens_bytes_fp16 / 1024)} KB`,
    `${f(x.image_bytes / 1024)} KB`,
    f(x.widen_fp16.median_ms),
    f(x.itm.median_ms),
    f(x.preprocess.median_ms),
    f(x.vision.median_ms),
    f(x.stored_compute_ms),
    f(x.recompute_compute_ms),
  ]);
  const fetch = stores.map((s) => `${s.store} ${ms(s.fetch_tokens_ms)} ms`).join(", ");
  return (
    table(
      [
        "size",
        "tokens",
        "k",
        "stored tokens / item (fp16)",
        "stored image / item (PNG)",
        "widen fp16 (ms)",
        "ITM graph (ms)",
        "decode + resize k images (ms)",
        "vision graph (ms)",
        "stored tokens: compute (ms)",
        "recompute: compute (ms)",
      ],
      rows,
    ) + `\n\nReading k items' stored tokens from the store (default model, p50 / p99): ${fetch}.`
  );
}

export function renderCollections(r: CollectionsResult): string {
  const st = r.stamp;
  const m = st.machine;
  const e = r.embeddings;
  const targets = collectionsTargets(r);
  const out = [
    "# Collections benchmark",
    "",
    `Command: \`${st.command}\`. Machine: ${m.cpu_model}, ${m.cores} cores, ${m.memory_gib} GiB, load ${m.load_average_1m} at ` +
      `start; commit ${st.git.commit?.slice(0, 10) ?? "?"}${st.git.dirty ? " (modified)" : ""}; ${st.time}.`,
    "",
    `Vectors: ${e.n.toLocaleString("en-US")} images rendered by the Shapes generator (seed ${e.seed}, not the training draw) ` +
      `and embedded by ${e.model}'s own vision graph (onnxruntime, in-process: ${f(e.images_per_s_vision_graph, 0)} images/s ` +
      `in the graph, ${f(e.render_s, 0)} s rendering); queries: the first caption of each Shapes test image, embedded by ` +
      `its text graph. Items keep their fp16 image tokens (${e.image_tokens} x ${e.vision_width}) for re-ranking.`,
    "",
    "## Targets",
    "",
    table(
      ["target", "goal", "measured", "met"],
      targets.map((t) => [t.target, t.goal, t.measured, t.met === null ? "not measured" : t.met ? "yes" : "**no**"]),
    ),
    "",
    "## Search and load, both stores",
    "",
    storeRows(r.stores),
    "",
    `Bulk load: the store's own write path (\`upsertItems\`, ${r.settings.loadBatch} items a transaction, HNSW index ` +
      "maintained while inserting), precomputed vectors and tokens. Store search: top 10 by the store's interface with the " +
      `query vector given. API search: \`POST /v1/collections/{name}/search\` with the caption text, limit 10, ` +
      `${r.settings.latencyQueries} sequential requests (text embedding + ANN + HTTP); with re-ranking, rerank_k ` +
      `${r.settings.rerankK}. Recall@10: ${r.settings.recallQueries} text queries, the index's top 10 against a ` +
      "brute-force scan of the same vectors.",
    "",
    "## Import through the API",
    "",
    table(
      [
        "store",
        "images",
        "import (images/s)",
        "embedding alone (images/s)",
        "database writes alone (items/s)",
        "bound by",
      ],
      r.stores.map((s) => [
        s.store,
        s.import.images,
        f(s.import.images_per_s),
        f(s.import.embed_only_images_per_s),
        f(s.import.db_write_items_per_s, 0),
        s.import.bound,
      ]),
    ),
    "",
    "Import: `PUT /v1/collections/{name}/items` with 32 base64 Shapes PNGs (256 px) a request, end to end. Embedding " +
      "alone: the same requests to `POST /v1/embeddings`. Database writes alone: the bulk load's rate at the largest size.",
    "",
    "## Retrieval quality through the API",
    "",
    table(
      ["store", "images", "captions", "R@1 ITC", "R@5 ITC", "R@1 ITM re-ranked", "R@5 ITM re-ranked"],
      [
        ...r.stores.map((s) => [
          s.store,
          s.quality.images,
          s.quality.captions,
          f(s.quality.itc.r1, 2),
          f(s.quality.itc.r5, 2),
          f(s.quality.itm.r1, 2),
          f(s.quality.itm.r5, 2),
        ]),
        [
          `\`dlip eval\` (${r.model}'s manifest)`,
          1000,
          5000,
          `${f(r.reference.itc.r1, 2)} ± ${f(r.reference.itc.se_r1, 2)}`,
          `${f(r.reference.itc.r5, 2)} ± ${f(r.reference.itc.se_r5, 2)}`,
          `${f(r.reference.itm.r1, 2)} ± ${f(r.reference.itm.se_r1, 2)}`,
          `${f(r.reference.itm.r5, 2)} ± ${f(r.reference.itm.se_r5, 2)}`,
        ],
      ],
    ),
    "",
    "Text-to-image recall (percent): every caption of the Shapes test images searched in a collection holding exactly " +
      `those images, its own image the one relevant result; re-ranked with rerank_k ${r.settings.rerankK}, BLIP's score ` +
      "(ITM logit + ITC cosine), as `dlip eval` (± one standard error).",
    "",
    "## ITM re-ranking: stored image tokens vs recompute from the stored image",
    "",
    rerankRows(r.rerank, r.stores),
    "",
    ...(r.notes.length ? ["## Notes", "", ...r.notes.map((n) => `- ${n}`), ""] : []),
  ];
  return out.join("\n");
}
