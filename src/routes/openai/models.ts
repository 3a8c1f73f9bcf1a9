// GET /v1/models and /v1/models/{id} (also without /v1): OpenAI's list and model objects, each with our own fields
// beside OpenAI's (routes/models.ts), and the default model's name at the top of the list.
import type { FastifyInstance } from "fastify";
import Type from "typebox";
import type { ServedModel } from "../../services/models.js";
import { ModelInfo, modelInfo } from "../models.js";
import { namedModel, OpenAIErrorBody, OPENAI_ROUTE, openaiPaths, OWNED_BY } from "./shared.js";

const Model = Type.Intersect([
  Type.Object({
    id: Type.String({ description: "the model's name: the `model` field of requests" }),
    object: Type.Literal("model"),
    created: Type.Integer({ description: "when the bundle was exported (its manifest's `created`), Unix seconds" }),
    owned_by: Type.Literal(OWNED_BY),
  }),
  ModelInfo,
]);

const List = Type.Object({
  object: Type.Literal("list"),
  default: Type.String({ description: "the model used when a request names none" }),
  data: Type.Array(Model),
});

export default async function models(app: FastifyInstance) {
  const model = (m: ServedModel) => ({
    id: m.name,
    object: "model" as const,
    created: Math.floor(Date.parse(m.manifest.created) / 1000) || 0,
    owned_by: OWNED_BY,
    ...modelInfo(app, m),
  });
  for (const url of openaiPaths("/models")) {
    app.get(
      url,
      {
        config: OPENAI_ROUTE,
        schema: { summary: "Served models", tags: ["models"], response: { 200: List, 404: OpenAIErrorBody } },
      },
      async () => ({ object: "list" as const, default: app.models.defaultName, data: app.models.list().map(model) }),
    );
    app.get<{ Params: { id: string } }>(
      `${url}/:id`,
      {
        config: OPENAI_ROUTE,
        schema: {
          summary: "A served model",
          tags: ["models"],
          params: Type.Object({ id: Type.String() }),
          response: { 200: Model, 404: OpenAIErrorBody },
        },
      },
      async (req) => model(namedModel(app, req.params.id)),
    );
  }
}
