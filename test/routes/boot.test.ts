// Boot checks: every graph's real inputs/outputs must be the manifest's (the manifest itself is checked against the
// contract and its checksums in test/unit/manifest.test.ts).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { MICRO, testApp } from "../helpers/app.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "dlip-boot-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("a graph file whose inputs differ from the manifest stops the boot, naming the file", async () => {
  const dir = path.join(tmp, "swapped", "micro");
  cpSync(MICRO, dir, { recursive: true });
  copyFileSync(path.join(MICRO, "itm.onnx"), path.join(dir, "text.onnx")); // right checksum, wrong graph
  const sha = createHash("sha256")
    .update(readFileSync(path.join(dir, "text.onnx")))
    .digest("hex");
  const m = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8"));
  m.files["text.onnx"] = sha;
  m.graphs.text.sha256 = sha;
  writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(m));
  await assert.rejects(testApp({ modelsDir: path.dirname(dir) }), /text\.onnx: (inputs|outputs) are \[/);
});

test("two bundles are served side by side, chosen per request", async () => {
  const root = path.join(tmp, "two");
  cpSync(MICRO, path.join(root, "micro"), { recursive: true });
  cpSync(MICRO, path.join(root, "other"), { recursive: true });
  const file = path.join(root, "other", "manifest.json");
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), name: "other", version: "2" }));
  const app = await testApp({ modelsDir: root, defaultModel: "other" });
  try {
    const models = await app.inject({ method: "GET", url: "/v1/models" });
    assert.deepEqual(
      models.json().data.map((x: { id: string }) => x.id),
      ["micro", "other"],
    );
    assert.equal(models.json().default, "other");
    const a = await app.inject({ method: "POST", url: "/v1/embeddings", payload: { texts: ["a"] } });
    const b = await app.inject({ method: "POST", url: "/v1/embeddings", payload: { texts: ["a"], model: "micro" } });
    assert.equal(a.json().model, "other");
    assert.equal(b.json().model, "micro");
  } finally {
    await app.close();
  }
});
