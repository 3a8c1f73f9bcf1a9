// GET /v1/models: what this server serves, with each model's evaluation metrics from its manifest.
import type { FastifyInstance } from "fastify";
import Type from "typebox";

const Reply = Type.Object({
  default: Type.String(),
  models: Type.Array(
    Type.Object({
      name: Type.String(),
      version: Type.String(),
      tasks: Type.Array(Type.String()),
      provider: Type.String({ description: "onnxruntime execution provider in use: cpu or cuda" }),
      image_size: Type.Integer(),
      embed_dim: Type.Integer(),
      metrics: Type.Record(Type.String(), Type.Unknown(), {
        description: "the manifest's metrics (retrieval_tr1, caption_cider, vqa_acc, ...)",
      }),
    }),
  ),
});

export default async function models(app: FastifyInstance) {
  app.get(
    "/v1/models",
    { schema: { summary: "Served models", tags: ["models"], response: { 200: Reply } } },
    async () => ({
      default: app.models.defaultName,
      models: app.models.list().map((m) => ({
        name: m.name,
        version: m.manifest.version,
        tasks: m.manifest.tasks,
        provider: app.pool.provider,
        image_size: m.manifest.preprocessing.image_size,
        embed_dim: m.manifest.model.embed_dim,
        metrics: m.manifest.metrics,
      })),
    }),
  );
}
