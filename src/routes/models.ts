// What this server says about each served model (our own fields, beside OpenAI's in GET /v1/models): its version,
// tasks, execution provider, graph precision, image size, embedding size and evaluation metrics from its manifest.
import type { FastifyInstance } from "fastify";
import Type from "typebox";
import type { ServedModel } from "../services/models.js";

export const ModelInfo = Type.Object({
  name: Type.String(),
  version: Type.String(),
  tasks: Type.Array(Type.String(), {
    description: "the bundle's tasks (retrieval, captioning, vqa); a request for another is a 400 unsupported_task",
  }),
  provider: Type.String({ description: "onnxruntime execution provider in use: cpu or cuda" }),
  precision: Type.Enum(["fp32", "int8", "fp16"], {
    description:
      "the graphs served: the bundle's float graphs (fp32), its dynamic-quantised ones (int8) or its float16 ones " +
      "(fp16): PRECISION",
  }),
  image_size: Type.Integer(),
  embed_dim: Type.Integer(),
  metrics: Type.Record(Type.String(), Type.Unknown(), {
    description: "the manifest's metrics (retrieval_tr1, caption_cider, vqa_acc, ...)",
  }),
});

export function modelInfo(app: FastifyInstance, m: ServedModel) {
  return {
    name: m.name,
    version: m.manifest.version,
    tasks: m.manifest.tasks,
    provider: app.pool.provider,
    precision: m.precision,
    image_size: m.manifest.preprocessing.image_size,
    embed_dim: m.manifest.model.embed_dim,
    metrics: m.manifest.metrics,
  };
}
