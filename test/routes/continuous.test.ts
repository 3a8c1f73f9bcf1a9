// Continuous batching through the real server: captions and VQA answers of requests that join and leave running
// decodes equal their answers alone, and CONTINUOUS_BATCHING=false gives the same answers.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { metricValue, testApp } from "../helpers/app.js";
import { imageBytes, loadParity } from "../helpers/parity.js";

const parity = loadParity();
let on: FastifyInstance;
let off: FastifyInstance;
before(async () => {
  on = await testApp({ continuousBatching: "true" });
  off = await testApp({ continuousBatching: "false" });
});
after(async () => {
  await on.close();
  await off.close();
});

type Req = [string, Record<string, unknown>];
function requests(): Req[] {
  const out: Req[] = [];
  for (const im of parity.images) {
    const image = imageBytes(im).toString("base64");
    out.push(["/v1/captions", { images: [image] }]);
    out.push(["/v1/captions", { images: [image], num_beams: 3 }]);
    for (const q of im.vqa.slice(0, 1)) out.push(["/v1/vqa", { image, question: q.question }]);
  }
  return out;
}
const answer = (url: string, body: any) => (url === "/v1/vqa" ? body.answer : body.captions[0].text);

test("requests decoded among others (joining, leaving) answer as they do alone, greedy and beam, captions and VQA", async () => {
  const reqs = requests();
  const aloneOn: string[] = [];
  for (const [url, body] of reqs)
    aloneOn.push(answer(url, (await request(on.server).post(url).send(body).expect(200)).body));
  const waits0 = await metricValue(on, "dlip_queue_wait_seconds_count", { model: "micro", graph: "decoder" });
  const rows0 = await metricValue(on, "dlip_batch_size_rows_sum", { model: "micro", graph: "decoder" });
  // staggered arrivals, so later rows find decodes running
  const together = await Promise.all(
    reqs.map(async ([url, body], i) => {
      await new Promise((r) => setTimeout(r, (i % 6) * 3));
      return answer(url, (await request(on.server).post(url).send(body).expect(200)).body);
    }),
  );
  assert.deepEqual(together, aloneOn);
  const joined =
    (await metricValue(on, "dlip_queue_wait_seconds_count", { model: "micro", graph: "decoder" })) -
    waits0 -
    ((await metricValue(on, "dlip_batch_size_rows_sum", { model: "micro", graph: "decoder" })) - rows0);
  assert.ok(joined > 0, "some rows joined a running decode");
  // whole-batch decoding (the setting off) gives the same answers
  const offAnswers = await Promise.all(
    reqs.map(async ([url, body]) => answer(url, (await request(off.server).post(url).send(body).expect(200)).body)),
  );
  assert.deepEqual(offAnswers, aloneOn);
  const expected = parity.images.map((im) => im.caption_greedy.text);
  assert.deepEqual(
    reqs.flatMap(([url, b], i) => (url === "/v1/captions" && b.num_beams === undefined ? [aloneOn[i]] : [])),
    expected,
  );
});
