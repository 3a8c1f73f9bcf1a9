// The benchmark's smoke test: `npm run bench -- --quick` (the micro bundle as student and as teacher) into a temp
// directory writes well-formed JSON, a markdown report with the targets table and every PNG plot. Numbers from the
// micro bundle mean nothing; the point is that the whole pipeline runs, as CI runs it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import type { CollectionsResult } from "../bench/collections.js";
import { ENDPOINTS } from "../bench/options.js";
import { PLOTS } from "../bench/report.js";
import type { ModelsResult } from "../bench/models.js";
import type { ServerResult } from "../bench/serving.js";
import { GRAPHS } from "../src/bundle/manifest.js";
import { ROOT } from "./helpers/app.js";

const VENV = path.join(ROOT, "training/.venv/bin/python");

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/** Width and height from a PNG's IHDR chunk; throws when the bytes are not a PNG. */
function pngSize(file: string): { width: number; height: number } {
  const b = readFileSync(file);
  assert.deepEqual([...b.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${file} is not a PNG`);
  assert.equal(b.subarray(12, 16).toString("latin1"), "IHDR");
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

test(
  "npm run bench -- --quick writes JSON, markdown and PNG plots",
  { timeout: 1_800_000, skip: !existsSync(VENV) && "training/.venv is missing (npm run setup:python)" },
  async () => {
    const out = mkdtempSync(path.join(os.tmpdir(), "dlip-bench-test-"));
    const args = [
      "run",
      "--silent",
      "bench",
      "--",
      "--quick",
      "--parts",
      "models,server,collections",
      "--out",
      out,
      "--teacher",
      "test/fixtures/micro",
    ];
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
      freePort().then((port) =>
        execFile("npm", [...args, "--port", String(port)], { cwd: ROOT, maxBuffer: 1 << 24 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve({ stdout }),
        ),
      ),
    );
    assert.match(stdout, /wrote models\.json, server\.json, results\.md/);

    const models = JSON.parse(readFileSync(path.join(out, "models.json"), "utf8")) as ModelsResult;
    assert.equal(models.part, "models");
    assert.ok(models.stamp.machine.cores >= 1 && models.stamp.machine.cpu_model.length > 0);
    assert.match(models.stamp.command, /^npm run bench -- --quick --parts models,server,collections --out /);
    for (const b of [models.bundles.student, models.bundles.teacher!]) {
      assert.ok(b.params!.total > 0);
      for (const g of GRAPHS) {
        assert.ok(b.gflops[g] > 0, `${b.role} ${g} has FLOPs`);
        assert.deepEqual(
          b.variants.fp32!.graphs[g].map((p) => p.batch),
          models.settings.batch_sizes,
        );
        assert.ok(b.variants.fp32!.graphs[g].every((p) => p.latency_ms > 0 && p.throughput_rows_s > 0));
      }
      assert.ok(b.variants.fp32!.e2e.caption.every((p) => p.ms_per_image > 0));
      // the micro bundle ships no int8 graphs: the benchmark quantises them
      assert.equal(b.int8_source, "quantised by the benchmark (the exporter's settings)");
      assert.ok(GRAPHS.every((g) => b.variants.int8!.graphs[g].every((p) => p.latency_ms > 0)));
    }
    assert.ok(models.ratios.caption_fp32_b1 > 0);

    const server = JSON.parse(readFileSync(path.join(out, "server.json"), "utf8")) as ServerResult;
    assert.equal(server.part, "server");
    assert.ok(server.boot.ready_s > 0 && server.boot.rss_ready_mb > 0);
    for (const e of ENDPOINTS) {
      const r = server.endpoints[e]!;
      assert.equal(r.points.length, 2, `${e}: one point per concurrency`);
      assert.ok(
        r.points.every((p) => p.failed === 0),
        `${e}: no failed requests`,
      );
      assert.ok(r.saturation.throughput_rps > 0, `${e} answered requests`);
    }
    for (const t of ["embed_image", "caption", "vqa"] as const) {
      assert.ok(server.ceiling[t]!.throughput_rps > 0);
      const ip = server.in_process_ceiling[t]!;
      assert.ok(ip.throughput_rps > 0 && ip.ratio > 0 && ip.preprocess_ms_per_request > 0, `${t} in-process ceiling`);
      assert.equal(ip.concurrency, server.endpoints[t]!.saturation.concurrency);
    }
    assert.deepEqual(Object.keys(server.half_load), [...ENDPOINTS], "half load on every endpoint");
    assert.ok(server.preprocessing.cpu_ms_per_image > 0);
    // captions with continuous batching off: whole-batch decoding, measured at the same concurrency
    assert.ok(server.continuous && server.continuous.off.throughput_rps > 0 && server.continuous.ratio > 0);
    assert.equal(server.continuous.off.connections, server.continuous.on.connections);
    assert.equal(server.continuous.off.failed, 0);
    assert.ok(server.batching && server.batching.off.breakdown.graphs.vision!.mean_batch_rows === 1);
    assert.ok(server.kv_cache.length >= 2);
    assert.ok(
      server.kv_cache.every((k) => k.same_tokens && k.tokens > 0),
      "decoding without the cache gives the cached captions",
    );
    assert.equal(server.memory.requests, 300);
    assert.equal(server.memory.failed, 0);
    assert.ok(server.teacher && server.teacher.tasks.caption.throughput_ratio > 0);
    assert.equal(server.teacher.random_init, true, "the micro fixture has random weights");

    const md = readFileSync(path.join(out, "results.md"), "utf8");
    assert.match(md, /^# DLIP serve benchmarks/);
    assert.match(md, /## Targets\n\n\| target \| goal \| measured \| met \| from \|/);
    assert.match(md, /npm run bench -- --quick/);
    for (const where of [
      "server.in_process_ceiling.vqa.ratio",
      "server.half_load.rank.p99_over_p50",
      "server.preprocessing.cpu_ms_per_image",
      "server.continuous.ratio",
      "server.continuous.p99_ratio",
    ])
      assert.match(md, new RegExp(`\\| (yes|\\*\\*no\\*\\*) \\| \`${where.replace(/\./g, "\\.")}\` \\|`), where);
    assert.match(md, /### Continuous batching vs whole-batch decoding/);
    assert.match(md, /teacher \(random weights, speed only\)/);
    // the collections part: both stores, every step measured on the micro bundle's own embeddings
    const coll = JSON.parse(readFileSync(path.join(out, "collections.json"), "utf8")) as CollectionsResult;
    assert.equal(coll.part, "collections");
    assert.deepEqual(
      coll.stores.map((x) => x.store),
      ["embedded", "postgres"],
    );
    for (const st of coll.stores) {
      for (const z of st.sizes) {
        assert.ok(z.recall_at_10 > 0 && z.recall_at_10 <= 1, `${st.store} recall@10 ${z.recall_at_10}`);
        assert.ok(z.store_search_ms.p99 > 0 && z.api_search_ms.p99 > 0 && z.api_search_rerank_ms!.p99 > 0);
      }
      assert.ok(
        st.import.images_per_s > 0 && st.import.embed_only_images_per_s > 0 && st.import.db_write_items_per_s > 0,
      );
      assert.ok(st.fetch_tokens_ms && st.fetch_tokens_ms.p50 > 0, "stored tokens read back");
      assert.equal(st.quality.captions, coll.settings.qualityCaptions);
    }
    assert.ok(coll.rerank[0].itm.median_ms > 0 && coll.rerank[0].vision.median_ms > 0);
    assert.match(readFileSync(path.join(out, "collections.md"), "utf8"), /^# Collections benchmark/);

    for (const [file] of Object.entries(PLOTS)) {
      assert.ok(md.includes(`](${file})`), `results.md shows ${file}`);
      const { width, height } = pngSize(path.join(out, file));
      assert.ok(width >= 300 && height >= 200, `${file} is ${width}x${height}`);
    }
  },
);
