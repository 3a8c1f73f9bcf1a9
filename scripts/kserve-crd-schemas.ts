// Vendors the parts of KServe's CRD schemas that deploy/kubernetes/kserve uses, for the offline deploy tests
// (kubernetes-validate knows no KServe kinds). Reads the CRDs of a kserve/kserve checkout, keeps each kind's
// openAPIV3Schema without descriptions, pruned to the fields listed below (a field left out is refused by the
// tests' strict validation, so using one fails loudly instead of passing unchecked), and writes
// test/fixtures/kserve/<kind>.schema.json with its source.
//   node --import tsx scripts/kserve-crd-schemas.ts KSERVE_CHECKOUT COMMIT
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";

type Schema = Record<string, any>;

// the ServingRuntime's spec fields kept (all of them but the multi-node and scheduling extras)
const RUNTIME_SPEC = [
  "annotations",
  "containers",
  "disabled",
  "labels",
  "multiModel",
  "nodeSelector",
  "protocolVersions",
  "supportedModelFormats",
  "tolerations",
  "volumes",
  "imagePullSecrets",
];
// the InferenceService predictor's fields kept: the model form and the pod-level settings a predictor sets
const PREDICTOR = [
  "model",
  "minReplicas",
  "maxReplicas",
  "scaleMetric",
  "scaleMetricType",
  "scaleTarget",
  "timeout",
  "containerConcurrency",
  "canaryTrafficPercent",
  "serviceAccountName",
  "nodeSelector",
  "tolerations",
  "annotations",
  "labels",
  "securityContext",
  "terminationGracePeriodSeconds",
  "imagePullSecrets",
  "deploymentStrategy",
];

const [checkout, commit] = process.argv.slice(2);
if (!checkout || !commit) throw new Error("usage: kserve-crd-schemas.ts KSERVE_CHECKOUT COMMIT");
const out = path.resolve(import.meta.dirname, "../test/fixtures/kserve");

function strip(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(strip);
  if (x && typeof x === "object")
    return Object.fromEntries(
      Object.entries(x)
        .filter(([k]) => k !== "description")
        .map(([k, v]) => [k, strip(v)]),
    );
  return x;
}

function pick(props: Schema, keep: string[]): Schema {
  const missing = keep.filter((k) => !(k in props));
  if (missing.length) throw new Error(`not in the CRD: ${missing.join(", ")}`);
  return Object.fromEntries(keep.map((k) => [k, props[k]]));
}

function vendor(file: string, kind: string, prune: (s: Schema) => void): void {
  const crd = parse(readFileSync(path.join(checkout, "config/crd/full", file), "utf8"));
  const version = crd.spec.versions.find((v: Schema) => v.storage);
  const schema = strip(version.schema.openAPIV3Schema) as Schema;
  prune(schema);
  const doc = {
    $comment: `kserve/kserve@${commit} config/crd/full/${file} (${crd.spec.group}/${version.name} ${kind}), descriptions removed, pruned by scripts/kserve-crd-schemas.ts`,
    apiVersion: `${crd.spec.group}/${version.name}`,
    kind,
    schema,
  };
  writeFileSync(path.join(out, `${kind.toLowerCase()}.schema.json`), JSON.stringify(doc) + "\n");
}

vendor("serving.kserve.io_servingruntimes.yaml", "ServingRuntime", (s) => {
  s.properties.spec.properties = pick(s.properties.spec.properties, RUNTIME_SPEC);
  delete s.properties.status;
});
vendor("serving.kserve.io_inferenceservices.yaml", "InferenceService", (s) => {
  const spec = s.properties.spec;
  spec.properties = { predictor: spec.properties.predictor };
  spec.properties.predictor.properties = pick(spec.properties.predictor.properties, PREDICTOR);
  delete s.properties.status;
});
