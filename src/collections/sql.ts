// The one module that owns the collections schema and every SQL statement (Immich's repository shape), run by both
// implementations over their driver (db.ts). Every value is a parameter; the only identifiers built here are the ANN
// index names, from a collection's integer key, and the vector dimension, an integer: both checked before use.
import { filterSql, type Filter } from "./filter.js";
import { sqlState, toBuffer, toIso, type Db, type Row, type Statement } from "./db.js";
import type {
  Candidate,
  CollectionInfo,
  CollectionStore,
  Hit,
  ItemRecord,
  ItemWrite,
  JobRecord,
  ModelIdentity,
  NewCollection,
  ReembedRow,
  VectorQuery,
} from "./store.js";

/**
 * The schema, one step per version, applied in order at open (up only). Each step is idempotent (IF NOT EXISTS), so a
 * step interrupted before its version row was written is simply run again.
 */
const MIGRATIONS: string[][] = [
  [
    "CREATE EXTENSION IF NOT EXISTS vector",
    `CREATE TABLE IF NOT EXISTS dlip_collections (
      key serial PRIMARY KEY,
      name text NOT NULL UNIQUE,
      model text NOT NULL,
      weights text NOT NULL,
      dim integer NOT NULL CHECK (dim BETWEEN 1 AND 16000),
      store_images boolean NOT NULL,
      store_tokens boolean NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE TABLE IF NOT EXISTS dlip_items (
      collection integer NOT NULL REFERENCES dlip_collections (key) ON DELETE CASCADE,
      id text NOT NULL,
      text text,
      metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
      has_image boolean NOT NULL,
      image bytea,
      tokens bytea,
      image_emb vector,
      text_emb vector,
      model text NOT NULL,
      weights text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (collection, id)
    )`,
    `CREATE TABLE IF NOT EXISTS dlip_jobs (
      collection integer NOT NULL REFERENCES dlip_collections (key) ON DELETE CASCADE,
      job text NOT NULL,
      kind text NOT NULL,
      status text NOT NULL,
      received bigint NOT NULL DEFAULT 0,
      succeeded bigint NOT NULL DEFAULT 0,
      failed bigint NOT NULL DEFAULT 0,
      errors jsonb NOT NULL DEFAULT '[]'::jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (collection, job)
    )`,
  ],
  // 2: a collection's item count kept beside it (every write updates it in its own transaction), so that the
  // lookup every search and write makes does not count the collection's rows
  [
    "ALTER TABLE dlip_collections ADD COLUMN IF NOT EXISTS items bigint NOT NULL DEFAULT 0",
    "UPDATE dlip_collections c SET items = (SELECT count(*) FROM dlip_items i WHERE i.collection = c.key)",
  ],
];
export const SCHEMA_VERSION = MIGRATIONS.length;
const MIGRATION_LOCK = 7_140_024; // pg_advisory_xact_lock key: replicas starting together migrate one at a time

const VECTOR_COLUMNS = { image: "image_emb", text: "text_emb" } as const;
const ROWS_PER_INSERT = 500; // 11 parameters a row, well under the protocol's 65,535

function int(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a non-negative integer, got ${n}`);
  return n;
}

/** The name of a collection's ANN index over one vector column (from its integer key only). */
function indexName(key: number, target: keyof typeof VECTOR_COLUMNS): string {
  return `dlip_items_${target}_hnsw_${int(key, "collection key")}`;
}

/** HNSW (cosine) over one column's rows of one collection: a partial expression index, the dimension fixed. */
function createIndexSql(key: number, dim: number, target: keyof typeof VECTOR_COLUMNS): string {
  return (
    `CREATE INDEX IF NOT EXISTS ${indexName(key, target)} ON dlip_items USING hnsw ` +
    `((${VECTOR_COLUMNS[target]}::vector(${int(dim, "dim")})) vector_cosine_ops) WHERE collection = ${int(key, "key")}`
  );
}

const vectorText = (v: number[] | null) => (v === null ? null : `[${v.join(",")}]`);

export class SqlStore implements CollectionStore {
  // rows written since the last ANALYZE, and the count that triggers the next: the planner needs row counts to
  // pick the HNSW index over an exact scan, and PGlite (single-user) has no autovacuum to gather them
  private written = 0;
  private analyzeAt = 1000;

  constructor(
    readonly kind: "pglite" | "postgres",
    private readonly db: Db,
  ) {}

  async open(): Promise<void> {
    await this.db.query(
      `CREATE TABLE IF NOT EXISTS dlip_schema_migrations (
        version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const applied = new Set(
      (await this.db.query("SELECT version FROM dlip_schema_migrations")).map((r) => Number(r.version)),
    );
    const newest = Math.max(0, ...applied);
    if (newest > SCHEMA_VERSION)
      throw new Error(
        `the collections database has schema version ${newest}, newer than this server's ${SCHEMA_VERSION}: upgrade the server`,
      );
    // each missing step in its own transaction with its version row; a replica that applied it meanwhile makes the
    // rerun a no-op (every step is idempotent)
    for (let v = 1; v <= MIGRATIONS.length; v++) {
      if (applied.has(v)) continue;
      await this.db.transaction([
        { sql: "SELECT pg_advisory_xact_lock($1)", params: [MIGRATION_LOCK] },
        ...MIGRATIONS[v - 1].map((sql) => ({ sql })),
        { sql: "INSERT INTO dlip_schema_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING", params: [v] },
      ]);
    }
    if (this.kind === "pglite")
      // one server per embedded directory: a job still "running" was cut off when the last one stopped
      await this.db.query(
        `UPDATE dlip_jobs SET status = 'failed', updated_at = now(),
           errors = errors || jsonb_build_array(jsonb_build_object('code', 'interrupted', 'message', $1::text))
         WHERE status = 'running'`,
        ["the server stopped before the job finished; resume from line received + 1 (imports) or call reembed again"],
      );
  }

  async ping(): Promise<void> {
    await this.db.query("SELECT 1");
  }

  close(): Promise<void> {
    return this.db.close();
  }

  async createCollection(c: NewCollection): Promise<boolean> {
    // the row and its two indexes in one transaction: a collection never exists without its indexes. The key is
    // drawn first, since the index DDL names it
    const [{ key }] = await this.db.query(
      "SELECT nextval(pg_get_serial_sequence('dlip_collections', 'key'))::int AS key",
    );
    const [inserted] = await this.db.transaction([
      {
        sql: `INSERT INTO dlip_collections (key, name, model, weights, dim, store_images, store_tokens)
          VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING RETURNING key`,
        params: [key, c.name, c.model, c.weights, c.dim, c.storeImages, c.storeTokens],
      },
      { sql: createIndexSql(Number(key), c.dim, "image") },
      { sql: createIndexSql(Number(key), c.dim, "text") },
    ]);
    if (inserted.length > 0) return true;
    // the name was taken (the indexes of the unused key are empty): drop them
    await this.db.transaction([
      { sql: `DROP INDEX IF EXISTS ${indexName(Number(key), "image")}` },
      { sql: `DROP INDEX IF EXISTS ${indexName(Number(key), "text")}` },
    ]);
    return false;
  }

  private static readonly COLLECTION_COLUMNS = `c.key, c.name, c.model, c.weights, c.dim, c.store_images,
    c.store_tokens, c.created_at, c.items`;

  async listCollections(): Promise<CollectionInfo[]> {
    const rows = await this.db.query(`SELECT ${SqlStore.COLLECTION_COLUMNS} FROM dlip_collections c ORDER BY c.name`);
    return rows.map(collectionInfo);
  }

  async getCollection(name: string): Promise<CollectionInfo | null> {
    const rows = await this.db.query(
      `SELECT ${SqlStore.COLLECTION_COLUMNS} FROM dlip_collections c WHERE c.name = $1`,
      [name],
    );
    return rows.length ? collectionInfo(rows[0]) : null;
  }

  async deleteCollection(name: string): Promise<boolean> {
    const c = await this.getCollection(name);
    if (!c) return false;
    const [, , deleted] = await this.db.transaction([
      { sql: `DROP INDEX IF EXISTS ${indexName(c.key, "image")}` },
      { sql: `DROP INDEX IF EXISTS ${indexName(c.key, "text")}` },
      { sql: "DELETE FROM dlip_collections WHERE key = $1 RETURNING key", params: [c.key] },
    ]);
    return deleted.length > 0;
  }

  async rebindCollection(name: string, model: ModelIdentity): Promise<void> {
    await this.db.query("UPDATE dlip_collections SET model = $2, weights = $3 WHERE name = $1", [
      name,
      model.model,
      model.weights,
    ]);
  }

  async upsertItems(c: CollectionInfo, items: ItemWrite[]): Promise<void> {
    const statements: Statement[] = [];
    for (let at = 0; at < items.length; at += ROWS_PER_INSERT) {
      const params: unknown[] = [];
      const values = items.slice(at, at + ROWS_PER_INSERT).map((it) => {
        const row = [
          c.key,
          it.id,
          it.text,
          JSON.stringify(it.metadata),
          it.imageEmb !== null,
          it.image,
          it.tokens,
          vectorText(it.imageEmb),
          vectorText(it.textEmb),
          c.model,
          c.weights,
        ];
        const base = params.length;
        params.push(...row);
        const p = (i: number) => `$${base + i + 1}`;
        return `(${p(0)}, ${p(1)}, ${p(2)}, ${p(3)}::jsonb, ${p(4)}, ${p(5)}, ${p(6)}, ${p(7)}::vector, ${p(8)}::vector, ${p(9)}, ${p(10)})`;
      });
      // the count grows by the rows inserted, not replaced: xmax is 0 exactly on a freshly inserted row
      statements.push({
        sql: `WITH written AS (
            INSERT INTO dlip_items
              (collection, id, text, metadata, has_image, image, tokens, image_emb, text_emb, model, weights)
            VALUES ${values.join(", ")}
            ON CONFLICT (collection, id) DO UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata,
              has_image = EXCLUDED.has_image, image = EXCLUDED.image, tokens = EXCLUDED.tokens,
              image_emb = EXCLUDED.image_emb, text_emb = EXCLUDED.text_emb, model = EXCLUDED.model,
              weights = EXCLUDED.weights, updated_at = now()
            RETURNING (xmax = 0) AS inserted)
          UPDATE dlip_collections SET items = items + (SELECT count(*) FROM written WHERE inserted) WHERE key = $1`,
        params,
      });
    }
    if (statements.length) await this.db.transaction(statements);
    this.written += items.length;
    if (this.written >= this.analyzeAt) {
      this.written = 0;
      this.analyzeAt = Math.min(2 * this.analyzeAt, 50_000);
      await this.db.query("ANALYZE dlip_items");
    }
  }

  /** Writes re-computed vectors (and tokens) of existing items under `model`, in one transaction. */
  async updateEmbeddings(
    c: CollectionInfo,
    model: ModelIdentity,
    rows: Pick<ItemWrite, "id" | "imageEmb" | "textEmb" | "tokens">[],
  ): Promise<void> {
    if (!rows.length) return;
    await this.db.transaction(
      rows.map((r) => ({
        sql: `UPDATE dlip_items SET image_emb = $3::vector, text_emb = $4::vector, tokens = $5, model = $6,
          weights = $7, updated_at = now() WHERE collection = $1 AND id = $2`,
        params: [c.key, r.id, vectorText(r.imageEmb), vectorText(r.textEmb), r.tokens, model.model, model.weights],
      })),
    );
  }

  async getItem(collection: string, id: string): Promise<ItemRecord | null> {
    const rows = await this.db.query(
      `SELECT i.id, i.text, i.metadata, i.has_image, i.model, i.weights, i.created_at, i.updated_at
       FROM dlip_items i JOIN dlip_collections c ON c.key = i.collection WHERE c.name = $1 AND i.id = $2`,
      [collection, id],
    );
    if (!rows.length) return null;
    const r = rows[0];
    return {
      id: String(r.id),
      text: (r.text as string | null) ?? null,
      metadata: r.metadata as Record<string, unknown>,
      hasImage: Boolean(r.has_image),
      model: String(r.model),
      weights: String(r.weights),
      created: toIso(r.created_at),
      updated: toIso(r.updated_at),
    };
  }

  async deleteItems(collection: string, ids: string[]): Promise<number> {
    const rows = await this.db.query(
      `WITH c AS (SELECT key FROM dlip_collections WHERE name = $1),
         d AS (DELETE FROM dlip_items WHERE collection = (SELECT key FROM c)
               AND id IN (SELECT jsonb_array_elements_text($2::jsonb)) RETURNING id),
         n AS (UPDATE dlip_collections SET items = items - (SELECT count(*) FROM d) WHERE key = (SELECT key FROM c))
       SELECT id FROM d`,
      [collection, JSON.stringify(ids)],
    );
    return rows.length;
  }

  async deleteMatching(collection: string, filter: Filter): Promise<number> {
    const params: unknown[] = [collection];
    const where = filterSql(filter, params);
    const rows = await this.db.query(
      `WITH c AS (SELECT key FROM dlip_collections WHERE name = $1),
         d AS (DELETE FROM dlip_items WHERE collection = (SELECT key FROM c) AND ${where} RETURNING 1),
         n AS (UPDATE dlip_collections SET items = items - (SELECT count(*) FROM d) WHERE key = (SELECT key FROM c))
       SELECT count(*)::int AS n FROM d`,
      params,
    );
    return Number(rows[0].n);
  }

  async search(c: CollectionInfo, q: VectorQuery): Promise<Hit[]> {
    const dim = int(c.dim, "dim");
    const column = VECTOR_COLUMNS[q.target];
    const params: unknown[] = [c.key, vectorText(q.vector), int(q.k, "k")];
    const filter = q.filter ? ` AND ${filterSql(q.filter, params)}` : "";
    // the cast and the partial-index predicate (collection = $1: planned with its value) match the collection's
    // index; relaxed_order iterative scans go on past ef_search until k rows pass the filter, the outer ORDER BY
    // restores exact order (pgvector README, "Iterative Index Scans")
    const [, rows] = await this.db.transaction([
      {
        sql: "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', $1, true)",
        params: [String(Math.min(1000, Math.max(40, q.k)))],
      },
      {
        sql: `WITH c AS MATERIALIZED (
            SELECT id, metadata, (${column}::vector(${dim})) <=> $2::vector(${dim}) AS distance
            FROM dlip_items WHERE collection = $1 AND ${column} IS NOT NULL${filter}
            ORDER BY distance LIMIT $3)
          SELECT id, metadata, distance FROM c ORDER BY distance, id`,
        params,
      },
    ]);
    return rows.map((r) => ({
      id: String(r.id),
      itc: 1 - Number(r.distance),
      metadata: r.metadata as Record<string, unknown>,
    }));
  }

  async candidates(collection: string, ids: string[]): Promise<Candidate[]> {
    const rows = await this.db.query(
      `SELECT i.id, i.text, i.image, i.tokens FROM dlip_items i JOIN dlip_collections c ON c.key = i.collection
       WHERE c.name = $1 AND i.id IN (SELECT jsonb_array_elements_text($2::jsonb))`,
      [collection, JSON.stringify(ids)],
    );
    return rows.map((r) => ({
      id: String(r.id),
      text: (r.text as string | null) ?? null,
      image: toBuffer(r.image),
      tokens: toBuffer(r.tokens),
    }));
  }

  async staleItems(collection: string, current: ModelIdentity, afterId: string, limit: number): Promise<ReembedRow[]> {
    const rows = await this.db.query(
      `SELECT i.id, i.text, i.image FROM dlip_items i JOIN dlip_collections c ON c.key = i.collection
       WHERE c.name = $1 AND (i.model <> $2 OR i.weights <> $3) AND i.id > $4 ORDER BY i.id LIMIT $5`,
      [collection, current.model, current.weights, afterId, limit],
    );
    return rows.map((r) => ({ id: String(r.id), text: (r.text as string | null) ?? null, image: toBuffer(r.image) }));
  }

  async staleCount(collection: string, current: ModelIdentity): Promise<{ stale: number; unrecoverable: number }> {
    const [r] = await this.db.query(
      `SELECT count(*)::int AS stale, count(*) FILTER (WHERE i.has_image AND i.image IS NULL)::int AS unrecoverable
       FROM dlip_items i JOIN dlip_collections c ON c.key = i.collection
       WHERE c.name = $1 AND (i.model <> $2 OR i.weights <> $3)`,
      [collection, current.model, current.weights],
    );
    return { stale: Number(r.stale), unrecoverable: Number(r.unrecoverable) };
  }

  async createJob(job: Pick<JobRecord, "job" | "collection" | "kind">): Promise<boolean> {
    const rows = await this.db.query(
      `INSERT INTO dlip_jobs (collection, job, kind, status)
       SELECT key, $2, $3, 'running' FROM dlip_collections WHERE name = $1
       ON CONFLICT (collection, job) DO NOTHING RETURNING job`,
      [job.collection, job.job, job.kind],
    );
    return rows.length > 0;
  }

  async updateJob(j: JobRecord): Promise<void> {
    await this.db.query(
      `UPDATE dlip_jobs SET status = $3, received = $4, succeeded = $5, failed = $6, errors = $7::jsonb,
         updated_at = now()
       WHERE collection = (SELECT key FROM dlip_collections WHERE name = $1) AND job = $2`,
      [j.collection, j.job, j.status, j.received, j.succeeded, j.failed, JSON.stringify(j.errors)],
    );
  }

  async getJob(collection: string, job: string): Promise<JobRecord | null> {
    const rows = await this.db.query(
      `SELECT j.job, j.kind, j.status, j.received, j.succeeded, j.failed, j.errors, j.created_at, j.updated_at
       FROM dlip_jobs j JOIN dlip_collections c ON c.key = j.collection WHERE c.name = $1 AND j.job = $2`,
      [collection, job],
    );
    if (!rows.length) return null;
    const r = rows[0];
    return {
      job: String(r.job),
      collection,
      kind: r.kind as JobRecord["kind"],
      status: r.status as JobRecord["status"],
      received: Number(r.received),
      succeeded: Number(r.succeeded),
      failed: Number(r.failed),
      errors: r.errors as JobRecord["errors"],
      created: toIso(r.created_at),
      updated: toIso(r.updated_at),
    };
  }
}

function collectionInfo(r: Row): CollectionInfo {
  return {
    key: Number(r.key),
    name: String(r.name),
    model: String(r.model),
    weights: String(r.weights),
    dim: Number(r.dim),
    storeImages: Boolean(r.store_images),
    storeTokens: Boolean(r.store_tokens),
    items: Number(r.items),
    created: toIso(r.created_at),
  };
}

/** True for a unique violation (a concurrent create of the same name, item or job). */
export const isConflict = (err: unknown) => sqlState(err) === "23505";
