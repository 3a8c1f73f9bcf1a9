// Model bundles (training/dlip/export/FORMAT.md): finding them, reading manifest.json, checking every file's
// checksum. Model names are labels from the manifest, looked up in a Map; they never become file paths.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { Ajv2020, type ErrorObject } from "ajv/dist/2020.js";
import {
  bundleGraphs,
  CONTRACT,
  contractProblem,
  formatProblem,
  GRAPHS,
  readContractFile,
  type GraphName,
} from "./contract.js";
import type { Manifest } from "./manifest.types.js";

export { GRAPHS, type GraphName };
// The manifest's types, generated from the schema it is validated with (scripts/manifest-types.ts).
export type { GraphSpec, Manifest, Preprocessing, SpecialTokenIds, TensorSpec } from "./manifest.types.js";

const MANIFEST_FILE = CONTRACT.files.manifest;

/** manifest.schema.json, the JSON Schema training/dlip/export/manifest.py validates manifests with too. */
export const MANIFEST_SCHEMA = readContractFile("manifest.schema.json") as Record<string, any>;
if (JSON.stringify(Object.keys(MANIFEST_SCHEMA.properties.graphs.properties)) !== JSON.stringify(GRAPHS))
  throw new Error(`manifest.schema.json: graphs differ from contract.json's graphs (${GRAPHS.join(", ")})`);

// compiled once; verbose: each error carries the failing value and schema, whose description words the message
const validate = new Ajv2020({ verbose: true, strict: true }).compile<Manifest>(MANIFEST_SCHEMA);

/**
 * The first way `m` breaks manifest.schema.json, naming the field, or null: `field must be ..., got VALUE`, with the
 * schema's description where a pattern or a rule says more than its keyword (worded as training/dlip/export/
 * manifest.py words jsonschema's errors).
 */
export function schemaProblem(m: unknown): string | null {
  if (validate(m)) return null;
  const errors = validate.errors!;
  const e = errors.find((x) => x.keyword === "anyOf") ?? errors[0];
  return ruleOf(e.schemaPath) ?? describe(e, m);
}

/** The description of the if/then rule (the format-version rules) a schema path runs through, if any. */
function ruleOf(schemaPath: string): string | null {
  let node = MANIFEST_SCHEMA as any;
  for (const key of schemaPath.split("/").slice(1)) {
    if (node && typeof node === "object" && "if" in node && typeof node.description === "string")
      return node.description;
    node = node?.[key];
  }
  return null;
}

const KINDS: Record<string, string> = {
  object: "an object",
  array: "a list",
  string: "a string",
  integer: "an integer",
  number: "a number",
  boolean: "true or false",
  null: "null",
};

function describe(e: ErrorObject, m: unknown): string {
  const name = fieldPath(e.instancePath, m);
  const field = name || "the manifest";
  const got = JSON.stringify(e.data);
  const description = e.parentSchema?.description as string | undefined;
  const p = e.params as Record<string, any>;
  if (e.propertyName !== undefined) return `${name} key ${JSON.stringify(e.propertyName)} must be ${description}`;
  switch (e.keyword) {
    case "required":
      return `missing field '${name ? `${name}.` : ""}${p.missingProperty}'`;
    case "type":
      return `${field} must be ${String(p.type)
        .split(",")
        .map((t) => KINDS[t])
        .join(" or ")}, got ${got}`;
    case "enum":
      return `${field} must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}, got ${got}`;
    case "anyOf":
      return `${field} must be ${(e.schema as { type: string }[]).map((s) => KINDS[s.type]).join(" or ")}, got ${got}`;
    case "pattern":
    case "not":
      if (description) return `${field} must be ${description}, got ${got}`;
      break;
    case "minimum":
    case "exclusiveMinimum":
      return `${field} must be ${p.comparison} ${p.limit}, got ${got}`;
    case "minItems":
    case "maxItems":
      return `${field} must have ${e.keyword === "minItems" ? "at least" : "at most"} ${p.limit} items, got ${got}`;
  }
  return `${field} ${e.message}`;
}

/** A JSON pointer into `m` as a field name: `graphs.text.inputs[0].shape`. */
function fieldPath(pointer: string, m: unknown): string {
  let node = m as any;
  let out = "";
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    out += Array.isArray(node) ? `[${key}]` : out ? `.${key}` : key;
    node = node?.[key];
  }
  return out;
}

export interface Bundle {
  dir: string; // absolute directory, found by listing MODELS_DIR (never built from a request)
  manifest: Manifest;
}

export class BundleError extends Error {}

/**
 * Sub-directories of `modelsDir` that hold a manifest.json, sorted by directory name. A symbolic link to a directory
 * counts (`models/current -> v2`, volume mounts): entries are stat()ed, which follows links, not read as Dirents.
 */
export function findBundleDirs(modelsDir: string): string[] {
  const root = path.resolve(modelsDir);
  if (!existsSync(root) || !statSync(root).isDirectory()) return [];
  return readdirSync(root)
    .map((name) => path.join(root, name))
    .filter(
      (dir) => statSync(dir, { throwIfNoEntry: false })?.isDirectory() && existsSync(path.join(dir, MANIFEST_FILE)),
    )
    .sort();
}

/** Reads a bundle's manifest.json and checks it against manifest.schema.json and the graph contract. */
export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST_FILE);
  let m: unknown;
  try {
    m = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new BundleError(`${file}: not readable JSON (${(err as Error).message})`);
  }
  const problem = formatProblem(m, dir) ?? schemaProblem(m) ?? contractProblem(m as Manifest);
  if (problem) throw new BundleError(`${file}: ${problem}`);
  return m as Manifest;
}

/**
 * Every graph file with its manifest checksum and external data file: the fp32 graph (`graphs.G`), then its int8 and
 * fp16 variants where it has them.
 */
function graphVariants(m: Manifest): { field: string; file: string; sha256: string; externalData?: string }[] {
  return bundleGraphs(m).flatMap((g) => {
    const spec = m.graphs[g]!;
    const variants = [{ field: `graphs.${g}`, ...spec }];
    for (const p of ["int8", "fp16"] as const) {
      const v = spec[p];
      if (v) variants.push({ ...spec, field: `graphs.${g}.${p}`, ...v, external_data: v.external_data });
    }
    return variants.map((v) => ({ field: v.field, file: v.file, sha256: v.sha256, externalData: v.external_data }));
  });
}

/**
 * Checks that every file the manifest lists exists and has its sha256 (rejects the bundle naming the file), and that
 * the tokenizer and every graph file, int8 variants included, are listed there with their graph entry's checksum
 * (as training/dlip/export/manifest.py validate_bundle does).
 */
export async function verifyChecksums(dir: string, m: Manifest): Promise<void> {
  const manifestFile = path.join(dir, "manifest.json");
  const variants = graphVariants(m);
  const externalData = variants.flatMap((v) => (v.externalData ? [v.externalData] : []));
  for (const f of new Set([m.tokenizer.file, ...variants.map((v) => v.file), ...externalData])) {
    if (!(f in m.files)) throw new BundleError(`${manifestFile}: '${f}' is used but not listed in files`);
  }
  for (const [name, want] of Object.entries(m.files)) {
    const file = path.join(dir, name);
    if (!existsSync(file)) throw new BundleError(`${file}: missing (listed in manifest.json)`);
    const got = await sha256File(file);
    if (got !== want) throw new BundleError(`${file}: sha256 ${got} differs from the manifest's ${want}`);
  }
  for (const v of variants) {
    if (m.files[v.file] !== v.sha256)
      throw new BundleError(`${manifestFile}: ${v.field}.sha256 differs from files['${v.file}']`);
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

/** The error of a MODELS_DIR without bundles: the path as given, and commands that fill it (run from the repo). */
export function noBundleMessage(modelsDir: string): string {
  const dir = modelsDir.replace(/(.)\/+$/, "$1"); // "models/" -> "models"; "/" stays
  const slash = dir.endsWith("/") ? "" : "/";
  // the export runs in training/: a relative MODELS_DIR is one level up from there, an absolute one is itself
  const out = path.isAbsolute(dir) ? `${dir}${slash}NAME` : `../${dir}${slash}NAME`;
  return (
    `${dir}${slash} has no model bundle (a sub-directory with manifest.json); make one with ` +
    `'cd training && .venv/bin/python -m dlip export RUN --out ${out}', ` +
    `or copy the test bundle: 'bash scripts/make-fixtures.sh && cp -r test/fixtures/micro ${dir}${slash}'`
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
