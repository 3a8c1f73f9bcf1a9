// The collections storage interface: what routes and services see. Two implementations (collections/sql.ts over a
// driver): embedded PGlite in a worker thread (collections/pglite.ts), and PostgreSQL + pgvector through `pg`
// (collections/postgres.ts) when DATABASE_URL is set. Same schema, same SQL.
import { ApiError } from "../errors.js";
import type { Filter } from "./filter.js";

/** Which model wrote a collection's vectors: its name and the checksum of the weights that define the ITC space. */
export interface ModelIdentity {
  model: string;
  weights: string; // sha256 hex (collections/model.ts)
}

export interface NewCollection extends ModelIdentity {
  name: string;
  dim: number; // the model's embed_dim
  storeImages: boolean; // keep each item's image bytes (re-embedding; ITM re-ranking recomputes tokens)
  storeTokens: boolean; // keep each item's image tokens as fp16 (ITM re-ranking without the vision graph)
}

export interface CollectionInfo extends NewCollection {
  key: number; // the store's integer key (names its ANN indexes); not part of the API
  items: number;
  created: string; // ISO 8601
}

/** An item as written: embeddings computed, image bytes and tokens present only where the collection keeps them. */
export interface ItemWrite {
  id: string;
  text: string | null;
  metadata: Record<string, unknown>;
  image: Buffer | null; // kept image bytes (store_images)
  tokens: Buffer | null; // fp16 image tokens (store_tokens), (N * Dv) little-endian
  imageEmb: number[] | null; // L2-normalised ITC feature of the image
  textEmb: number[] | null; // L2-normalised ITC feature of the text
}

export interface ItemRecord {
  id: string;
  text: string | null;
  metadata: Record<string, unknown>;
  hasImage: boolean;
  model: string;
  weights: string;
  created: string;
  updated: string;
}

export type Target = "image" | "text";

export interface VectorQuery {
  target: Target; // which vectors are searched: the items' image or text embeddings
  vector: number[]; // L2-normalised query
  k: number; // rows wanted (offset + limit, or rerank_k)
  filter: Filter | null;
}

export interface Hit {
  id: string;
  itc: number; // cosine similarity with the query
  metadata: Record<string, unknown>;
}

/** What ITM re-ranking reads of a candidate. */
export interface Candidate {
  id: string;
  text: string | null;
  image: Buffer | null;
  tokens: Buffer | null;
}

/** A page of items to re-embed (their stored inputs). */
export interface ReembedRow {
  id: string;
  text: string | null;
  image: Buffer | null;
}

export interface JobRecord {
  job: string;
  collection: string;
  kind: "import" | "reembed";
  status: "running" | "done" | "failed";
  received: number; // import: lines read; reembed: items visited
  succeeded: number;
  failed: number;
  errors: { line?: number; id?: string; code: string; message: string }[]; // the first 100
  created: string;
  updated: string;
}

export interface CollectionStore {
  readonly kind: "pglite" | "postgres";
  /** Opens the store and migrates its schema (idempotent); throws StoreUnavailable when the database is not there. */
  open(): Promise<void>;
  /** A round trip to the database (readiness); throws StoreUnavailable. */
  ping(): Promise<void>;
  close(): Promise<void>;

  /** Creates a collection and its ANN indexes; false when the name is taken. */
  createCollection(c: NewCollection): Promise<boolean>;
  listCollections(): Promise<CollectionInfo[]>;
  getCollection(name: string): Promise<CollectionInfo | null>;
  /** Deletes a collection with its items, jobs and indexes; false when there was none. */
  deleteCollection(name: string): Promise<boolean>;
  /** Binds a collection to the model that re-embedded all of its items. */
  rebindCollection(name: string, model: ModelIdentity): Promise<void>;

  /** Inserts or replaces items, all in one transaction (acknowledged = committed). */
  upsertItems(collection: CollectionInfo, items: ItemWrite[]): Promise<void>;
  getItem(collection: string, id: string): Promise<ItemRecord | null>;
  /** Deletes the items with these ids; returns how many existed. */
  deleteItems(collection: string, ids: string[]): Promise<number>;
  /** Deletes the items whose metadata matches; returns how many. */
  deleteMatching(collection: string, filter: Filter): Promise<number>;

  /** Stage one: the k nearest by cosine over the ANN index (iterative scan: a filter still gets k rows). */
  search(collection: CollectionInfo, q: VectorQuery): Promise<Hit[]>;
  /** Stage two's inputs for these ids (order not kept). */
  candidates(collection: string, ids: string[]): Promise<Candidate[]>;

  /** Items whose vectors another model (weights) wrote, after `afterId`, by id. */
  staleItems(collection: string, current: ModelIdentity, afterId: string, limit: number): Promise<ReembedRow[]>;
  /** Writes re-computed vectors (and tokens) of existing items under `model`, in one transaction. */
  updateEmbeddings(
    collection: CollectionInfo,
    model: ModelIdentity,
    rows: Pick<ItemWrite, "id" | "imageEmb" | "textEmb" | "tokens">[],
  ): Promise<void>;
  /** Counts the items not yet written by `current`, and how many of those cannot be re-embedded (no image kept). */
  staleCount(collection: string, current: ModelIdentity): Promise<{ stale: number; unrecoverable: number }>;

  createJob(job: Pick<JobRecord, "job" | "collection" | "kind">): Promise<boolean>;
  updateJob(job: JobRecord): Promise<void>;
  getJob(collection: string, job: string): Promise<JobRecord | null>;
}

/** The database is unreachable, restarting or gone: the collection routes answer 503 (Retry-After) until it is back. */
export class StoreUnavailable extends Error {}

export function unavailable(err: unknown): ApiError {
  return new ApiError(
    "store_unavailable",
    `the collections database is unavailable (${String((err as Error)?.message ?? err).slice(0, 200)}); retry shortly`,
    2,
  );
}
