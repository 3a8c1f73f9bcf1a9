// Model bundles and their onnxruntime sessions: bundles are read and checked (checksums) at boot, sessions are
// created in the inference workers and checked against the manifest (input/output names), warmed up, then the
// server is ready. Decorates `app.models` (lookup by name: names never become paths), `app.pool`, `app.lifecycle`.
import path from "node:path";
import fp from "fastify-plugin";
import type { Config } from "../config.js";
import { ApiError } from "../errors.js";
import { GRAPHS, loadBundles, pickDefault, type Manifest } from "../bundle/manifest.js";
import { WorkerPool } from "../inference/pool.js";
import type { WorkerModel } from "../inference/protocol.js";
import { imageSpec, type ImageSpec } from "../preprocess/image.js";
import { TextTokenizer } from "../preprocess/text.js";

export interface ServedModel {
  name: string;
  dir: string;
  manifest: Manifest;
  tokenizer: TextTokenizer;
  image: ImageSpec;
}

export class ModelRegistry {
  private readonly byName: Map<string, ServedModel>;
  constructor(
    models: ServedModel[],
    readonly defaultName: string,
  ) {
    this.byName = new Map(models.map((m) => [m.name, m]));
  }

  /** The model a request names (or the default). 404 for names not served. */
  get(name?: string | null): ServedModel {
    const key = name ?? this.defaultName;
    const m = this.byName.get(key);
    if (!m)
      throw new ApiError(
        "unknown_model",
        `model '${String(key).slice(0, 100)}' is not served (served: ${[...this.byName.keys()].join(", ")})`,
      );
    return m;
  }

  list(): ServedModel[] {
    return [...this.byName.values()];
  }
}

/** Readiness: true once warmed up, false again from the start of a drain. */
export class Lifecycle {
  ready = false;
  draining = false;
  inflight = 0; // admitted /v1 requests not yet answered (a drain waits for 0)
}

declare module "fastify" {
  interface FastifyInstance {
    models: ModelRegistry;
    pool: WorkerPool;
    lifecycle: Lifecycle;
  }
}

export interface SessionsOptions {
  config: Config;
}

export default fp<SessionsOptions>(
  async (app, { config }) => {
    const bundles = await loadBundles(config.modelsDir);
    const served: ServedModel[] = bundles.map(({ dir, manifest }) => ({
      name: manifest.name,
      dir,
      manifest,
      tokenizer: TextTokenizer.fromFile(path.join(dir, manifest.tokenizer.file), manifest.tokenizer.special_tokens),
      image: imageSpec(manifest.preprocessing, config.maxImagePixels),
    }));
    const registry = new ModelRegistry(
      served,
      pickDefault(
        served.map((m) => m.name),
        config.defaultModel,
      ),
    );
    const lifecycle = new Lifecycle();
    const pool = new WorkerPool(
      config.workers,
      { models: served.map(workerModel), device: config.device, threads: config.threadsPerWorker, warmup: true },
      app.log,
    );
    await pool.start(); // sessions created, checked against the manifest, warmed up (fails loudly)
    lifecycle.ready = true;
    app.log.info(
      {
        models: served.map((m) => m.name),
        default: registry.defaultName,
        provider: pool.provider,
        workers: config.workers,
      },
      "models loaded",
    );
    for (const m of served) app.metrics.modelInfo.labels(m.name, m.manifest.version, pool.provider).set(1);
    app.decorate("models", registry);
    app.decorate("pool", pool);
    app.decorate("lifecycle", lifecycle);
    app.addHook("onClose", async () => {
      lifecycle.ready = false;
      await pool.close();
    });
  },
  { name: "sessions", dependencies: ["metrics"] },
);

function workerModel(m: ServedModel): WorkerModel {
  const graphs = Object.fromEntries(
    GRAPHS.map((g) => {
      const spec = m.manifest.graphs[g];
      const io = (xs: { name: string; dtype: string }[]) => xs.map(({ name, dtype }) => ({ name, dtype }));
      return [g, { file: path.join(m.dir, spec.file), inputs: io(spec.inputs), outputs: io(spec.outputs) }];
    }),
  );
  const sp = m.manifest.tokenizer.special_tokens;
  const mm = m.manifest.model;
  return {
    name: m.name,
    graphs,
    imageSize: m.manifest.preprocessing.image_size,
    special: { cls: sp.cls, sep: sp.sep, enc: sp.enc, dec: sp.dec },
    decoder: { layers: mm.decoder_layers, heads: mm.decoder_heads, headDim: mm.decoder_head_dim, vocab: mm.vocab_size },
  };
}
