// The collections benchmark's side door into a store: the server's own storage interface (src/collections/store.ts)
// and implementations, opened in this process, for what the API cannot do quickly: load 100,000 precomputed items
// (their vectors and fp16 image tokens, from bench/collections_embed.py) and time the store's search and reads
// without the HTTP and model work around them. The server later serves the same database.
import { closeSync, openSync, readSync } from "node:fs";
import type { Manifest } from "../src/bundle/manifest.js";
import { PgliteDb } from "../src/collections/pglite.js";
import { PostgresDb } from "../src/collections/postgres.js";
import { SqlStore } from "../src/collections/sql.js";
import type { CollectionInfo, CollectionStore, ItemWrite, ModelIdentity } from "../src/collections/store.js";
import { row, type Embeddings } from "./collections-data.js";

export type StoreKind = "embedded" | "postgres";

/** The id of precomputed item i (its row in the embeddings files). */
export const itemId = (i: number) => `img-${String(i).padStart(6, "0")}`;
const itemIndex = (id: string) => Number(id.slice(4));

export interface BenchStore {
  kind: StoreKind;
  /** Creates collection `name` (image tokens kept) and writes the first `n` precomputed items, `batch` a write. */
  load(name: string, model: ModelIdentity, e: Embeddings, n: number, batch: number): Promise<void>;
  /** The store's stage one: the indices of the `k` nearest items to `q`. */
  search(name: string, q: Float32Array, k: number): Promise<number[]>;
  /** The store's read of the re-rank inputs (tokens) of these items. */
  fetchTokens(name: string, items: number[]): Promise<void>;
  close(): Promise<void>;
}

/** Opens the store the server would open with these settings (COLLECTIONS_DATA_DIR or DATABASE_URL). */
export async function openBenchStore(
  kind: StoreKind,
  settings: { COLLECTIONS_DATA_DIR?: string; DATABASE_URL?: string },
  manifest: Manifest,
): Promise<BenchStore> {
  const store: CollectionStore =
    kind === "embedded"
      ? new SqlStore("pglite", new PgliteDb(settings.COLLECTIONS_DATA_DIR!))
      : new SqlStore("postgres", new PostgresDb(settings.DATABASE_URL!));
  await store.open();
  const infos = new Map<string, CollectionInfo>();
  const info = async (name: string) => {
    if (!infos.has(name)) infos.set(name, (await store.getCollection(name))!);
    return infos.get(name)!;
  };
  const tokensPerItem = manifest.model.image_tokens * manifest.model.vision_width * 2; // fp16 bytes
  return {
    kind,
    async load(name, model, e, n, batch) {
      const dim = e.meta.dim;
      await store.createCollection({ name, ...model, dim, storeImages: false, storeTokens: true });
      const c = await info(name);
      const fd = e.tokensFile ? openSync(e.tokensFile, "r") : null;
      try {
        for (let s = 0; s < n; s += batch) {
          const items: ItemWrite[] = [];
          const count = Math.min(batch, n - s);
          const tokens = fd ? Buffer.allocUnsafe(count * tokensPerItem) : null;
          if (fd && tokens) readSync(fd, tokens, 0, tokens.length, s * tokensPerItem);
          for (let j = 0; j < count; j++)
            items.push({
              id: itemId(s + j),
              text: null,
              metadata: { shard: (s + j) % 10 },
              image: null,
              tokens: tokens ? tokens.subarray(j * tokensPerItem, (j + 1) * tokensPerItem) : null,
              imageEmb: Array.from(row(e.images, dim, s + j)),
              textEmb: null,
            });
          await store.upsertItems(c, items);
        }
      } finally {
        if (fd !== null) closeSync(fd);
      }
    },
    async search(name, q, k) {
      const hits = await store.search(await info(name), { target: "image", vector: Array.from(q), k, filter: null });
      return hits.map((h) => itemIndex(h.id));
    },
    async fetchTokens(name, items) {
      const got = await store.candidates(name, items.map(itemId));
      if (got.length !== items.length || got.some((c) => c.tokens === null))
        throw new Error(`${name}: ${items.length} candidates asked, ${got.filter((c) => c.tokens).length} with tokens`);
    },
    close: () => store.close(),
  };
}
