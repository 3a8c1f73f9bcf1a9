// Faults injected inside the server (FAULT_INJECTION=true, WorkerPool.inject: test code only, no route reaches it):
// an inference worker ended by terminate() or by an exception it throws, in the middle of a batch and of a decode,
// under concurrent requests; a run that hangs. Every admitted request gets its complete, unchanged answer (its rows
// ran again, once) or a 503 worker_lost with Retry-After (lost twice); none hangs; the next requests succeed.
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { buildApp } from "../../src/app.js";
import type { StuckEvent } from "../../src/inference/pool.js";
import { captionInputs, imageUses } from "../../src/routes/generation.js";
import { metricValue, testApp, testConfig } from "../helpers/app.js";
import { imageBytes, loadParity } from "../helpers/parity.js";

const parity = loadParity();
const T = { timeout: 120_000 }; // a hang fails the test instead of blocking the suite

let one: FastifyInstance; // WORKERS=1: rows run again on the lost worker's replacement
let two: FastifyInstance; // WORKERS=2: on the other worker, or the replacement
before(async () => {
  one = await testApp({ faultInjection: "true" });
  two = await testApp({ faultInjection: "true", workers: 2 });
});
after(async () => {
  await one.close();
  await two.close();
});

interface Case {
  url: string;
  body: Record<string, unknown>;
  want: string;
  got: (body: any) => string;
}

/** Captions (greedy, 3 beams) and a VQA answer per image, with the Python reference's answers. */
function cases(n = 4): Case[] {
  return parity.images.slice(0, n).flatMap((im) => {
    const image = imageBytes(im).toString("base64");
    const caption = (b: any) => b.captions[0].text;
    return [
      { url: "/v1/captions", body: { images: [image] }, want: im.caption_greedy.text, got: caption },
      { url: "/v1/captions", body: { images: [image], num_beams: 3 }, want: im.caption_beam3.text, got: caption },
      { url: "/v1/vqa", body: { image, question: im.vqa[0].question }, want: im.vqa[0].answer, got: (b) => b.answer },
    ];
  });
}

const post = (app: FastifyInstance, c: Case) => request(app.server).post(c.url).send(c.body);

/** Every request answered completely and as without the fault. */
function allAnswered(res: request.Response[], cs: Case[]): void {
  res.forEach((r, i) => {
    assert.equal(r.status, 200, `${cs[i].url}: ${r.text}`);
    assert.equal(cs[i].got(r.body), cs[i].want, `${cs[i].url} ${JSON.stringify(cs[i].body).slice(0, 60)}`);
  });
}

/** The next requests succeed: the pool is whole again. */
async function nextSucceed(app: FastifyInstance): Promise<void> {
  const cs = cases(1);
  allAnswered(await Promise.all(cs.map((c) => post(app, c))), cs);
  assert.equal((await request(app.server).get("/healthz")).status, 200);
}

const restarts = (app: FastifyInstance, reason: string) => metricValue(app, "dlip_worker_restarts_total", { reason });
const reruns = (app: FastifyInstance, graph: string, reason: string) =>
  metricValue(app, "dlip_rerun_rows_total", { model: "micro", graph, reason });

test(
  "terminate() in the middle of a vision batch, concurrent requests: every one answered as without it",
  T,
  async () => {
    const cs = cases();
    const r0 = await restarts(one, "exit");
    const v0 = await reruns(one, "vision", "exit");
    one.pool.inject(0, { graph: "vision", action: "hang" }); // the batch stays in the worker until terminate()
    const fault = once(one.pool, "fault");
    const answers = Promise.all(cs.map((c) => post(one, c)));
    const [f] = await fault;
    assert.equal(f.graph, "vision");
    await one.pool.terminate(0);
    allAnswered(await answers, cs);
    assert.equal((await restarts(one, "exit")) - r0, 1);
    assert.equal((await reruns(one, "vision", "exit")) - v0, f.batch, "the lost batch's rows ran again");
    await nextSucceed(one);
  },
);

test(
  "an exception thrown in the worker in the middle of a decode: decoding rows restart, every answer complete",
  T,
  async () => {
    const cs = cases();
    const r0 = await restarts(one, "error");
    const d0 = await reruns(one, "decoder", "error");
    one.pool.inject(0, { graph: "decoder", after: 3, action: "throw" }); // at the 4th decoder step
    const fault = once(one.pool, "fault");
    const answers = await Promise.all(cs.map((c) => post(one, c)));
    const [f] = await fault;
    assert.equal(f.graph, "decoder");
    allAnswered(answers, cs);
    assert.equal((await restarts(one, "error")) - r0, 1);
    assert.ok((await reruns(one, "decoder", "error")) - d0 >= 1, "decoding rows ran again");
    await nextSucceed(one);
  },
);

test(
  "terminate() in the middle of a decode, WORKERS=2: its rows decode again elsewhere, their image tokens recomputed",
  T,
  async () => {
    const cs = cases();
    const d0 = await reruns(two, "decoder", "exit");
    const vision0 = await metricValue(two, "dlip_batch_size_rows_sum", { model: "micro", graph: "vision" });
    // the first batches go to worker 0 (the scheduler hands out free workers in order)
    two.pool.inject(0, { graph: "decoder", after: 1, action: "hang" });
    const fault = once(two.pool, "fault");
    const answers = Promise.all(cs.map((c) => post(two, c)));
    const [f] = await fault;
    await two.pool.terminate(f.worker);
    allAnswered(await answers, cs);
    const rerun = (await reruns(two, "decoder", "exit")) - d0;
    assert.ok(rerun >= 1, "rows decoding on the lost worker ran again");
    const vision = (await metricValue(two, "dlip_batch_size_rows_sum", { model: "micro", graph: "vision" })) - vision0;
    assert.ok(vision > cs.length, `their image tokens were recomputed (${vision} vision rows for ${cs.length} images)`);
    await nextSucceed(two);
  },
);

test("image tokens and question states kept by a lost worker are recomputed, not looked up", T, async () => {
  const model = one.models.get(undefined);
  const { inference } = one;
  const { preprocessImage } = await import("../../src/preprocess/image.js");
  const im = parity.images[1];
  const pixels = await preprocessImage(imageBytes(im), model.image);
  const row = { numBeams: 1, maxTokens: model.manifest.tokenizer.max_caption_tokens, minTokens: 1 };
  const kept = await inference.keptImages(model, [pixels], imageUses(model, "caption"));
  const question = await inference.keptImages(model, [pixels], imageUses(model, "answer"));
  const { max_text_tokens: max, special_tokens: sp } = model.manifest.tokenizer;
  const ids = model.tokenizer.encodeWithFirst(im.vqa[0].question, max, sp.enc);
  const [states] = await inference.questions(model, [{ embeds: question[0].embeds, ids }]);
  assert.equal(typeof kept[0].embeds, "object", "the tokens stayed in worker 0");
  const idle = once(one.pool, "idle");
  await one.pool.terminate(0); // between the vision graph and the decode: what worker 0 kept is gone
  await idle;
  const vision0 = await metricValue(one, "dlip_batch_size_rows_sum", { model: "micro", graph: "vision" });
  const [caption] = await inference.generate(model, captionInputs(model, kept, row));
  assert.equal(model.tokenizer.decode(caption.ids), im.caption_greedy.text);
  const { answerContext } = await import("../../src/inference/graphs.js");
  const N = model.manifest.model.image_tokens;
  const reads = model.manifest.model.vqa_decoder_reads_image === true;
  const ctx = answerContext(states, question[0], reads, N);
  const answerRow = { numBeams: 1, maxTokens: model.manifest.tokenizer.max_answer_tokens, minTokens: 0 };
  const [answer] = await inference.generate(model, [{ ...ctx, row: answerRow }]);
  assert.equal(model.tokenizer.decode(answer.ids), im.vqa[0].answer);
  const vision = (await metricValue(one, "dlip_batch_size_rows_sum", { model: "micro", graph: "vision" })) - vision0;
  assert.equal(vision, 2, "each image's tokens were computed again, once");
  let stored = 0;
  for (let w = 0; w < one.pool.count; w++) stored += await one.pool.stored(w);
  assert.equal(stored, 0, "nothing left kept");
});

test(
  "a row lost twice gets 503 worker_lost with Retry-After; the others complete; the next requests succeed",
  T,
  async () => {
    const cs = cases(2);
    // the worker throws at its next vision run, and so does the next one started in its place
    one.pool.inject(0, { graph: "vision", action: "throw" });
    one.pool.inject(0, { graph: "vision", action: "throw" }, 1);
    const res = await Promise.all(cs.map((c) => post(one, c)));
    let lost = 0;
    res.forEach((r, i) => {
      if (r.status === 503) {
        lost++;
        assert.equal(r.body.error.code, "worker_lost", r.text);
        assert.equal(r.headers["retry-after"], "1");
      } else {
        assert.equal(r.status, 200, r.text);
        assert.equal(cs[i].got(r.body), cs[i].want);
      }
    });
    assert.ok(lost >= 1, "the rows of the first batch were lost twice");
    assert.ok((await metricValue(one, "dlip_rejected_requests_total", { reason: "worker_lost" })) >= lost);
    await nextSucceed(one);
  },
);

test(
  "a hung run: the watchdog names its graph and batch, replaces the worker, /healthz fails while none runs",
  T,
  async () => {
    const logs: any[] = [];
    const stream = { write: (line: string) => logs.push(JSON.parse(line)) };
    // far above any real run of the micro bundle, even on a busy machine, and short enough for a test
    const cfg = testConfig({ faultInjection: "true", stuckRunMs: 2000 });
    const app = await buildApp(cfg, { logger: { level: "error", stream } });
    try {
      const cs = cases(2);
      // the decode hangs at its 2nd step; the worker started in its place fails to start (tried again 1 s later)
      app.pool.inject(0, { graph: "decoder", after: 1, action: "hang" });
      app.pool.inject(0, { graph: "init", action: "throw" }, 1);
      const stuck = once(app.pool, "stuck");
      const failed = once(app.pool, "start_failed");
      const answers = Promise.all(cs.map((c) => post(app, c)));
      const [s] = (await stuck) as [StuckEvent];
      assert.deepEqual([s.model, s.graph], ["micro", "decoder"]);
      assert.ok(s.batch >= 1 && s.ms > 2000, JSON.stringify(s));
      await failed; // no worker runs now, until the next start (>= 1 s away)
      const live = await request(app.server).get("/healthz");
      assert.equal(live.status, 503);
      assert.equal(live.body.error.code, "not_ready");
      assert.equal(live.headers["retry-after"], "1");
      allAnswered(await answers, cs); // their rows ran again on the worker started next
      const line = logs.find((l) => /stuck/.test(l.msg));
      assert.match(line.msg, new RegExp(`a decoder run of ${s.batch} rows \\(model micro\\)`));
      assert.deepEqual([line.graph, line.batch, line.stuckRunMs], ["decoder", s.batch, 2000]);
      assert.equal(await metricValue(app, "dlip_stuck_runs_total", { model: "micro", graph: "decoder" }), 1);
      assert.equal(await metricValue(app, "dlip_worker_restarts_total", { model: "micro", reason: "stuck" }), 1);
      assert.equal(await metricValue(app, "dlip_worker_restarts_total", { reason: "start_failed" }), 1);
      // the hung decode's rows ran again (its batch counts beams: a row of 3 beams fills 3 places)
      assert.ok((await metricValue(app, "dlip_rerun_rows_total", { graph: "decoder", reason: "stuck" })) >= 1);
      await nextSucceed(app);
    } finally {
      await app.close();
    }
  },
);

test(
  "a streamed answer: run again while it sent nothing; once it sent tokens, its stream ends with worker_lost",
  T,
  async () => {
    const im = parity.images[0];
    const image = `data:image/png;base64,${imageBytes(im).toString("base64")}`;
    const stream = () =>
      request(one.server)
        .post("/v1/chat/completions")
        .send({
          messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: image } }] }],
          stream: true,
        })
        .expect(200);
    const events = (text: string) =>
      text
        .split("\n\n")
        .filter(Boolean)
        .map((e) => e.slice("data: ".length))
        .map((d) => (d === "[DONE]" ? d : JSON.parse(d)));
    const content = (ev: any[]) => ev.flatMap((e) => e.choices?.[0]?.delta?.content ?? []).join("");
    const whole = events((await stream()).text);
    assert.equal(whole.at(-1), "[DONE]");
    // lost at its vision run, before any token: the stream is whole, as without the fault
    one.pool.inject(0, { graph: "vision", action: "throw" });
    const early = events((await stream()).text);
    assert.deepEqual(content(early), content(whole));
    assert.equal(early.at(-1), "[DONE]");
    // lost after its 2nd token: what it sent stays sent, and it ends with the error
    one.pool.inject(0, { graph: "decoder", after: 2, action: "throw" });
    const late = events((await stream()).text);
    const error = late.find((e) => e.error);
    assert.equal(error?.error.code, "worker_lost", JSON.stringify(late));
    assert.ok(content(whole).startsWith(content(late)) && content(late).length > 0, "its first tokens were sent");
    await nextSucceed(one);
  },
);

test("fault injection is off unless FAULT_INJECTION=true", async () => {
  const app = await testApp();
  try {
    assert.throws(() => app.pool.inject(0, { graph: "vision", action: "hang" }), /FAULT_INJECTION=false/);
  } finally {
    await app.close();
  }
});
