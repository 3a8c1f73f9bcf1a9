// The collection routes as a client sees them (README, Retrieval over stored collections): what the benchmark times
// and scores through the API. Every call checks its status and throws with the server's answer otherwise.

export interface SearchHit {
  id: string;
  score: number;
  itc: number;
  itm: number | null;
  metadata?: Record<string, unknown> | null;
}

export interface SearchBody {
  text?: string;
  image?: string;
  target?: "image" | "text";
  limit: number;
  offset?: number;
  filter?: Record<string, unknown>;
  rerank?: "itm";
  rerank_k?: number;
}

export interface PutItem {
  id: string;
  image?: string; // base64
  text?: string;
  metadata?: Record<string, unknown>;
}

export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status}: ${body.slice(0, 500)}`);
  }
}

async function call<T>(url: string, method: string, body: unknown, what: string, ok = [200, 201]): Promise<T> {
  const r = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!ok.includes(r.status)) throw new ApiCallError(r.status, text, what);
  return (text ? JSON.parse(text) : null) as T;
}

export class CollectionsClient {
  constructor(readonly base: string) {}

  create(name: string, opts: { model?: string; store_images?: boolean } = {}): Promise<unknown> {
    return call(`${this.base}/v1/collections`, "POST", { name, ...opts }, `create collection ${name}`, [201]);
  }

  get(name: string): Promise<{ name: string; items: number; [k: string]: unknown }> {
    return call(`${this.base}/v1/collections/${name}`, "GET", undefined, `get collection ${name}`, [200]);
  }

  async remove(name: string): Promise<void> {
    await call(
      `${this.base}/v1/collections/${name}`,
      "DELETE",
      undefined,
      `delete collection ${name}`,
      [200, 204, 404],
    );
  }

  /** Upserts; throws when any item failed (the answer names each item's outcome). */
  async put(name: string, items: PutItem[]): Promise<void> {
    const out = await call<{ items?: { status?: string; error?: unknown }[] }>(
      `${this.base}/v1/collections/${name}/items`,
      "PUT",
      { items },
      `put ${items.length} items into ${name}`,
      [200, 201, 207],
    );
    const failed = (out?.items ?? []).filter((x) => x.error !== undefined && x.error !== null);
    if (failed.length > 0)
      throw new Error(`put into ${name}: ${failed.length} items failed: ${JSON.stringify(failed[0])}`);
  }

  async search(name: string, body: SearchBody): Promise<SearchHit[]> {
    const out = await call<{ results: SearchHit[] }>(
      `${this.base}/v1/collections/${name}/search`,
      "POST",
      body,
      `search ${name}`,
      [200],
    );
    return out.results;
  }

  /** POST /v1/embeddings with images (base64): the server's image embedding alone, for the import's bound. */
  async embedImages(images: string[]): Promise<void> {
    await call(`${this.base}/v1/embeddings`, "POST", { images }, "embed images", [200]);
  }
}
