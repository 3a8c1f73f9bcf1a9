import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import { manifestTypes, TYPES_FILE } from "../../scripts/manifest-types.js";
import { cacheNames, contractProblem, fusionFirstToken, graphContract } from "../../src/bundle/contract.js";
import {
  BundleError,
  findBundleDirs,
  GRAPHS,
  loadBundles,
  MANIFEST_SCHEMA,
  noBundleMessage,
  pickDefault,
  readManifest,
  schemaProblem,
  type Manifest,
} from "../../src/bundle/manifest.js";
import { answerContext } from "../../src/inference/graphs.js";
import { MICRO, ROOT } from "../helpers/app.js";

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

test("the no-bundle hint prints MODELS_DIR as given: relative from training/, absolute as it is", () => {
  const rel = noBundleMessage("models");
  assert.match(rel, /^models\/ has no model bundle/);
  assert.match(rel, / --out \.\.\/models\/NAME'/);
  assert.match(rel, /cp -r test\/fixtures\/micro models\/'$/);
  assert.match(noBundleMessage("models/"), /^models\/ has no .* --out \.\.\/models\/NAME'/);
  const abs = noBundleMessage("/srv/dlip/models");
  assert.match(abs, /^\/srv\/dlip\/models\/ has no model bundle/);
  assert.match(abs, / --out \/srv\/dlip\/models\/NAME'/);
  assert.match(abs, /cp -r test\/fixtures\/micro \/srv\/dlip\/models\/'$/);
  assert.doesNotMatch(abs, /\.\.\/\/|\/\//, "no '..//abs' and no doubled slash");
});

test("a bundle folder that is a symbolic link is found and loaded; a dangling link is skipped", async () => {
  const root = path.join(tmp, "links");
  mkdirSync(root);
  const real = path.join(tmp, "elsewhere-v2");
  cpSync(MICRO, real, { recursive: true });
  symlinkSync(real, path.join(root, "current")); // models/current -> v2
  symlinkSync(path.join(tmp, "no-such-dir"), path.join(root, "dangling"));
  writeFileSync(path.join(root, "notes.txt"), "not a bundle");
  assert.deepEqual(findBundleDirs(root), [path.join(root, "current")]);
  const [b] = await loadBundles(root);
  assert.equal(b.manifest.name, "micro");
  assert.equal(b.dir, path.join(root, "current"));
});

test("a changed file, a missing file and a bad manifest are refused, naming the file", async () => {
  await assert.rejects(
    loadBundles(copy("sha", (d) => writeFileSync(path.join(d, "tokenizer.json"), "{}"))),
    /tokenizer\.json: sha256/,
  );
  await assert.rejects(loadBundles(copy("gone", (d) => rmSync(path.join(d, "itm.onnx")))), /itm\.onnx: missing/);
  await assert.rejects(
    loadBundles(copy("ver", (d) => editManifest(d, (m) => (m.format_version = 5)))),
    /manifest\.json: format_version must be one of 3, 4, got 5/,
  );
  // format 4: the first token of fused text is stated, and the graphs are exactly those of the tasks
  const v4 = (m: Record<string, any>) => ((m.format_version = 4), (m.tokenizer.fusion_first_token = "enc"));
  await assert.rejects(
    loadBundles(copy("v4-noflag", (d) => editManifest(d, (m) => (v4(m), delete m.tokenizer.fusion_first_token)))),
    /format_version 4 needs .* tokenizer\.fusion_first_token/,
  );
  await assert.rejects(
    loadBundles(copy("v4-graphs", (d) => editManifest(d, (m) => (v4(m), (m.tasks = ["captioning"]))))),
    /graphs are vision, text, itm, vqa_encoder, cross_kv, decoder; tasks captioning need exactly vision, cross_kv, decoder/,
  );
  // format 3 is still read: every graph and task, [ENC] first
  const v3 = copy("v3", (d) => editManifest(d, (m) => ((m.format_version = 3), delete m.tokenizer.fusion_first_token)));
  const [old] = await loadBundles(v3);
  assert.equal(old.manifest.format_version, 3);
  assert.equal(fusionFirstToken(old.manifest), old.manifest.tokenizer.special_tokens.enc);
  await assert.rejects(
    loadBundles(copy("noflag", (d) => editManifest(d, (m) => delete m.model.vqa_decoder_reads_image))),
    /format_version 4 needs model\.vqa_decoder_reads_image/,
  );
  await assert.rejects(
    loadBundles(copy("name", (d) => editManifest(d, (m) => (m.name = "../../etc")))),
    /manifest\.json: name must be a short label of letters, digits, .*, got "\.\.\/\.\.\/etc"/,
  );
  await assert.rejects(
    loadBundles(copy("path", (d) => editManifest(d, (m) => (m.files["../x"] = "00")))),
    /manifest\.json: files key "\.\.\/x" must be a plain file name/,
  );
  await assert.rejects(
    loadBundles(copy("pre", (d) => editManifest(d, (m) => (m.preprocessing.resample = "lanczos")))),
    /manifest\.json: preprocessing\.resample must be one of "bicubic", "bilinear", got "lanczos"/,
  );
  await assert.rejects(
    loadBundles(copy("contract", (d) => editManifest(d, (m) => (m.graphs.text.outputs[0].name = "features")))),
    /graphs\.text\.outputs are \[features .*the contract says \[text_feat/,
  );
  await assert.rejects(
    loadBundles(copy("dims", (d) => editManifest(d, (m) => (m.model.decoder_layers = 3)))),
    /graphs\.cross_kv\.outputs/,
  );
});

test("int8 variants are checked as the fp32 graphs: listed in files, with the same checksum", async () => {
  // a stand-in int8 file (a copy of text.onnx): these checks read checksums, not graphs
  const withInt8 = (name: string, edit: (m: Record<string, any>, sha: string) => void) =>
    copy(name, (d) => {
      cpSync(path.join(d, "text.onnx"), path.join(d, "text.int8.onnx"));
      editManifest(d, (m) => edit(m, m.files["text.onnx"]));
    });
  const [ok] = await loadBundles(
    withInt8("int8-ok", (m, sha) => {
      m.files["text.int8.onnx"] = sha;
      m.graphs.text.int8 = { file: "text.int8.onnx", sha256: sha };
    }),
  );
  assert.equal(ok.manifest.graphs.text?.int8?.file, "text.int8.onnx");
  await assert.rejects(
    loadBundles(
      withInt8("int8-unlisted", (m, sha) => {
        m.graphs.text.int8 = { file: "text.int8.onnx", sha256: sha };
      }),
    ),
    /manifest\.json: 'text\.int8\.onnx' is used but not listed in files/,
  );
  await assert.rejects(
    loadBundles(
      withInt8("int8-sha", (m, sha) => {
        m.files["text.int8.onnx"] = sha;
        m.graphs.text.int8 = { file: "text.int8.onnx", sha256: "0".repeat(64) };
      }),
    ),
    /manifest\.json: graphs\.text\.int8\.sha256 differs from files\['text\.int8\.onnx'\]/,
  );
  await assert.rejects(
    loadBundles(
      withInt8("int8-null", (m) => {
        m.graphs.text.int8 = { file: "text.int8.onnx", sha256: null };
      }),
    ),
    /graphs\.text\.int8\.sha256 must be a string, got null/,
  );
  // a graph's (or variant's) external data file must be listed in files, so that its checksum is checked
  for (const [name, edit] of [
    ["data-fp32", (m: Record<string, any>) => (m.graphs.text.external_data = "text.onnx.data")],
    [
      "data-fp16",
      (m: Record<string, any>, sha: string) => {
        m.files["text.int8.onnx"] = sha;
        m.graphs.text.fp16 = { file: "text.int8.onnx", sha256: sha, external_data: "text.fp16.onnx.data" };
      },
    ],
  ] as const) {
    const file = name === "data-fp32" ? "text\\.onnx\\.data" : "text\\.fp16\\.onnx\\.data";
    await assert.rejects(loadBundles(withInt8(name, edit)), new RegExp(`'${file}' is used but not listed in files`));
  }
});

test("default model: DEFAULT_MODEL, else 'default', else the first by name", () => {
  assert.equal(pickDefault(["b", "a"], null), "a");
  assert.equal(pickDefault(["b", "default"], null), "default");
  assert.equal(pickDefault(["b", "a"], "b"), "b");
  assert.throws(() => pickDefault(["a"], "zzz"), /DEFAULT_MODEL 'zzz'/);
  assert.equal(readManifest(MICRO).tokenizer.max_caption_tokens, 20);
});

test("formats 1 and 2 are refused at boot with how to re-export them", async () => {
  for (const version of [1, 2]) {
    const root = copy(`v${version}`, (d) =>
      editManifest(d, (m) => {
        m.format_version = version;
        delete m.source.random_init;
        if (version === 1) delete m.model.vqa_decoder_reads_image;
      }),
    );
    await assert.rejects(loadBundles(root), (e: unknown) => {
      const msg = (e as Error).message;
      assert.ok(e instanceof BundleError, msg);
      assert.match(msg, new RegExp(`bundle format ${version} is no longer read`));
      const dir = path.join(root, "micro");
      assert.ok(
        msg.includes(
          `python -m dlip recover-weights ${dir}\` then \`python -m dlip export ${dir} --out ${dir} --overwrite`,
        ),
        msg,
      );
      return true;
    });
  }
  const withWeights = copy("v2w", (d) =>
    editManifest(d, (m) => {
      m.format_version = 2;
      m.weights = { file: "weights.safetensors" };
    }),
  );
  await assert.rejects(
    loadBundles(withWeights),
    /re-export it \(in training\/\): `python -m dlip export \S+ --out \S+ --overwrite`$/,
  );
});

test("the answer decoder reads the question, then the image, where the bundle says so", () => {
  assert.equal(typeof readManifest(MICRO).model.vqa_decoder_reads_image, "boolean");
  const q = { states: Float32Array.from([1, 2, 3, 4]), length: 2 }; // 2 tokens of width 2
  const image = { embeds: Float32Array.from([5, 6, 7, 8, 9, 10]), feat: new Float32Array(0) }; // 3 tokens
  assert.deepEqual(answerContext(q, image, false, 3), { parts: [q.states], worker: null, length: 2 });
  const both = answerContext(q, image, true, 3);
  assert.deepEqual(both.parts, [q.states, image.embeds]);
  assert.equal(both.length, 5);
});

// ------------------------------------------------------------------------------ the contract files, shared with Python
// training/tests/test_contract.py reads the same two files: a rename there is one edit on both sides.
const EXPORT_DIR = path.join(ROOT, "training/dlip/export");
const readJson = (file: string) => JSON.parse(readFileSync(file, "utf8"));
const STUDENT = path.join(ROOT, "models/dlip-student");

test("the fixture and the shipped student validate against manifest.schema.json and match contract.json", () => {
  // a fresh Ajv on the file itself, not only the server's compiled copy
  const check = new Ajv2020({ strict: true }).compile(readJson(path.join(EXPORT_DIR, "manifest.schema.json")));
  for (const dir of [MICRO, STUDENT]) {
    const m: Manifest = readJson(path.join(dir, "manifest.json"));
    assert.ok(check(m), `${dir}: ${JSON.stringify(check.errors)}`);
    assert.equal(schemaProblem(m), null);
    assert.equal(contractProblem(m), null);
    assert.equal(readManifest(dir).name, m.name);
  }
  const contract = readJson(path.join(EXPORT_DIR, "contract.json"));
  assert.deepEqual(GRAPHS, Object.keys(contract.graphs));
  assert.deepEqual(GRAPHS, Object.keys(MANIFEST_SCHEMA.properties.graphs.properties));
  // the shipped student's decoder has 1 layer of 2 heads of 64 and reads 128 px images: the per-layer cache
  // pattern, expanded
  const student = readManifest(STUDENT);
  const decoder = graphContract(student).decoder;
  assert.deepEqual(
    decoder.inputs.slice(4).map((t) => t.name),
    ["past_key_0", "past_value_0", "cross_key_0", "cross_value_0"],
  );
  assert.deepEqual(decoder.outputs[2], { name: "present_value_0", dtype: "float32", shape: ["B", 2, "P+T", 64] });
  assert.deepEqual(graphContract(student).vision.inputs[0].shape, ["B", 3, 128, 128]);
});

test("cache names come from the contract's per-layer pattern", () => {
  assert.deepEqual(cacheNames(2), {
    past: ["past_key_0", "past_value_0", "past_key_1", "past_value_1"],
    present: ["present_key_0", "present_value_0", "present_key_1", "present_value_1"],
    cross: ["cross_key_0", "cross_value_0", "cross_key_1", "cross_value_1"],
  });
  assert.deepEqual(cacheNames(0), { past: [], present: [], cross: [] });
});

test("bad manifests are refused with the field named", () => {
  const micro = readJson(path.join(MICRO, "manifest.json"));
  const cases: [string, (m: Record<string, any>) => void, RegExp][] = [
    ["not an object", (m) => Object.keys(m).forEach((k) => delete m[k]), /^missing field 'format_version'$/],
    ["missing field", (m) => delete m.created, /^missing field 'created'$/],
    [
      "missing graph (format 3)",
      (m) => ((m.format_version = 3), delete m.graphs.itm),
      /^format_version 3 needs .* every graph$/,
    ],
    ["missing dim", (m) => delete m.model.vocab_size, /^missing field 'model\.vocab_size'$/],
    ["boolean version", (m) => (m.format_version = true), /^format_version must be one of 3, 4, got true$/],
    ["zero dim", (m) => (m.model.decoder_heads = 0), /^model\.decoder_heads must be >= 1, got 0$/],
    ["string dim", (m) => (m.model.embed_dim = "32"), /^model\.embed_dim must be an integer, got "32"$/],
    ["std", (m) => (m.preprocessing.std = [1, 0, 1]), /^preprocessing\.std\[1\] must be > 0, got 0$/],
    ["mean", (m) => (m.preprocessing.mean = [0.5, 0.5]), /^preprocessing\.mean must have at least 3 items/],
    ["token limit", (m) => (m.tokenizer.max_text_tokens = 1), /^tokenizer\.max_text_tokens must be >= 2, got 1$/],
    ["tokenizer path", (m) => (m.tokenizer.file = "../t.json"), /^tokenizer\.file must be a plain file name/],
    ["manifest listed", (m) => (m.files["manifest.json"] = "0".repeat(64)), /^files key "manifest\.json" must be/],
    ["sha", (m) => (m.files["tokenizer.json"] = "abc"), /^files\.tokenizer\.json must be a sha256 digest/],
    ["dtype", (m) => (m.graphs.itm.inputs[1].dtype = "int32"), /^graphs\.itm\.inputs\[1\]\.dtype must be one of/],
    [
      "shape",
      (m) => (m.graphs.text.inputs[0].shape = ["B", 1.5]),
      /^graphs\.text\.inputs\[0\]\.shape\[1\] must be an integer or a string, got 1\.5$/,
    ],
    ["task", (m) => (m.tasks = ["ocr"]), /^tasks\[0\] must be one of "retrieval", "captioning", "vqa", got "ocr"$/],
    ["source", (m) => (m.source.run = 3), /^source\.run must be a string or null, got 3$/],
  ];
  for (const [what, edit, message] of cases) {
    const m = structuredClone(micro);
    edit(m);
    assert.match(String(schemaProblem(m)), message, what);
  }
  const wide = structuredClone(micro);
  wide.model.text_width = 64;
  assert.equal(schemaProblem(wide), null, "a schema cannot compare two fields");
  assert.match(String(contractProblem(wide)), /model\.text_width \(64\) must equal model\.vision_width \(32\)/);
});

test("src/bundle/manifest.types.ts is what scripts/manifest-types.ts makes of the schema", async () => {
  const current = readFileSync(TYPES_FILE, "utf8");
  assert.equal(current, await manifestTypes(), "run `npm run --silent gen:types` and commit the result");
});
