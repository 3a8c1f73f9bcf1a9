// A small renderer for the kustomizations in deploy/kubernetes, so that CI checks the manifests users apply without
// a kubectl or kustomize binary. It knows the few features those files use (resources, images, strategic-merge
// patches) and refuses any other, so a new feature fails here instead of rendering wrongly. Where kubectl is
// installed, the deploy tests also compare its output with `kubectl kustomize`.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

export type Resource = Record<string, any>; // parsed YAML: shapes checked by the tests that read them

const KNOWN_KEYS = new Set(["apiVersion", "kind", "resources", "images", "patches"]);

// Lists merged item by item on this key, as the Kubernetes API's patchMergeKey says; other lists are replaced.
const MERGE_KEYS: Record<string, string> = {
  containers: "name",
  initContainers: "name",
  env: "name",
  volumes: "name",
  volumeMounts: "mountPath",
  ports: "containerPort",
  imagePullSecrets: "name",
};

export function parseYamlDocuments(text: string, where: string): Resource[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${where}: ${d.errors[0].message}`);
      return d.toJS() as Resource | null;
    })
    .filter((r): r is Resource => r !== null);
}

export function readYamlDocuments(file: string): Resource[] {
  return parseYamlDocuments(readFileSync(file, "utf8"), file);
}

/** The resources `kubectl kustomize dir` would print (in file order rather than kustomize's kind order). */
export function renderKustomization(dir: string): Resource[] {
  const file = path.join(dir, "kustomization.yaml");
  const [k] = readYamlDocuments(file);
  for (const key of Object.keys(k)) {
    if (!KNOWN_KEYS.has(key)) throw new Error(`${file}: '${key}' is not supported by test/helpers/kustomize.ts`);
  }
  if (k.kind !== "Kustomization") throw new Error(`${file}: kind must be Kustomization`);
  let out: Resource[] = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    out.push(...(statSync(p).isDirectory() ? renderKustomization(p) : readYamlDocuments(p)));
  }
  for (const patch of k.patches ?? []) {
    if (Object.keys(patch).join() !== "path") throw new Error(`${file}: only 'patches: - path: FILE' is supported`);
    for (const p of readYamlDocuments(path.join(dir, patch.path))) out = applyPatch(out, p, patch.path);
  }
  for (const image of k.images ?? []) out = out.map((r) => setImage(r, image));
  return out;
}

function sameTarget(r: Resource, p: Resource): boolean {
  return r.apiVersion === p.apiVersion && r.kind === p.kind && r.metadata?.name === p.metadata?.name;
}

function applyPatch(resources: Resource[], patch: Resource, where: string): Resource[] {
  const hits = resources.filter((r) => sameTarget(r, patch));
  if (hits.length !== 1) throw new Error(`${where}: patches ${hits.length} resources, expected 1`);
  return resources.map((r) => (sameTarget(r, patch) ? strategicMerge(r, patch) : r));
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Strategic merge: maps merge key by key (null deletes), lists with a merge key merge item by item. */
export function strategicMerge(base: unknown, patch: unknown, key = ""): any {
  if (isObject(patch) && Object.keys(patch).some((k) => k.startsWith("$")))
    throw new Error(`patch directive ${Object.keys(patch).find((k) => k.startsWith("$"))} is not supported`);
  if (isObject(base) && isObject(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k];
      else out[k] = strategicMerge(base[k], v, k);
    }
    return out;
  }
  const mergeKey = MERGE_KEYS[key];
  if (Array.isArray(base) && Array.isArray(patch) && mergeKey) {
    const out = [...base];
    const added = [];
    for (const item of patch) {
      const i = out.findIndex((b) => isObject(b) && b[mergeKey] === item[mergeKey]);
      if (i >= 0) out[i] = strategicMerge(out[i], item);
      else added.push(item);
    }
    return [...added, ...out]; // kustomize puts the patch's new items first
  }
  return structuredClone(patch);
}

function setImage(r: Resource, image: { name: string; newName?: string; newTag?: string }): Resource {
  const spec = r.spec?.template?.spec;
  if (!spec) return r;
  const rename = (c: Resource) => {
    const [name, tag] = c.image.split(/:(?=[^/]*$)/);
    if (name !== image.name) return c;
    const newTag = image.newTag ?? tag;
    return { ...c, image: `${image.newName ?? name}${newTag ? `:${newTag}` : ""}` };
  };
  const podSpec = { ...spec, containers: spec.containers.map(rename) };
  if (spec.initContainers) podSpec.initContainers = spec.initContainers.map(rename);
  return { ...r, spec: { ...r.spec, template: { ...r.spec.template, spec: podSpec } } };
}
