// The served models: bundles read and checked at boot (manifest, checksums), each with its tokenizer and image
// preprocessing, looked up by name (names never become paths), and described to the inference workers.
import path from "node:path";
import type { Config } from "../config.js";
import { ApiError } from "../errors.js";
import { GRAPHS, loadBundles, pickDefault, type Manifest } from "../bundle/manifest.js";
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

/** Every bundle in MODELS_DIR, read and checked (throws BundleError naming the bundle), as a registry. */
export async function loadModels(config: Config): Promise<ModelRegistry> {
  const bundles = await loadBundles(config.modelsDir);
  const served: ServedModel[] = bundles.map(({ dir, manifest }) => ({
    name: manifest.name,
    dir,
    manifest,
    tokenizer: TextTokenizer.fromFile(path.join(dir, manifest.tokenizer.file), manifest.tokenizer.special_tokens),
    image: imageSpec(manifest.preprocessing, config.maxImagePixels),
  }));
  const names = served.map((m) => m.name);
  return new ModelRegistry(served, pickDefault(names, config.defaultModel));
}

/** What an inference worker needs to create a model's sessions and check them against its manifest. */
export function workerModel(m: ServedModel): WorkerModel {
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
