// The collections themselves: POST /v1/collections (create, bound to a model), GET /v1/collections (list),
// GET and DELETE /v1/collections/{name}, POST /v1/collections/{name}/reembed (re-embed with the served weights)
// and GET /v1/collections/{name}/jobs/{job} (an import's or re-embed's progress).
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import { ApiError } from "../errors.js";
import { startReembed } from "../collections/jobs.js";
import { modelIdentity } from "../collections/service.js";
import { checkName, JOB_ID, NAME } from "../collections/validate.js";
import { ModelField } from "./schemas.js";
import {
  Collection,
  COLLECTION_ERRORS,
  collectionBody,
  Job,
  jobBody,
  JobParams,
  NameParams,
} from "./collections-schemas.js";

const CreateBody = Type.Object(
  {
    name: Type.String({ maxLength: 200, description: `matches ${NAME.source}` }),
    model: ModelField,
    store_images: Type.Optional(
      Type.Boolean({
        description:
          "keep each item's image bytes (default false): re-embedding after a model change is one call, and ITM re-ranking can recompute tokens",
      }),
    ),
    store_tokens: Type.Optional(
      Type.Boolean({
        description:
          "keep each item's image tokens as fp16 (default true): ITM re-ranking without running the vision graph",
      }),
    ),
  },
  { additionalProperties: false },
);

const collections: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ["collections"];
  app.post(
    "/v1/collections",
    {
      schema: {
        summary: "Create a collection, bound to a model",
        tags,
        body: CreateBody,
        response: { 201: Collection, ...COLLECTION_ERRORS },
      },
    },
    async (req, reply) => {
      const name = checkName(req.body.name);
      const model = app.models.get(req.body.model);
      const id = modelIdentity(model);
      const created = await app.collections.use((s) =>
        s.createCollection({
          name,
          ...id,
          dim: model.manifest.model.embed_dim,
          storeImages: req.body.store_images ?? false,
          storeTokens: req.body.store_tokens ?? true,
        }),
      );
      if (!created) throw new ApiError("already_exists", `collection '${name}' exists`);
      reply.status(201);
      return collectionBody(await app.collections.get(name));
    },
  );

  app.get(
    "/v1/collections",
    {
      schema: {
        summary: "List the collections",
        tags,
        response: { 200: Type.Object({ collections: Type.Array(Collection) }), ...COLLECTION_ERRORS },
      },
    },
    async () => ({ collections: (await app.collections.use((s) => s.listCollections())).map(collectionBody) }),
  );

  app.get(
    "/v1/collections/:name",
    {
      schema: {
        summary: "One collection",
        tags,
        params: NameParams,
        response: { 200: Collection, ...COLLECTION_ERRORS },
      },
    },
    async (req) => collectionBody(await app.collections.get(checkName(req.params.name))),
  );

  app.delete(
    "/v1/collections/:name",
    {
      schema: {
        summary: "Delete a collection with its items",
        tags,
        params: NameParams,
        response: { 200: Type.Object({ deleted: Type.String() }), ...COLLECTION_ERRORS },
      },
    },
    async (req) => {
      const name = checkName(req.params.name);
      if (!(await app.collections.use((s) => s.deleteCollection(name))))
        throw new ApiError("not_found", `no collection '${name}'`);
      return { deleted: name };
    },
  );

  app.post(
    "/v1/collections/:name/reembed",
    {
      schema: {
        summary: "Re-embed a collection with the served weights of its model (or another model of its dimension)",
        description:
          "Starts a job (202) that re-embeds every item written by other weights from its kept image and text; " +
          "the collection answers 409 model_changed until it is done. 409 when items' images were not kept.",
        tags,
        params: NameParams,
        body: Type.Union([Type.Object({ model: ModelField }, { additionalProperties: false }), Type.Null()], {
          description: "optional: {model} to re-embed with another served model of the same dimension",
        }),
        response: { 202: Job, ...COLLECTION_ERRORS },
      },
      async preValidation(req) {
        if (req.body === undefined) req.body = null; // no body: the collection's own model
      },
    },
    async (req, reply) => {
      const c = await app.collections.get(checkName(req.params.name));
      const model = app.models.get(req.body?.model ?? c.model);
      const job = await startReembed(app, app.collections, c, model);
      reply.status(202).header("location", `/v1/collections/${c.name}/jobs/${job.job}`);
      return jobBody(job);
    },
  );

  app.get(
    "/v1/collections/:name/jobs/:job",
    {
      schema: {
        summary: "An import's or re-embed's progress",
        tags,
        params: JobParams,
        response: { 200: Job, ...COLLECTION_ERRORS },
      },
    },
    async (req) => {
      const name = checkName(req.params.name);
      if (!JOB_ID.test(req.params.job)) throw new ApiError("invalid_field", `job id must match ${JOB_ID.source}`);
      const job = await app.collections.use((s) => s.getJob(name, req.params.job));
      if (!job) throw new ApiError("not_found", `no job '${req.params.job}' in collection '${name}'`);
      return jobBody(job);
    },
  );
};

export default collections;
