// Long-running work on a collection, as jobs whose progress is stored (any replica answers GET .../jobs/{job}):
// - an import: an NDJSON body (one item a line, as in PUT .../items) read as it arrives, embedded and committed in
//   batches, so 10,000+ images go in one request that never holds more than a batch in memory and never times out
//   (no request deadline; each batch commits on its own, and a client that resends the lines after the last
//   committed one (`received`: every line up to it is committed or failed) resumes: upserts by id are idempotent);
// - a re-embed: every item written by other weights re-embedded from its kept image and text (one call).
import type { FastifyInstance } from "fastify";
import type { Readable } from "node:stream";
import { ApiError, toApiError } from "../errors.js";
import type { ServedModel } from "../services/models.js";
import { embedItems, type ItemInput } from "./ingest.js";
import { modelIdentity, type Collections } from "./service.js";
import type { CollectionInfo, JobRecord } from "./store.js";

const MAX_ERRORS_KEPT = 100;

function freshJob(c: CollectionInfo, job: string, kind: JobRecord["kind"]): JobRecord {
  const now = new Date().toISOString();
  return {
    job,
    collection: c.name,
    kind,
    status: "running",
    received: 0,
    succeeded: 0,
    failed: 0,
    errors: [],
    created: now,
    updated: now,
  };
}

/** Splits a byte stream into lines of at most `maxBytes` (a longer line is reported, not held). */
async function* lines(stream: Readable, maxBytes: number): AsyncGenerator<{ line: string } | { tooLong: number }> {
  let parts: Buffer[] = [];
  let size = 0;
  let skipping = false;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(10, from); ; nl = chunk.indexOf(10, from)) {
      const end = nl === -1 ? chunk.length : nl;
      if (!skipping) {
        size += end - from;
        if (size > maxBytes) {
          skipping = true;
          parts = [];
        } else parts.push(chunk.subarray(from, end));
      }
      if (nl === -1) break;
      if (skipping) yield { tooLong: size };
      else yield { line: Buffer.concat(parts).toString("utf8") };
      parts = [];
      size = 0;
      skipping = false;
      from = nl + 1;
    }
  }
  if (skipping) yield { tooLong: size };
  else if (size > 0) yield { line: Buffer.concat(parts).toString("utf8") };
}

/** Runs an import of an NDJSON stream into `c` as job `job` (created here: 409 if the id is taken). */
export async function runImport(
  app: FastifyInstance,
  collections: Collections,
  c: CollectionInfo,
  model: ServedModel,
  job: string,
  body: Readable,
  signal: AbortSignal,
): Promise<JobRecord> {
  if (!(await collections.use((s) => s.createJob({ job, collection: c.name, kind: "import" }))))
    throw new ApiError(
      "already_exists",
      `import job '${job}' exists in collection '${c.name}'; pick a new job id (GET .../jobs/${job} shows its progress)`,
    );
  const record = freshJob(c, job, "import");
  const batchSize = app.config.maxBatchSize;
  // a line holds one image as base64 (4/3 of its bytes) plus its metadata and text
  const maxLine = Math.ceil((app.config.fileLimitBytes * 4) / 3) + app.config.collectionsMaxMetadataBytes + 64 * 1024;
  let batch: { line: number; item: ItemInput }[] = [];
  const fail = (line: number, id: string | undefined, code: string, message: string) => {
    record.failed++;
    if (record.errors.length < MAX_ERRORS_KEPT) record.errors.push({ line, ...(id ? { id } : {}), code, message });
  };
  let lineNo = 0;
  // `received` advances only here: every line up to it is committed or failed, so a client that lost its connection
  // resumes from line received + 1
  const flush = async () => {
    if (!batch.length) {
      record.received = lineNo;
      return;
    }
    const { writes, outcomes } = await embedItems(
      app,
      c,
      model,
      batch.map((b) => b.item),
      signal,
      (i) => batch[i].line,
    );
    await collections.use((s) => s.upsertItems(c, writes));
    for (const o of outcomes)
      if (o.status === "ok") record.succeeded++;
      else fail(o.index, o.id ?? undefined, o.error!.code, o.error!.message.replace(/^items\[(\d+)\]\.?/, "line $1: "));
    batch = [];
    record.received = lineNo;
    record.updated = new Date().toISOString();
    await collections.use((s) => s.updateJob(record));
  };
  try {
    for await (const l of lines(body, maxLine)) {
      lineNo++;
      if ("tooLong" in l) {
        fail(lineNo, undefined, "body_too_large", `line ${lineNo} is longer than ${maxLine} bytes`);
        continue;
      }
      if (l.line.trim() === "") continue;
      let item: unknown;
      try {
        item = JSON.parse(l.line);
      } catch (err) {
        fail(lineNo, undefined, "invalid_json", `line ${lineNo} is not JSON: ${(err as Error).message.slice(0, 120)}`);
        continue;
      }
      batch.push({ line: lineNo, item: item as ItemInput });
      if (batch.length >= batchSize) await flush();
    }
    await flush();
    record.status = "done";
  } catch (err) {
    record.status = "failed";
    const e = toApiError(err);
    if (record.errors.length < MAX_ERRORS_KEPT) record.errors.push({ code: e.code, message: e.message });
    await collections.use((s) => s.updateJob(record)).catch(() => {});
    throw err;
  }
  await collections.use((s) => s.updateJob(record));
  return (await collections.use((s) => s.getJob(c.name, job))) ?? record;
}

/**
 * Starts re-embedding `c` with `model` (same name, other weights; or another model of the same dimension): 409 when
 * an item's image was not kept. Runs in the background; progress under GET .../jobs/{job}. The collection is bound
 * to the new weights only once every item is re-embedded, so searches answer 409 until then, never mixed vectors.
 */
export async function startReembed(
  app: FastifyInstance,
  collections: Collections,
  c: CollectionInfo,
  model: ServedModel,
): Promise<JobRecord> {
  const target = modelIdentity(model);
  if (model.manifest.model.embed_dim !== c.dim)
    throw new ApiError(
      "model_changed",
      `model '${model.name}' embeds in ${model.manifest.model.embed_dim} dimensions, collection '${c.name}' in ${c.dim}: create a new collection for it`,
    );
  const { unrecoverable } = await collections.use((s) => s.staleCount(c.name, target));
  if (unrecoverable > 0)
    throw new ApiError(
      "model_changed",
      `${unrecoverable} items of collection '${c.name}' have images that were not kept (store_images false): ` +
        "delete the collection and import its items again",
    );
  const job = `reembed-${Date.now().toString(36)}`;
  await collections.use((s) => s.createJob({ job, collection: c.name, kind: "reembed" }));
  const record = freshJob(c, job, "reembed");
  void reembed(app, collections, c, model, record, collections.stopping.signal).catch((err: unknown) => {
    app.log.warn({ err, job }, "re-embed failed");
  });
  return record;
}

async function reembed(
  app: FastifyInstance,
  collections: Collections,
  c: CollectionInfo,
  model: ServedModel,
  record: JobRecord,
  signal: AbortSignal,
): Promise<void> {
  const target = modelIdentity(model);
  const bound = { ...c, model: target.model, weights: target.weights };
  try {
    let after = "";
    for (;;) {
      const page = await collections.use((s) => s.staleItems(c.name, target, after, app.config.maxBatchSize));
      if (!page.length) break;
      after = page[page.length - 1].id;
      const { writes, outcomes } = await embedItems(
        app,
        bound,
        model,
        page.map((r) => ({ id: r.id, image: r.image ?? undefined, text: r.text ?? undefined, metadata: {} })),
        signal,
      );
      await collections.use((s) => s.updateEmbeddings(bound, target, writes));
      record.received += page.length;
      record.succeeded += writes.length;
      for (const o of outcomes.filter((x) => x.status === "error")) {
        record.failed++;
        if (record.errors.length < MAX_ERRORS_KEPT)
          record.errors.push({ id: o.id ?? undefined, code: o.error!.code, message: o.error!.message });
      }
      record.updated = new Date().toISOString();
      await collections.use((s) => s.updateJob(record));
    }
    if (record.failed === 0) await collections.use((s) => s.rebindCollection(c.name, target));
    record.status = record.failed === 0 ? "done" : "failed";
  } catch (err) {
    record.status = "failed";
    const e = toApiError(err);
    record.errors.push({ code: e.code, message: e.message });
  }
  record.updated = new Date().toISOString();
  await collections.use((s) => s.updateJob(record));
}
