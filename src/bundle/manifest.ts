// Model bundles (training/dlip/export/FORMAT.md): finding them, reading manifest.json, checking every file's
// checksum. Model names are labels from the manifest, looked up in a Map; they never become file paths.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { contractProblem } from "./contract.js";

export const GRAPHS = ["vision", "text", "itm", "vqa_encoder", "decoder"] as const;
export type GraphName = (typeof GRAPHS)[number];

export interface TensorSpec {
  name: string;
  dtype: string;
  shape: (number | string)[];
}

export interface GraphSpec {
  file: string;
  sha256: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  int8?: { file: string; sha256: string };
}

export interface Preprocessing {
  image_size: number;
  mean: [number, number, number];
  std: [number, number, number];
  resample: "bicubic" | "bilinear";
  alpha: "composite_white";
  grayscale: "replicate";
  exif: "apply";
  layout: "NCHW";
  scale: "1/255";
}

export interface SpecialTokenIds {
  pad: number;
  unk: number;
  cls: number;
  sep: number;
  mask: number;
  enc: number;
  dec: number;
}

export interface Manifest {
  format_version: 1 | 2; // 2: model.vqa_decoder_reads_image is present
  name: string;
  version: string;
  created?: string;
  source?: Record<string, unknown>;
  preprocessing: Preprocessing;
  tokenizer: {
    file: string;
    lowercase: boolean;
    special_tokens: SpecialTokenIds;
    max_text_tokens: number;
    max_answer_tokens: number;
    max_caption_tokens: number;
  };
  model: {
    embed_dim: number;
    image_tokens: number;
    vision_width: number;
    text_width: number;
    decoder_layers: number;
    decoder_heads: number;
    decoder_head_dim: number;
    vocab_size: number;
    vqa_decoder_reads_image?: boolean; // format 2: the VQA answer decoder reads the question states, then the image tokens
  };
  graphs: Record<GraphName, GraphSpec>;
  files: Record<string, string>;
  params?: Record<string, number>;
  metrics: Record<string, unknown>;
  tasks: string[];
}

export interface Bundle {
  dir: string; // absolute directory, found by listing MODELS_DIR (never built from a request)
  manifest: Manifest;
}

export class BundleError extends Error {}

/** Sub-directories of `modelsDir` that hold a manifest.json, sorted by directory name. */
export function findBundleDirs(modelsDir: string): string[] {
  const root = path.resolve(modelsDir);
  if (!existsSync(root) || !statSync(root).isDirectory()) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(path.join(root, d.name, "manifest.json")))
    .map((d) => path.join(root, d.name))
    .sort();
}

/** Reads and checks a bundle's manifest.json (fields and types this server relies on). */
export function readManifest(dir: string): Manifest {
  const file = path.join(dir, "manifest.json");
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(file, "utf8")) as Manifest;
  } catch (err) {
    throw new BundleError(`${file}: not readable JSON (${(err as Error).message})`);
  }
  const fail = (what: string) => new BundleError(`${file}: ${what}`);
  if (m === null || typeof m !== "object") throw fail("expected a JSON object");
  if (m.format_version !== 1 && m.format_version !== 2)
    throw fail(`format_version must be 1 or 2, got ${JSON.stringify(m.format_version)}`);
  if (typeof m.name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(m.name)) {
    throw fail(`name must be a short label of letters, digits, '.', '_' or '-', got ${JSON.stringify(m.name)}`);
  }
  const p = m.preprocessing;
  if (!p || !Number.isInteger(p.image_size) || p.image_size <= 0)
    throw fail("preprocessing.image_size must be a positive integer");
  if (!isTriple(p.mean) || !isTriple(p.std) || p.std.some((s) => s <= 0))
    throw fail("preprocessing.mean/std must be 3 numbers (std > 0)");
  const fixed: [keyof Preprocessing, string[]][] = [
    ["resample", ["bicubic", "bilinear"]],
    ["alpha", ["composite_white"]],
    ["grayscale", ["replicate"]],
    ["exif", ["apply"]],
    ["layout", ["NCHW"]],
    ["scale", ["1/255"]],
  ];
  for (const [key, allowed] of fixed) {
    const v = p[key] ?? allowed[0];
    if (!allowed.includes(v as string))
      throw fail(`preprocessing.${key}=${JSON.stringify(v)} is not supported (${allowed.join(", ")})`);
  }
  const t = m.tokenizer;
  if (!t || typeof t.file !== "string") throw fail("tokenizer.file is missing");
  for (const k of ["pad", "unk", "cls", "sep", "mask", "enc", "dec"] as const) {
    if (!Number.isInteger(t.special_tokens?.[k])) throw fail(`tokenizer.special_tokens.${k} must be an integer id`);
  }
  for (const k of ["max_text_tokens", "max_answer_tokens", "max_caption_tokens"] as const) {
    if (!Number.isInteger(t[k]) || t[k] < 2) throw fail(`tokenizer.${k} must be an integer >= 2`);
  }
  const mod = m.model;
  for (const k of [
    "embed_dim",
    "image_tokens",
    "vision_width",
    "text_width",
    "decoder_layers",
    "decoder_heads",
    "decoder_head_dim",
    "vocab_size",
  ] as const) {
    if (!Number.isInteger(mod?.[k]) || mod[k] <= 0) throw fail(`model.${k} must be a positive integer`);
  }
  const readsImage = mod.vqa_decoder_reads_image;
  if (m.format_version === 1 && readsImage !== undefined)
    throw fail("model.vqa_decoder_reads_image needs format_version 2");
  if (m.format_version === 2 && typeof readsImage !== "boolean")
    throw fail("format_version 2 needs model.vqa_decoder_reads_image (true or false)");
  for (const g of GRAPHS) {
    const spec = m.graphs?.[g];
    if (!spec || typeof spec.file !== "string" || !Array.isArray(spec.inputs) || !Array.isArray(spec.outputs)) {
      throw fail(`graphs.${g} is missing or has no file/inputs/outputs`);
    }
  }
  if (!m.files || typeof m.files !== "object") throw fail("files must map file names to sha256");
  for (const name of Object.keys(m.files)) {
    // names come from the bundle author, still: keep them inside the bundle directory
    if (name.includes("/") || name.includes("\\") || name === ".." || name === ".")
      throw fail(`files: '${name}' is not a plain file name`);
  }
  if (!Array.isArray(m.tasks)) throw fail("tasks must be a list");
  const problem = contractProblem(m);
  if (problem) throw fail(problem);
  m.metrics = m.metrics && typeof m.metrics === "object" ? m.metrics : {};
  m.version = String(m.version ?? "");
  return m;
}

/** Checks that every file the manifest lists exists and has its sha256 (rejects the bundle naming the file). */
export async function verifyChecksums(dir: string, m: Manifest): Promise<void> {
  const needed = new Set<string>([m.tokenizer.file, ...GRAPHS.map((g) => m.graphs[g].file)]);
  for (const f of needed) {
    if (!(f in m.files))
      throw new BundleError(`${path.join(dir, "manifest.json")}: '${f}' is used but not listed in files`);
  }
  for (const [name, want] of Object.entries(m.files)) {
    const file = path.join(dir, name);
    if (!existsSync(file)) throw new BundleError(`${file}: missing (listed in manifest.json)`);
    const got = await sha256File(file);
    if (got !== want) throw new BundleError(`${file}: sha256 ${got} differs from the manifest's ${want}`);
  }
  for (const g of GRAPHS) {
    const spec = m.graphs[g];
    if (m.files[spec.file] !== spec.sha256)
      throw new BundleError(
        `${path.join(dir, "manifest.json")}: graphs.${g}.sha256 differs from files['${spec.file}']`,
      );
  }
}

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(file)
      .on("data", (c) => h.update(c))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/** Loads every bundle under modelsDir. Throws BundleError when there is none, or when any is invalid. */
export async function loadBundles(modelsDir: string): Promise<Bundle[]> {
  const dirs = findBundleDirs(modelsDir);
  if (dirs.length === 0) throw new BundleError(noBundleMessage(modelsDir));
  const bundles: Bundle[] = [];
  const names = new Map<string, string>();
  for (const dir of dirs) {
    const manifest = readManifest(dir);
    if (names.has(manifest.name))
      throw new BundleError(`two bundles are named '${manifest.name}': ${names.get(manifest.name)} and ${dir}`);
    names.set(manifest.name, dir);
    await verifyChecksums(dir, manifest);
    bundles.push({ dir, manifest });
  }
  return bundles;
}

export function noBundleMessage(modelsDir: string): string {
  return (
    `${modelsDir}/ has no model bundle (a sub-directory with manifest.json); make one with ` +
    `'cd training && .venv/bin/python -m dlip export RUN --out ../${modelsDir}/NAME', ` +
    `or copy the test bundle: 'bash scripts/make-fixtures.sh && cp -r test/fixtures/micro ${modelsDir}/'`
  );
}

/** The default model: DEFAULT_MODEL when set (must exist), else a bundle named "default", else the first by name. */
export function pickDefault(names: string[], wanted: string | null): string {
  if (wanted !== null) {
    if (!names.includes(wanted))
      throw new BundleError(`DEFAULT_MODEL '${wanted}' is not among the bundles found (${names.join(", ")})`);
    return wanted;
  }
  return names.includes("default") ? "default" : [...names].sort()[0];
}

function isTriple(v: unknown): v is [number, number, number] {
  return Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number" && Number.isFinite(x));
}
