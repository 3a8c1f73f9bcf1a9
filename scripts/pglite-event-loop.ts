// How long PGlite stalls the event loop, inline (PGlite on the main thread) against the store's worker thread
// (collections/pglite.ts): the same bulk load (HNSW index on) and searches, with the event loop's delay sampled
// by a 10 ms interval timer: the gaps between its ticks are what a request arriving meanwhile would wait. Usage: node --import tsx scripts/pglite-event-loop.ts [ROWS]
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { PgliteDb } from "../src/collections/pglite.js";
import { SqlStore } from "../src/collections/sql.js";
import type { CollectionStore, ItemWrite } from "../src/collections/store.js";
import type { Db, Row, Statement } from "../src/collections/db.js";

const ROWS = Number(process.argv[2] ?? 5000);
const DIM = 128;

/** PGlite on this thread, as a Db: what the store would be without its worker. */
class InlineDb implements Db {
  constructor(private readonly pg: PGlite) {}
  async query(sql: string, params?: unknown[]): Promise<Row[]> {
    return (await this.pg.query(sql, params ?? [])).rows as Row[];
  }
  async transaction(statements: Statement[]): Promise<Row[][]> {
    return this.pg.transaction(async (tx) => {
      const out: Row[][] = [];
      for (const s of statements) out.push((await tx.query(s.sql, s.params ?? [])).rows as Row[]);
      return out;
    });
  }
  close(): Promise<void> {
    return this.pg.close();
  }
}

let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
const unit = () => {
  const v = Array.from({ length: DIM }, rand);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};

async function measure(label: string, store: CollectionStore): Promise<void> {
  await store.open();
  await store.createCollection({
    name: "el",
    model: "m",
    weights: "w",
    dim: DIM,
    storeImages: false,
    storeTokens: false,
  });
  const c = (await store.getCollection("el"))!;
  // a 10 ms ticker: each gap between ticks beyond 10 ms is time the event loop could not answer anything
  const gaps: number[] = [];
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last - 10);
    last = now;
  }, 10);
  const t0 = performance.now();
  for (let i = 0; i < ROWS; i += 500) {
    const rows: ItemWrite[] = Array.from({ length: Math.min(500, ROWS - i) }, (_, j) => ({
      id: `i${i + j}`,
      text: null,
      metadata: { n: i + j },
      image: null,
      tokens: null,
      imageEmb: unit(),
      textEmb: null,
    }));
    await store.upsertItems(c, rows);
  }
  const load = performance.now() - t0;
  const t1 = performance.now();
  for (let i = 0; i < 200; i++) await store.search(c, { target: "image", vector: unit(), k: 10, filter: null });
  const search = (performance.now() - t1) / 200;
  clearInterval(ticker);
  gaps.push(performance.now() - last - 10);
  gaps.sort((a, b) => a - b);
  const q = (p: number) => Math.max(0, gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))]).toFixed(1);
  const total = load + search * 200;
  const blocked = gaps.filter((g) => g > 50).reduce((s, g) => s + g, 0);
  console.log(
    `${label}: load ${ROWS} rows ${(load / 1000).toFixed(1)} s, search ${search.toFixed(1)} ms/query; ` +
      `event-loop stalls: ${gaps.length} ticks, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms, ` +
      `${((100 * blocked) / total).toFixed(0)}% of the time in stalls over 50 ms`,
  );
  await store.close();
}

const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-el-"));
try {
  await measure(
    "inline (main thread)",
    new SqlStore(
      "pglite",
      new InlineDb(await PGlite.create({ dataDir: path.join(dir, "inline"), extensions: { vector } })),
    ),
  );
  await measure("worker thread (the store)", new SqlStore("pglite", new PgliteDb(path.join(dir, "worker"))));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
