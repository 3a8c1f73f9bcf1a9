// deploy/kubernetes/kserve, checked without a cluster: the ServingRuntime and InferenceService validate, strictly
// (unknown fields refused, as kubectl's strict field validation does), against KServe's own CRD schemas vendored
// under test/fixtures/kserve (scripts/kserve-crd-schemas.ts; kubernetes-validate knows no KServe kinds), and agree
// with the server: the port it listens on under the runtime's env and the image's ENV, probes on the v2 health
// routes that answer, the metrics annotations, the model format the InferenceService asks for.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { Ajv } from "ajv";
import type { FastifyInstance } from "fastify";
import { loadConfig } from "../../src/config.js";
import { FIXTURES, ROOT, testApp } from "../helpers/app.js";
import { containerSpec, parseDockerfile } from "../helpers/dockerfile.js";
import { renderKustomization, type Resource } from "../helpers/kustomize.js";

const rendered = renderKustomization(path.join(ROOT, "deploy/kubernetes/kserve"));
const KUBERNETES_DEFAULT_GRACE_S = 30; // the runtime sets none: the pod gets Kubernetes' default
const CLOSE_MARGIN_S = 5;

interface Vendored {
  apiVersion: string;
  kind: string;
  schema: Resource;
}
const SCHEMAS: Vendored[] = ["servingruntime", "inferenceservice"].map((k) =>
  JSON.parse(readFileSync(path.join(FIXTURES, "kserve", `${k}.schema.json`), "utf8")),
);

/** A structural schema made strict: objects with listed properties refuse others (x-kubernetes-preserve-unknown-fields aside). */
function strict(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(strict);
  if (!s || typeof s !== "object") return s;
  const out = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, k === "properties" ? mapValues(v) : strict(v)]));
  if (out.properties && out.additionalProperties === undefined && !out["x-kubernetes-preserve-unknown-fields"])
    out.additionalProperties = false;
  return out;
}
const mapValues = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, strict(v)]));

// formats (int32, int64, ...) and x-kubernetes-* annotations are the API server's, not JSON Schema's
const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
const validators = new Map(SCHEMAS.map((s) => [`${s.apiVersion}/${s.kind}`, ajv.compile(strict(s.schema) as object)]));

function validate(r: Resource): string[] {
  const v = validators.get(`${r.apiVersion}/${r.kind}`);
  assert.ok(v, `a vendored schema for ${r.apiVersion} ${r.kind}`);
  if (v(r)) return [];
  return (v.errors ?? []).map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`);
}

function one(kind: string): Resource {
  const hits = rendered.filter((r) => r.kind === kind);
  assert.equal(hits.length, 1, `one ${kind}`);
  return hits[0];
}
const runtime = one("ServingRuntime");
const isvc = one("InferenceService");
const container = runtime.spec.containers.find((c: Resource) => c.name === "kserve-container");
const image = containerSpec(parseDockerfile(path.join(ROOT, "Dockerfile")), "gpu");
const env = { ...image.env, ...Object.fromEntries(container.env.map((e: Resource) => [e.name, e.value])) };

let app: FastifyInstance;
before(async () => {
  app = await testApp();
});
after(async () => {
  await app?.close();
});

test("the ServingRuntime and InferenceService validate strictly against KServe's CRD schemas", () => {
  assert.deepEqual(
    rendered.map((r) => r.kind),
    ["ServingRuntime", "InferenceService"],
  );
  for (const r of rendered) {
    assert.deepEqual(validate(r), [], `${r.kind}/${r.metadata.name}`);
    assert.match(r.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a DNS-1123 name");
  }
});

test("the strict validation refuses a misspelt field and a wrong type (it can fail)", () => {
  const typo = structuredClone(runtime);
  typo.spec.containers[0].readinesProbe = typo.spec.containers[0].readinessProbe;
  assert.match(validate(typo).join("\n"), /must NOT have additional properties.*readinesProbe/);
  const wrong = structuredClone(isvc);
  wrong.spec.predictor.minReplicas = "one";
  assert.match(validate(wrong).join("\n"), /minReplicas must be integer/);
});

test("v2 protocol on the port the server listens on; probes on the v2 health routes, which answer", async () => {
  const config = loadConfig(env, []); // the runtime's env is valid settings
  assert.deepEqual(runtime.spec.protocolVersions, ["v2"]);
  assert.deepEqual(
    container.ports.map((p: Resource) => p.containerPort),
    [config.port],
    "one port (Knative exposes one), the server's PORT",
  );
  assert.equal(config.port, 8080, "KServe's default HTTP port");
  const probes = {
    startupProbe: "/v2/health/ready",
    readinessProbe: "/v2/health/ready",
    livenessProbe: "/v2/health/live",
  };
  for (const [probe, want] of Object.entries(probes)) {
    assert.deepEqual(container[probe].httpGet, { path: want, port: config.port }, probe);
    const res = await app.inject({ method: "GET", url: want });
    assert.equal(res.statusCode, 200, `${probe} ${want} answers on a ready server`);
  }
  assert.equal(config.modelsDir, "/mnt/models", "where KServe's storage initializer puts storageUri");
});

test("metrics annotations point at the server's /metrics on its port", async () => {
  const config = loadConfig(env, []);
  const a = runtime.spec.annotations;
  assert.equal(a["prometheus.kserve.io/port"], String(config.port));
  assert.equal(a["prometheus.kserve.io/path"], "/metrics");
  assert.equal((await app.inject({ method: "GET", url: "/metrics" })).statusCode, 200);
});

test("the InferenceService asks for the runtime's model format over v2", () => {
  const m = isvc.spec.predictor.model;
  assert.equal(m.runtime, runtime.metadata.name);
  assert.equal(m.protocolVersion, "v2");
  assert.ok(
    runtime.spec.supportedModelFormats.some(
      (f: Resource) => f.name === m.modelFormat.name && f.version === m.modelFormat.version,
    ),
    "a supported model format",
  );
  assert.match(m.storageUri, /^(pvc|gs|s3|https?):\/\//);
});

test("non-root as the image's USER, read-only root with /tmp, threads fit the CPU limit, drain fits the grace period", () => {
  const config = loadConfig(env, []);
  const sc = container.securityContext;
  assert.equal(sc.runAsNonRoot, true);
  assert.equal(`${sc.runAsUser}:${sc.runAsGroup}`, image.user, "image USER");
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.deepEqual(sc.capabilities.drop, ["ALL"]);
  assert.deepEqual(container.volumeMounts, [{ name: "tmp", mountPath: "/tmp" }]);
  assert.ok(runtime.spec.volumes.some((v: Resource) => v.name === "tmp" && v.emptyDir));
  const { requests, limits } = container.resources;
  for (const k of ["cpu", "memory"]) assert.ok(requests[k] && limits[k], `${k} requested and limited`);
  assert.ok(config.workers * config.threadsPerWorker <= Number(limits.cpu), "WORKERS x THREADS_PER_WORKER");
  assert.ok(config.drainMs / 1000 + CLOSE_MARGIN_S < KUBERNETES_DEFAULT_GRACE_S, "DRAIN_MS within the grace period");
});
