// The Dockerfile, checked without a Docker engine (none runs on our machines): hadolint passes; the targets are
// the documented ones; both run tini -> node dist/server.js as a numeric non-root user; the gpu target installs
// onnxruntime-node's CUDA provider; .dockerignore lets in exactly what COPY needs and keeps data, runs and caches out.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers/app.js";
import { containerSpec, parseDockerfile } from "../helpers/dockerfile.js";
import { venvTool } from "../helpers/tools.js";

const DOCKERFILE = path.join(ROOT, "Dockerfile");
const stages = parseDockerfile(DOCKERFILE);

test("hadolint passes on the Dockerfile (every rule, at every severity)", () => {
  const r = spawnSync(venvTool("hadolint"), ["--failure-threshold", "style", DOCKERFILE], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(r.stdout.trim(), "", "no findings");
});

test("targets: gpu (the default, last) on CUDA 12 + cuDNN 9, cpu on Node 20 slim", () => {
  const last = stages[stages.length - 1];
  assert.equal(last.name, "gpu", "docker build without --target builds the last stage");
  assert.match(last.from, /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-/);
  const cpu = stages.find((s) => s.name === "cpu")!;
  assert.match(cpu.from, /^node:20\.\d+\.\d+-\w+-slim$/);
  const gpuDeps = stages.find((s) => s.name === "deps-gpu")!;
  const install = gpuDeps.instructions.find((i) => i.op === "RUN" && /npm ci/.test(i.args))!;
  assert.match(install.args, /npm ci --omit=dev .*--onnxruntime-node-install=cuda12/);
  assert.match(
    install.args,
    /test -f \S*libonnxruntime_providers_cuda\.so/,
    "the build fails if the provider is missing",
  );
  for (const target of ["cpu", "gpu"]) {
    const stage = stages.find((s) => s.name === target)!;
    const copies = stage.instructions.filter((i) => i.op === "COPY").map((i) => i.args);
    assert.ok(copies.includes(`--from=deps-${target} /src/node_modules ./node_modules`), "production dependencies");
    assert.ok(copies.includes("--from=build /src/dist ./dist"), "compiled JavaScript");
    assert.ok(copies.includes("models ./models"), "the default bundle");
  }
});

test("both targets: tini as PID 1, node dist/server.js, numeric non-root user, /app", () => {
  for (const target of ["cpu", "gpu"]) {
    const spec = containerSpec(stages, target);
    assert.deepEqual(spec.argv, ["/usr/bin/tini", "--", "node", "dist/server.js"], target);
    assert.equal(spec.workdir, "/app");
    assert.match(spec.user ?? "", /^[1-9]\d{3,}:[1-9]\d{3,}$/, `${target}: a numeric, non-root USER`);
    assert.equal(spec.env.NODE_ENV, "production");
    assert.equal(spec.env.MODELS_DIR, "models");
    assert.equal(spec.env.ORT_DISABLE_TELEMETRY, "1", "onnxruntime writes nothing and calls nobody");
  }
  assert.equal(containerSpec(stages, "cpu").env.DEVICE, "cpu");
  assert.equal(containerSpec(stages, "gpu").env.DEVICE, "auto");
});

/** Docker's .dockerignore rules: last matching pattern wins, `!` lets back in, a match on a folder covers its files. */
function ignored(rel: string, rules: { re: RegExp; negate: boolean }[]): boolean {
  const prefixes = rel.split("/").map((_, i, parts) => parts.slice(0, i + 1).join("/"));
  let out = false;
  for (const rule of rules) if (prefixes.some((p) => rule.re.test(p))) out = !rule.negate;
  return out;
}

function dockerignoreRules(): { re: RegExp; negate: boolean }[] {
  return readFileSync(path.join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const glob = l.replace(/^!/, "").replace(/^\/+|\/+$/g, "");
      const body = glob
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((part) => {
          if (part === "**/") return "(?:.*/)?";
          if (part === "**") return ".*";
          if (part === "*") return "[^/]*";
          if (part === "?") return "[^/]";
          return part.replace(/[.+^${}()|[\]\\]/g, "\\$&");
        })
        .join("");
      return { re: new RegExp(`^${body}$`), negate };
    });
}

test(".dockerignore lets in what COPY reads and keeps data, runs, caches and the venv out", () => {
  const rules = dockerignoreRules();
  const sources = stages
    .flatMap((s) => s.instructions)
    .filter((i) => i.op === "COPY" && !i.args.startsWith("--from="))
    .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  assert.ok(sources.length >= 5);
  for (const src of sources) {
    assert.equal(ignored(src, rules), false, `COPY ${src} is in the build context`);
    if (src !== "models") assert.ok(existsSync(path.join(ROOT, src)), `COPY ${src} exists`);
  }
  for (const kept of ["src/server.ts", "models/default/manifest.json", "models/default/vision.onnx"])
    assert.equal(ignored(kept, rules), false, kept);
  for (const out of [
    "data/shapes/train/0.png",
    "runs/teacher/checkpoints/last.pt",
    "models/default/scratch.pt",
    "training/.venv/bin/python",
    "training/dlip/__pycache__/x.pyc",
    "node_modules/fastify/package.json",
    "dist/server.js",
    ".git/HEAD",
    "test/fixtures/micro/manifest.json",
  ])
    assert.equal(ignored(out, rules), true, `${out} stays out of the build context`);
});

test("both targets: the embedded store's directory (COLLECTIONS_DATA_DIR) is in a VOLUME made for the server's user", () => {
  for (const target of ["cpu", "gpu"]) {
    const spec = containerSpec(stages, target);
    const stage = stages.find((s) => s.name === target)!;
    assert.ok(spec.env.COLLECTIONS_DATA_DIR, `${target}: ENV COLLECTIONS_DATA_DIR`);
    const store = path.posix.resolve(spec.workdir, spec.env.COLLECTIONS_DATA_DIR);
    const volumes = stage.instructions.filter((i) => i.op === "VOLUME").flatMap((i) => JSON.parse(i.args) as string[]);
    assert.equal(volumes.length, 1, `${target}: one VOLUME`);
    const [volume] = volumes;
    assert.ok(store.startsWith(`${volume}/`), `${target}: the store ${store} is a folder of the volume ${volume}`);
    const made = stage.instructions.find((i) => i.op === "RUN" && i.args.includes(volume));
    assert.ok(made, `${target}: a RUN makes ${volume}`);
    assert.match(made.args, new RegExp(`chown ${spec.user} ${volume}`), `${target}: owned by USER ${spec.user}`);
    const at = (op: string) => stage.instructions.findIndex((i) => i.op === op);
    assert.ok(at("VOLUME") < at("USER"), "made before USER drops root");
  }
});
