// The collections service: the store behind its interface, opened on first use, with every failure to
// reach the database turned into the 503 the routes answer (Retry-After) and remembered for readiness; and the
// binding of a collection to the model that embeds it.
import { createHash } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import type { Config } from "../config.js";
import { ApiError } from "../errors.js";
import type { ModelRegistry, ServedModel } from "../services/models.js";
import { requireTask } from "../routes/task.js";
import { sqlState } from "./db.js";
import { PgliteDb } from "./pglite.js";
import { PostgresDb } from "./postgres.js";
import { SqlStore } from "./sql.js";
import {
  StoreUnavailable,
  unavailable,
  type CollectionInfo,
  type CollectionStore,
  type ModelIdentity,
} from "./store.js";

/** The store the configuration names: PostgreSQL + pgvector with DATABASE_URL, else PGlite in COLLECTIONS_DATA_DIR. */
export function createStore(config: Config): CollectionStore {
  return config.databaseUrl
    ? new SqlStore("postgres", new PostgresDb(config.databaseUrl))
    : new SqlStore("pglite", new PgliteDb(config.collectionsDataDir));
}

/**
 * A model's identity as collections record it: its name and a sha256 over the manifest's checksums of the graphs
 * that make and score vectors (vision, text, itm: the fp32 files, so PRECISION=int8 of the same weights is the same
 * model). A re-export with other weights changes it; a manifest edit that leaves the graphs alone does not. A model
 * whose bundle does not serve retrieval (no text or ITM graph) is refused: 400 unsupported_task.
 */
export function modelIdentity(m: ServedModel): ModelIdentity {
  requireTask(m, "collect");
  const g = m.manifest.graphs;
  const weights = createHash("sha256")
    .update(`${g.vision!.sha256}\n${g.text!.sha256}\n${g.itm!.sha256}\n`)
    .digest("hex");
  return { model: m.name, weights };
}

export interface StoreHealth {
  status: "ok" | "unavailable" | "not_opened";
  store: "pglite" | "postgres";
  reason?: string;
}

export class Collections {
  private opened: Promise<void> | null = null;
  private lastError: string | null = null;
  /** Aborted at close: background jobs (re-embeds) stop with it. */
  readonly stopping = new AbortController();

  constructor(
    readonly store: CollectionStore,
    private readonly models: ModelRegistry,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** Opens and migrates the store once; after a failure, the next call tries again. */
  open(): Promise<void> {
    if (!this.opened) {
      this.opened = this.store.open().then(
        () => {
          this.lastError = null;
          this.log.info({ store: this.store.kind }, "collections store open");
        },
        (err: unknown) => {
          this.opened = null;
          throw err;
        },
      );
    }
    return this.opened;
  }

  /** Runs `fn` against the open store; a database that cannot be reached is a 503 store_unavailable. */
  async use<T>(fn: (store: CollectionStore) => Promise<T>): Promise<T> {
    try {
      await this.open();
      const out = await fn(this.store);
      this.lastError = null;
      return out;
    } catch (err) {
      if (err instanceof ApiError) throw err;
      const state = sqlState(err);
      // values the checks let through and the database refuses (class 22: data exceptions) are the request's fault
      if (state?.startsWith("22"))
        throw new ApiError(
          "invalid_field",
          `the database refused a value: ${String((err as Error).message).slice(0, 200)}`,
        );
      // the collection was deleted while this request wrote to it
      if (state === "23503") throw new ApiError("not_found", "the collection was deleted during this request");
      if (err instanceof StoreUnavailable || this.opened === null) {
        this.lastError = String((err as Error)?.message ?? err);
        this.log.warn({ err: this.lastError, store: this.store.kind }, "collections store unavailable");
        throw unavailable(err);
      }
      throw err;
    }
  }

  /** Readiness of the store (a round trip, at most `timeoutMs`); never throws. */
  async health(timeoutMs = 2000): Promise<StoreHealth> {
    if (this.opened === null && this.lastError === null) return { status: "not_opened", store: this.store.kind };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.use((s) => s.ping()),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      return { status: "ok", store: this.store.kind };
    } catch (err) {
      return { status: "unavailable", store: this.store.kind, reason: String((err as Error).message).slice(0, 300) };
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.stopping.abort(new ApiError("draining", "the server is shutting down"));
    await this.store.close();
  }

  /** The collection, or 404. */
  async get(name: string): Promise<CollectionInfo> {
    const c = await this.use((s) => s.getCollection(name));
    if (!c) throw new ApiError("not_found", `no collection '${name}'`);
    return c;
  }

  /**
   * The served model that embeds this collection's queries and items; 409 model_changed when the model is gone or
   * its weights are no longer those that wrote the collection's vectors (mixing them would return junk).
   */
  modelFor(c: CollectionInfo): ServedModel {
    const served = this.models.list().find((m) => m.name === c.model);
    const how = c.storeImages
      ? `re-embed it with POST /v1/collections/${c.name}/reembed (it kept its images)`
      : `it kept no images, so delete it and import the items again (or re-embed: POST /v1/collections/${c.name}/reembed works when every item is text-only)`;
    if (!served)
      throw new ApiError(
        "model_changed",
        `collection '${c.name}' was embedded by model '${c.model}', which this server does not serve; serve it again, or ${how} with {"model": "<a served model>"}`,
      );
    const id = modelIdentity(served);
    if (id.weights !== c.weights)
      throw new ApiError(
        "model_changed",
        `collection '${c.name}' was embedded by model '${c.model}' with weights ${c.weights.slice(0, 12)}..., but the served '${c.model}' has weights ${id.weights.slice(0, 12)}...: ${how}`,
      );
    return served;
  }
}
