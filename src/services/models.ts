// The served models: bundles read and checked at boot (manifest, checksums), each with its tokenizer, image
// preprocessing and the precision of the graphs it serves, looked up by name (names never become paths), and
// described to the inference workers.
import path from "node:path";
import type { Config, Precision } from "../config.js";
import { ApiError } from "../errors.js";
import { loadBundles, pickDefault, type Manifest } from "../bundle/manifest.js";
import { bundleGraphs, fusionFirstToken } from "../bundle/contract.js";
import type { WorkerModel } from "../inference/protocol.js";
import { imageSpec, type ImageSpec } from "../preprocess/image.js";
import { TextTokenizer } from "../preprocess/text.js";

export interface ServedModel {
  name: string;
  dir: string;
  manifest: Manifest;
  tokenizer: TextTokenizer;
  image: ImageSpec;
  precision: Precision; // whose graph files the workers load: graphs.G.file (fp32), graphs.G.int8.file or .fp16.file
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

/**
 * The precision a bundle is served at under PRECISION `wanted` (int8 or fp16): that one only where its manifest has
 * such a variant of every graph it holds (a model mixing them would be neither one's measured quality); otherwise
 * fp32, and `fallback` says why, for the log.
 */
export function servedPrecision(
  manifest: Manifest,
  wanted: Precision,
): { precision: Precision; fallback: string | null } {
  if (wanted === "fp32") return { precision: "fp32", fallback: null };
  const graphs = bundleGraphs(manifest);
  const missing = graphs.filter((g) => manifest.graphs[g]![wanted] === undefined);
  if (missing.length === 0) return { precision: wanted, fallback: null };
  const which = missing.length === graphs.length ? "no graph" : `not every graph (none for ${missing.join(", ")})`;
  return {
    precision: "fp32",
    fallback:
      `PRECISION=${wanted}: bundle '${manifest.name}' has an ${wanted} variant of ${which}; serving its fp32 graphs ` +
      `(\`python -m dlip export BUNDLE --out DIR --${wanted}\` adds them)`,
  };
}

/**
 * Every bundle in MODELS_DIR, read and checked (throws BundleError naming the bundle), as a registry. A bundle that
 * cannot serve PRECISION=int8 serves fp32, with a warning on `log`.
 */
export async function loadModels(
  config: Config,
  log: { warn(obj: object, msg: string): void },
): Promise<ModelRegistry> {
  const bundles = await loadBundles(config.modelsDir);
  const served: ServedModel[] = bundles.map(({ dir, manifest }) => {
    const { precision, fallback } = servedPrecision(manifest, config.precision);
    if (fallback !== null) log.warn({ model: manifest.name, precision }, fallback);
    return {
      name: manifest.name,
      dir,
      manifest,
      tokenizer: TextTokenizer.fromFile(path.join(dir, manifest.tokenizer.file), manifest.tokenizer.special_tokens),
      image: imageSpec(manifest.preprocessing, config.maxImagePixels),
      precision,
    };
  });
  const names = served.map((m) => m.name);
  return new ModelRegistry(served, pickDefault(names, config.defaultModel));
}

/** What an inference worker needs to create a model's sessions and check them against its manifest. */
export function workerModel(m: ServedModel): WorkerModel {
  const graphs = Object.fromEntries(
    bundleGraphs(m.manifest).map((g) => {
      const spec = m.manifest.graphs[g]!;
      // same inputs and outputs (FORMAT.md); a file's external data, beside it, is read by onnxruntime from its path
      const file = m.precision === "fp32" ? spec.file : spec[m.precision]!.file;
      const io = (xs: { name: string; dtype: string }[]) => xs.map(({ name, dtype }) => ({ name, dtype }));
      return [g, { file: path.join(m.dir, file), inputs: io(spec.inputs), outputs: io(spec.outputs) }];
    }),
  );
  const sp = m.manifest.tokenizer.special_tokens;
  const mm = m.manifest.model;
  return {
    name: m.name,
    graphs,
    imageSize: m.manifest.preprocessing.image_size,
    special: { cls: sp.cls, sep: sp.sep, enc: fusionFirstToken(m.manifest), dec: sp.dec },
    decoder: { layers: mm.decoder_layers, heads: mm.decoder_heads, headDim: mm.decoder_head_dim, vocab: mm.vocab_size },
  };
}
