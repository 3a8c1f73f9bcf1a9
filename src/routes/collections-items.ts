// A collection's items: PUT /v1/collections/{name}/items (upsert, JSON or multipart, an outcome per item),
// GET and DELETE .../items/{id}, POST .../items/delete ({ids} or {filter}), and PUT .../imports/{job} (bulk: an
// NDJSON stream of items, committed in batches, progress under GET .../jobs/{job}).
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import Type from "typebox";
import { ApiError, invalidField } from "../errors.js";
import { parseFilter } from "../collections/filter.js";
import { embedItems, type ItemInput } from "../collections/ingest.js";
import { runImport } from "../collections/jobs.js";
import { checkId, checkName, JOB_ID, MAX_DELETE_IDS } from "../collections/validate.js";
import {
  COLLECTION_ERRORS,
  ItemParams,
  Job,
  jobBody,
  JobParams,
  Metadata,
  NameParams,
  Outcomes,
} from "./collections-schemas.js";
import { Image } from "./schemas.js";

const MAX_ITEMS_SCHEMA = 10_000; // the schema's cap; COLLECTIONS_MAX_ITEMS is the configured one (checked in the handler)

const Item = Type.Object(
  {
    id: Type.String({ maxLength: 300, description: "chosen by the caller: letters, digits and . _ : @ + = ~ -" }),
    image: Type.Optional(
      Type.Union([Image, Type.Null()], {
        description:
          "base64, a data URI, or an http(s) URL from IMAGE_URL_HOSTS (multipart: a file part named by the id)",
      }),
    ),
    text: Type.Optional(Type.Union([Type.String({ maxLength: 20_000 }), Type.Null()])),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);
const PutBody = Type.Object(
  { items: Type.Array(Item, { minItems: 1, maxItems: MAX_ITEMS_SCHEMA }) },
  { additionalProperties: false },
);
const PutReply = Type.Object({
  upserted: Type.Integer(),
  failed: Type.Integer(),
  items: Outcomes,
});

const ItemReply = Type.Object({
  id: Type.String(),
  text: Type.Union([Type.String(), Type.Null()]),
  has_image: Type.Boolean(),
  metadata: Metadata,
  model: Type.String(),
  weights: Type.String(),
  created: Type.String({ format: "date-time" }),
  updated: Type.String({ format: "date-time" }),
});

const DeleteManyBody = Type.Union([
  Type.Object(
    { ids: Type.Array(Type.String({ maxLength: 300 }), { minItems: 1, maxItems: MAX_DELETE_IDS }) },
    { additionalProperties: false },
  ),
  Type.Object({ filter: Metadata }, { additionalProperties: false }),
]);

/** The multipart form of PUT items: an `items` field (the JSON array), and file parts named by item id. */
async function readItemsForm(req: FastifyRequest): Promise<{ items: ItemInput[] }> {
  const cfg = req.server.config;
  let itemsJson: string | undefined;
  const files = new Map<string, Buffer>();
  let total = 0;
  for await (const part of req.parts({ limits: { fileSize: cfg.fileLimitBytes } })) {
    if (part.type === "file") {
      if (files.has(part.fieldname)) {
        part.file.resume();
        throw invalidField(`file part '${part.fieldname.slice(0, 128)}' is given twice`);
      }
      const data = await part.toBuffer();
      total += data.length;
      if (total > cfg.bodyLimitBytes)
        throw new ApiError("body_too_large", `multipart body is larger than BODY_LIMIT_BYTES (${cfg.bodyLimitBytes})`);
      files.set(part.fieldname, data);
    } else if (part.fieldname === "items" && itemsJson === undefined) itemsJson = String(part.value);
    else
      throw invalidField(
        `unexpected field '${part.fieldname.slice(0, 64)}' (fields: items, once; files: named by item id)`,
      );
  }
  if (itemsJson === undefined) throw invalidField("no 'items' field: a JSON array of {id, text?, metadata?}");
  let items: unknown;
  try {
    items = JSON.parse(itemsJson);
  } catch (err) {
    throw new ApiError("invalid_json", `the 'items' field is not JSON: ${(err as Error).message.slice(0, 160)}`);
  }
  if (!Array.isArray(items)) throw invalidField("the 'items' field must be a JSON array");
  const claimed = new Set<string>();
  const withFiles = items.map((it: ItemInput) => {
    if (it && typeof it === "object" && typeof it.id === "string" && files.has(it.id)) {
      if (it.image !== undefined) throw invalidField(`item '${it.id.slice(0, 128)}' has both an image and a file part`);
      claimed.add(it.id);
      return { ...it, image: files.get(it.id) };
    }
    return it;
  });
  const stray = [...files.keys()].filter((k) => !claimed.has(k));
  if (stray.length) throw invalidField(`file parts named by no item id: ${stray.slice(0, 5).join(", ")}`);
  return { items: withFiles };
}

const items: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ["collections"];
  // an import's body is read as it arrives (a stream), never buffered whole, so BODY_LIMIT_BYTES does not bound it
  app.addContentTypeParser(["application/x-ndjson", "application/jsonl"], (_req, payload, done) => done(null, payload));

  app.put(
    "/v1/collections/:name/items",
    {
      schema: {
        summary: "Upsert items (an image, a text or both, with metadata)",
        description:
          "JSON body as described, or multipart/form-data with an `items` field (the JSON array) and each image as a file part named by its item's id. " +
          "Each item's outcome is listed by index; a bad item does not sink the others. At most COLLECTIONS_MAX_ITEMS items (bulk: PUT .../imports/{job}).",
        tags,
        params: NameParams,
        body: PutBody,
        response: { 200: PutReply, ...COLLECTION_ERRORS },
      },
      async preValidation(req) {
        if (req.isMultipart()) req.body = (await readItemsForm(req)) as typeof req.body;
        else if (req.body === undefined) throw new ApiError("invalid_json", "the request has no body");
      },
    },
    async (req) => {
      const max = app.config.collectionsMaxItems;
      if (req.body.items.length > max)
        throw invalidField(
          `${req.body.items.length} items; at most ${max} per request (COLLECTIONS_MAX_ITEMS): split them, or stream them to PUT /v1/collections/{name}/imports/{job}`,
        );
      const c = await app.collections.get(checkName(req.params.name));
      const model = app.collections.modelFor(c);
      const { writes, outcomes } = await embedItems(app, c, model, req.body.items as ItemInput[], req.deadline);
      await app.collections.use((s) => s.upsertItems(c, writes));
      return { upserted: writes.length, failed: outcomes.length - writes.length, items: outcomes };
    },
  );

  app.get(
    "/v1/collections/:name/items/:id",
    {
      schema: {
        summary: "One item's text and metadata",
        tags,
        params: ItemParams,
        response: { 200: ItemReply, ...COLLECTION_ERRORS },
      },
    },
    async (req) => {
      const name = checkName(req.params.name);
      const id = checkId(req.params.id);
      const item = await app.collections.use((s) => s.getItem(name, id));
      if (!item) {
        await app.collections.get(name); // 404 naming the collection when it is the one missing
        throw new ApiError("not_found", `no item '${id}' in collection '${name}'`);
      }
      const { hasImage, ...rest } = item;
      return { ...rest, has_image: hasImage };
    },
  );

  app.delete(
    "/v1/collections/:name/items/:id",
    {
      schema: {
        summary: "Delete one item",
        tags,
        params: ItemParams,
        response: { 200: Type.Object({ deleted: Type.Integer() }), ...COLLECTION_ERRORS },
      },
    },
    async (req) => {
      const name = checkName(req.params.name);
      const id = checkId(req.params.id);
      await app.collections.get(name);
      const n = await app.collections.use((s) => s.deleteItems(name, [id]));
      if (n === 0) throw new ApiError("not_found", `no item '${id}' in collection '${name}'`);
      return { deleted: n };
    },
  );

  app.post(
    "/v1/collections/:name/items/delete",
    {
      schema: {
        summary: "Delete items by id, or those whose metadata matches a filter",
        tags,
        params: NameParams,
        body: DeleteManyBody,
        response: { 200: Type.Object({ deleted: Type.Integer() }), ...COLLECTION_ERRORS },
      },
    },
    async (req) => {
      const name = checkName(req.params.name);
      await app.collections.get(name);
      const body = req.body;
      if ("ids" in body) {
        body.ids.forEach((id, i) => {
          try {
            checkId(id);
          } catch (err) {
            throw invalidField(`ids[${i}]: ${(err as Error).message}`);
          }
        });
        return { deleted: await app.collections.use((s) => s.deleteItems(name, body.ids)) };
      }
      const filter = parseFilter(body.filter);
      return { deleted: await app.collections.use((s) => s.deleteMatching(name, filter)) };
    },
  );

  app.put(
    "/v1/collections/:name/imports/:job",
    {
      schema: {
        summary: "Bulk import: stream items as NDJSON (one item a line, as in PUT .../items)",
        description:
          "Content-Type application/x-ndjson. The body is read as it arrives and committed every MAX_BATCH_SIZE items; no request deadline applies. " +
          "Progress (lines received, items committed, failures with their line) under GET /v1/collections/{name}/jobs/{job}, from any connection. " +
          "To resume after a broken connection, send the lines after `received` under a new job id (upserts by id are idempotent).",
        tags,
        params: JobParams,
        consumes: ["application/x-ndjson"],
        body: Type.Unsafe<unknown>({ description: "NDJSON lines: {id, image?, text?, metadata?}" }),
        response: { 200: Job, ...COLLECTION_ERRORS },
      },
    },
    async (req, reply) => {
      const name = checkName(req.params.name);
      if (!JOB_ID.test(req.params.job)) throw invalidField(`job id must match ${JOB_ID.source}`);
      const stream = req.body as NodeJS.ReadableStream | undefined;
      if (!stream || typeof (stream as { pipe?: unknown }).pipe !== "function")
        throw new ApiError("unsupported_media_type", "send the items as application/x-ndjson, one JSON item a line");
      const c = await app.collections.get(name);
      const model = app.collections.modelFor(c);
      // no deadline: only the client leaving stops an import (what was committed stays)
      const gone = new AbortController();
      reply.raw.once("close", () => {
        if (!reply.raw.writableFinished) gone.abort(new ApiError("client_gone", "the client disconnected"));
      });
      return jobBody(await runImport(app, app.collections, c, model, req.params.job, stream as never, gone.signal));
    },
  );
};

export default items;
