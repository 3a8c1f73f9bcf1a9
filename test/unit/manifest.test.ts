import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import {
  BundleError,
  findBundleDirs,
  loadBundles,
  noBundleMessage,
  pickDefault,
  readManifest,
} from "../../src/bundle/manifest.js";
import { answerContext } from "../../src/inference/graphs.js";
import { MICRO } from "../helpers/app.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "dlip-bundle-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function copy(name: string, edit?: (dir: string) => void): string {
  const root = path.join(tmp, name);
  cpSync(MICRO, path.join(root, "micro"), { recursive: true });
  edit?.(path.join(root, "micro"));
  return root;
}

function editManifest(dir: string, f: (m: Record<string, any>) => void) {
  const file = path.join(dir, "manifest.json");
  const m = JSON.parse(readFileSync(file, "utf8"));
  f(m);
  writeFileSync(file, JSON.stringify(m));
}

test("the micro fixture loads", async () => {
  const [b] = await loadBundles(copy("ok"));
  assert.equal(b.manifest.name, "micro");
  assert.equal(b.manifest.preprocessing.image_size, 32);
});

test("no bundle: an empty or missing directory says how to make one", async () => {
  assert.deepEqual(findBundleDirs(path.join(tmp, "nowhere")), []);
  await assert.rejects(
    loadBundles(path.join(tmp, "nowhere")),
    (e: unknown) => e instanceof BundleError && /has no model bundle/.test((e as Error).message),
  );
  assert.match(noBundleMessage("models"), /dlip export/);
});

test("a changed file, a missing file and a bad manifest are refused, naming the file", async () => {
  await assert.rejects(
    loadBundles(copy("sha", (d) => writeFileSync(path.join(d, "tokenizer.json"), "{}"))),
    /tokenizer\.json: sha256/,
  );
  await assert.rejects(loadBundles(copy("gone", (d) => rmSync(path.join(d, "itm.onnx")))), /itm\.onnx: missing/);
  await assert.rejects(
    loadBundles(copy("ver", (d) => editManifest(d, (m) => (m.format_version = 3)))),
    /manifest\.json: format_version must be 1 or 2, got 3/,
  );
  await assert.rejects(
    loadBundles(copy("v2", (d) => editManifest(d, (m) => (m.format_version = 2)))),
    /format_version 2 needs model\.vqa_decoder_reads_image/,
  );
  await assert.rejects(
    loadBundles(copy("v1flag", (d) => editManifest(d, (m) => (m.model.vqa_decoder_reads_image = true)))),
    /model\.vqa_decoder_reads_image needs format_version 2/,
  );
  await assert.rejects(
    loadBundles(copy("name", (d) => editManifest(d, (m) => (m.name = "../../etc")))),
    /name must be a short label/,
  );
  await assert.rejects(
    loadBundles(copy("path", (d) => editManifest(d, (m) => (m.files["../x"] = "00")))),
    /not a plain file name/,
  );
  await assert.rejects(
    loadBundles(copy("pre", (d) => editManifest(d, (m) => (m.preprocessing.resample = "lanczos")))),
    /preprocessing\.resample/,
  );
  await assert.rejects(
    loadBundles(copy("contract", (d) => editManifest(d, (m) => (m.graphs.text.outputs[0].name = "features")))),
    /graphs\.text\.outputs are \[features .*the contract says \[text_feat/,
  );
  await assert.rejects(
    loadBundles(copy("dims", (d) => editManifest(d, (m) => (m.model.decoder_layers = 3)))),
    /graphs\.decoder\.inputs/,
  );
});

test("default model: DEFAULT_MODEL, else 'default', else the first by name", () => {
  assert.equal(pickDefault(["b", "a"], null), "a");
  assert.equal(pickDefault(["b", "default"], null), "default");
  assert.equal(pickDefault(["b", "a"], "b"), "b");
  assert.throws(() => pickDefault(["a"], "zzz"), /DEFAULT_MODEL 'zzz'/);
  assert.equal(readManifest(MICRO).tokenizer.max_caption_tokens, 20);
});

test("format 2: model.vqa_decoder_reads_image is read; the answer decoder then reads the question, then the image", async () => {
  const [b] = await loadBundles(
    copy("v2ok", (d) =>
      editManifest(d, (m) => {
        m.format_version = 2;
        m.model.vqa_decoder_reads_image = true;
      }),
    ),
  );
  assert.equal(b.manifest.model.vqa_decoder_reads_image, true);
  const q = { states: Float32Array.from([1, 2, 3, 4]), length: 2 }; // 2 tokens of width 2
  const image = { embeds: Float32Array.from([5, 6, 7, 8, 9, 10]), feat: new Float32Array(0) }; // 3 tokens
  assert.deepEqual(answerContext(q, image, false), { hidden: q.states, length: 2 });
  const both = answerContext(q, image, true);
  assert.deepEqual([...both.hidden], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(both.length, 5);
});
