// deploy/kubernetes, checked without a cluster: every overlay renders, validates against the Kubernetes API
// schemas (kubernetes-validate, strict), and agrees with the server: probe paths answer, the probed port is the
// one the server listens on under that ConfigMap and the image's ENV, and the grace period outlasts preStop + drain.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config.js";
import { testApp, ROOT } from "../helpers/app.js";
import { containerSpec, parseDockerfile } from "../helpers/dockerfile.js";
import { parseYamlDocuments, renderKustomization, type Resource } from "../helpers/kustomize.js";
import { venvTool } from "../helpers/tools.js";

const K8S = path.join(ROOT, "deploy/kubernetes");
// The image target each overlay runs (its ENV is part of the pod's environment).
const OVERLAYS = { cpu: "cpu", gpu: "gpu", embedded: "cpu" } as const;
// Overlays with several replicas and an autoscaler (scale-out/): their collections live in PostgreSQL.
const SCALE_OUT = new Set(["cpu", "gpu"]);
// The oldest Kubernetes the manifests need (preStop's sleep action) and the newest the validator knows.
const KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"];
// Time the server needs after the drain to close its listener and workers.
const CLOSE_MARGIN_S = 5;

const rendered: Record<string, Resource[]> = Object.fromEntries(
  ["base", "scale-out", ...Object.keys(OVERLAYS).map((o) => `overlays/${o}`), "monitoring"].map((d) => [
    d,
    renderKustomization(path.join(K8S, d)),
  ]),
);

function one(resources: Resource[], kind: string): Resource {
  const hits = resources.filter((r) => r.kind === kind);
  assert.equal(hits.length, 1, `one ${kind}`);
  return hits[0];
}

function serverContainer(resources: Resource[]): Resource {
  const c = one(resources, "Deployment").spec.template.spec.containers.find((x: Resource) => x.name === "server");
  assert.ok(c, "the Deployment has a container named server");
  return c;
}

let app: FastifyInstance;
before(async () => {
  app = await testApp();
});
after(async () => {
  await app?.close();
});

test("base, overlays and monitoring, rendered, pass kubernetes-validate --strict; ServiceMonitor is the only CRD", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-k8s-"));
  try {
    const files = Object.entries(rendered).map(([name, resources]) => {
      const file = path.join(dir, `${name.replace("/", "-")}.yaml`);
      writeFileSync(file, resources.map((r) => stringify(r)).join("---\n"));
      return file;
    });
    const versions = KUBERNETES_VERSIONS.flatMap((v) => ["-k", v]);
    const r = spawnSync(venvTool("kubernetes-validate"), ["--strict", ...versions, ...files], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const lines = r.stdout.trim().split("\n");
    const total = Object.values(rendered).flat().length * KUBERNETES_VERSIONS.length;
    assert.equal(lines.length, total, r.stdout);
    for (const line of lines) {
      if (line.startsWith("WARN")) assert.match(line, /schema for kind ServiceMonitor with api version monitoring/);
      else assert.match(line, /^INFO .* passed for resource /);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the renderer agrees with kubectl kustomize, where kubectl is installed", (t) => {
  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  if (kubectl.status !== 0) {
    t.skip("kubectl not on PATH");
    return;
  }
  const key = (r: Resource) => `${r.kind}/${r.metadata.name}`;
  for (const [name, ours] of Object.entries(rendered)) {
    const out = execFileSync("kubectl", ["kustomize", path.join(K8S, name)], { encoding: "utf8" });
    const theirs = parseYamlDocuments(out, `kubectl kustomize ${name}`);
    assert.deepEqual(
      Object.fromEntries(theirs.map((r) => [key(r), r])),
      Object.fromEntries(ours.map((r) => [key(r), r])),
      name,
    );
  }
});

for (const [overlay, target] of Object.entries(OVERLAYS)) {
  const resources = rendered[`overlays/${overlay}`];
  const image = containerSpec(parseDockerfile(path.join(ROOT, "Dockerfile")), target);
  const env = { ...image.env, ...one(resources, "ConfigMap").data };

  test(`${overlay}: probes hit the server's /readyz and /healthz on the port it listens on`, async () => {
    const config = loadConfig(env, []); // the ConfigMap's values are valid settings
    const c = serverContainer(resources);
    assert.deepEqual(c.envFrom, [{ configMapRef: { name: one(resources, "ConfigMap").metadata.name } }]);
    const http = c.ports.find((p: Resource) => p.name === "http");
    assert.equal(http.containerPort, config.port, "containerPort is the server's PORT");
    const probes = { startupProbe: "/readyz", readinessProbe: "/readyz", livenessProbe: "/healthz" };
    for (const [probe, want] of Object.entries(probes)) {
      assert.deepEqual(c[probe].httpGet, { path: want, port: "http" }, probe);
      const res = await app.inject({ method: "GET", url: c[probe].httpGet.path });
      assert.equal(res.statusCode, 200, `${probe} ${want} answers on a ready server`);
    }
    const svc = one(resources, "Service");
    assert.deepEqual(
      svc.spec.ports.map((p: Resource) => p.targetPort),
      ["http"],
    );
  });

  test(`${overlay}: the grace period outlasts preStop and the server's drain`, () => {
    const config = loadConfig(env, []);
    const pod = one(resources, "Deployment").spec.template.spec;
    const preStopS = serverContainer(resources).lifecycle.preStop.sleep.seconds;
    assert.ok(preStopS >= 3 && preStopS <= 15, "a short pause for the endpoint to leave the Service");
    assert.ok(
      pod.terminationGracePeriodSeconds > preStopS + config.drainMs / 1000 + CLOSE_MARGIN_S,
      `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > preStop ${preStopS} s + DRAIN_MS ` +
        `${config.drainMs} ms + ${CLOSE_MARGIN_S} s`,
    );
  });

  test(`${overlay}: non-root, no privilege escalation, capabilities dropped, read-only root, labels agree`, () => {
    const deploy = one(resources, "Deployment");
    const pod = deploy.spec.template.spec;
    const c = serverContainer(resources);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(`${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`, image.user, "image USER");
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
    assert.ok(
      pod.volumes.some((v: Resource) => v.name === "tmp" && v.emptyDir),
      "a writable /tmp beside the read-only root",
    );
    const podLabels = deploy.spec.template.metadata.labels;
    const selects = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => podLabels[k] === v);
    assert.ok(selects(deploy.spec.selector.matchLabels));
    assert.ok(selects(one(resources, "Service").spec.selector));
    if (!SCALE_OUT.has(overlay)) return;
    assert.ok(selects(one(resources, "PodDisruptionBudget").spec.selector.matchLabels));
    const hpa = one(resources, "HorizontalPodAutoscaler");
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: deploy.metadata.name,
    });
    assert.ok(hpa.spec.minReplicas >= 2, "the PodDisruptionBudget can let one pod go");
  });

  if (SCALE_OUT.has(overlay))
    test(`${overlay}: several replicas share PostgreSQL: DATABASE_URL from a Secret the pods need, no volume`, () => {
      const deploy = one(resources, "Deployment");
      assert.ok(deploy.spec.replicas >= 2);
      const url = (serverContainer(resources).env ?? []).filter((e: Resource) => e.name === "DATABASE_URL");
      assert.equal(url.length, 1, "DATABASE_URL is set");
      const ref = url[0].valueFrom?.secretKeyRef;
      assert.ok(ref?.name && ref?.key, "from a Secret, not a literal in the manifest");
      assert.notEqual(ref.optional, true, "a pod without the Secret does not start (no fallback to an embedded store)");
      assert.equal(
        one(resources, "ConfigMap").data.DATABASE_URL,
        undefined,
        "no URL (with its password) in the ConfigMap",
      );
      assert.equal(
        resources.filter((r) => r.kind === "PersistentVolumeClaim").length,
        0,
        "no store directory to share",
      );
    });
  else
    test(`${overlay}: the embedded store: one pod, Recreate, no autoscaler, its directory on a ReadWriteOncePod claim`, () => {
      const deploy = one(resources, "Deployment");
      assert.equal(deploy.spec.replicas, 1);
      assert.deepEqual(deploy.spec.strategy, { type: "Recreate" }, "a rollout never runs the old and new pod together");
      assert.equal(resources.filter((r) => r.kind === "HorizontalPodAutoscaler").length, 0);
      assert.equal((serverContainer(resources).env ?? []).filter((e: Resource) => e.name === "DATABASE_URL").length, 0);
      const claim = one(resources, "PersistentVolumeClaim");
      assert.deepEqual(claim.spec.accessModes, ["ReadWriteOncePod"], "mounted by one pod of the cluster at a time");
      const pod = deploy.spec.template.spec;
      const volume = pod.volumes.find((v: Resource) => v.persistentVolumeClaim?.claimName === claim.metadata.name);
      assert.ok(volume, "the pod mounts the claim");
      const mount = serverContainer(resources).volumeMounts.find((v: Resource) => v.name === volume.name);
      assert.equal(mount.readOnly, undefined);
      assert.ok(env.COLLECTIONS_DATA_DIR, "the image sets COLLECTIONS_DATA_DIR");
      const store = path.posix.resolve(image.workdir, env.COLLECTIONS_DATA_DIR);
      assert.ok(store.startsWith(`${mount.mountPath}/`), `the store ${store} lies on the claim (${mount.mountPath})`);
      assert.equal(env.DATABASE_URL, undefined, "no DATABASE_URL: the embedded store");
    });

  test(`${overlay}: resources requested and limited; threads fit the CPU limit`, () => {
    const config = loadConfig(env, []);
    const { requests, limits } = serverContainer(resources).resources;
    for (const k of ["cpu", "memory"]) assert.ok(requests[k] && limits[k], `${k} requested and limited`);
    assert.ok(config.workers * config.threadsPerWorker <= Number(limits.cpu), "WORKERS x THREADS_PER_WORKER");
    if (overlay === "gpu") {
      assert.equal(limits["nvidia.com/gpu"], 1);
      assert.equal(config.device, "cuda", "fail fast on a node without a usable GPU");
    } else {
      assert.equal(limits["nvidia.com/gpu"], undefined);
      assert.equal(config.device, "cpu");
    }
  });
}

test("the ServiceMonitor scrapes the Service's http port at /metrics, which the server answers", async () => {
  const sm = one(rendered.monitoring, "ServiceMonitor");
  const svc = one(rendered["overlays/cpu"], "Service");
  assert.ok(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels[k] === v));
  assert.deepEqual(
    sm.spec.endpoints.map((e: Resource) => [e.port, e.path]),
    [["http", "/metrics"]],
  );
  assert.ok(svc.spec.ports.some((p: Resource) => p.name === "http"));
  const res = await app.inject({ method: "GET", url: "/metrics" });
  assert.equal(res.statusCode, 200);
  assert.match(res.body, /^# TYPE dlip_queue_depth_rows gauge$/m, "the metric the commented HPA variant scales on");
});

test("the kustomize renderer refuses features it does not implement", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-kust-"));
  try {
    writeFileSync(path.join(dir, "kustomization.yaml"), "kind: Kustomization\nnamePrefix: x-\n");
    assert.throws(() => renderKustomization(dir), /'namePrefix' is not supported/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
