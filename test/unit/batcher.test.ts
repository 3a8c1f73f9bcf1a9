import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Batcher, Scheduler } from "../../src/batching/batcher.js";
import { ApiError, WorkerLost } from "../../src/errors.js";

/**
 * A fake session: doubles its inputs after `ms`, recording every batch it ran and on which worker, how many ran at
 * once at most, and how many have finished.
 */
function fakeRun(ms: number) {
  const batches: { inputs: number[]; worker: number }[] = [];
  const stats = { running: 0, most: 0, finished: 0 };
  const run = async (inputs: number[], worker: number) => {
    batches.push({ inputs: [...inputs], worker });
    stats.most = Math.max(stats.most, ++stats.running);
    await sleep(ms);
    stats.running--;
    stats.finished++;
    return inputs.map((x) => x * 2);
  };
  return { batches, run, stats };
}

const opts = { maxBatch: 4, maxDelayMs: 0, maxQueue: 16 };

test("rows arriving while the worker is busy gather into the next batch; outputs in order", async () => {
  const s = new Scheduler(1);
  const { batches, run } = fakeRun(30);
  const b = new Batcher({ model: "m", graph: "g" }, opts, run, s);
  const first = b.submit([1]); // an idle worker: leaves at once, alone
  const rest = [b.submit([2]), b.submit([3, 4]), b.submit([5])];
  assert.deepEqual(await first, [2]);
  assert.deepEqual(await Promise.all(rest), [[4], [6, 8], [10]]);
  assert.deepEqual(
    batches.map((x) => x.inputs),
    [[1], [2, 3, 4, 5]],
  );
});

test("a batch never exceeds maxBatch; the remainder goes next", async () => {
  const s = new Scheduler(1);
  const { batches, run } = fakeRun(5);
  const b = new Batcher({ model: "m", graph: "g" }, { ...opts, maxDelayMs: 50 }, run, s);
  const out = await b.submit([1, 2, 3, 4, 5, 6]);
  assert.deepEqual(out, [2, 4, 6, 8, 10, 12]);
  assert.deepEqual(
    batches.map((x) => x.inputs.length),
    [4, 2],
  );
});

test("maxDelayMs: a non-full batch waits for more rows, a full one leaves at once", async () => {
  const s = new Scheduler(1);
  const { batches, run } = fakeRun(1);
  const b = new Batcher({ model: "m", graph: "g" }, { ...opts, maxDelayMs: 40 }, run, s);
  const t0 = performance.now();
  const p1 = b.submit([1]);
  await sleep(10);
  const p2 = b.submit([2]);
  await Promise.all([p1, p2]);
  assert.ok(performance.now() - t0 >= 38, "waited for the delay");
  assert.deepEqual(
    batches.map((x) => x.inputs),
    [[1, 2]],
  );
  const full = b.submit([1, 2, 3, 4]);
  assert.equal(batches.length, 2, "a full batch left at once: its run started within submit()");
  await full;
});

test("a full queue refuses the whole request with 429 queue_full (Retry-After)", async () => {
  const s = new Scheduler(1);
  const { run } = fakeRun(20);
  const b = new Batcher({ model: "m", graph: "g" }, { ...opts, maxQueue: 3 }, run, s);
  const running = b.submit([1]); // dispatched: the queue is empty again
  const queued = b.submit([2, 3]);
  await assert.rejects(
    b.submit([4, 5]),
    (e: unknown) => e instanceof ApiError && e.status === 429 && e.retryAfterS === 1,
  );
  assert.equal(b.depth, 2, "nothing of the refused request was queued");
  await Promise.all([running, queued]);
});

test("aborted requests leave the queue before inference (client gone, deadline)", async () => {
  const drops: [string, number][] = [];
  const s = new Scheduler(1, () => true, { onDrop: (_k, n, reason) => drops.push([reason, n]) });
  const { batches, run } = fakeRun(30);
  const b = new Batcher({ model: "m", graph: "g" }, opts, run, s);
  const busy = b.submit([1]);
  const ctl = new AbortController();
  const gone = b.submit([7, 8], ctl.signal);
  const kept = b.submit([9]);
  ctl.abort(new ApiError("client_gone", "bye"));
  await assert.rejects(gone, (e: unknown) => (e as ApiError).code === "client_gone");
  await Promise.all([busy, kept]);
  assert.deepEqual(
    batches.map((x) => x.inputs),
    [[1], [9]],
    "7 and 8 never ran",
  );
  assert.deepEqual(drops, [["client_gone", 2]]);
  const late = new AbortController();
  late.abort(new ApiError("deadline_exceeded", "late"));
  await assert.rejects(b.submit([1], late.signal), (e: unknown) => (e as ApiError).status === 504);
});

test("a request aborted while its batch runs is rejected at once; the batch's late outputs are ignored", async () => {
  const s = new Scheduler(1);
  const { batches, run, stats } = fakeRun(500);
  const b = new Batcher({ model: "m", graph: "g" }, opts, run, s);
  const ctl = new AbortController();
  const mine = b.submit([1, 2], ctl.signal);
  const other = b.submit([3]); // queued behind the running batch, not aborted
  setTimeout(() => ctl.abort(new ApiError("deadline_exceeded", "late")), 50); // a timer due before the run's
  await assert.rejects(mine, (e: unknown) => (e as ApiError).code === "deadline_exceeded");
  assert.equal(stats.finished, 0, "rejected while its batch was still running, not when it ended");
  assert.deepEqual(
    batches.map((x) => x.inputs),
    [[1, 2]],
    "it was running when the abort came",
  );
  assert.deepEqual(await other, [6], "the queue carries on");
});

test("two workers run two batches at once; the oldest queue goes first", async () => {
  const s = new Scheduler(2);
  const a = fakeRun(30);
  const qa = new Batcher({ model: "m", graph: "a" }, opts, a.run, s);
  const qc = new Batcher({ model: "m", graph: "c" }, opts, a.run, s);
  await Promise.all([qa.submit([1]), qc.submit([2])]);
  assert.equal(a.stats.most, 2, "ran in parallel");
  assert.notEqual(a.batches[0].worker, a.batches[1].worker);
  // one worker busy with a: c (older) is served before a's newer rows
  const one = new Scheduler(1);
  const order: string[] = [];
  const slow = async <T>(xs: T[]) => (await sleep(20), xs);
  const qa2 = new Batcher(
    { model: "m", graph: "a" },
    opts,
    async (xs: number[]) => (order.push(`a${xs}`), slow(xs)),
    one,
  );
  const qc2 = new Batcher(
    { model: "m", graph: "c" },
    opts,
    async (xs: number[]) => (order.push(`c${xs}`), slow(xs)),
    one,
  );
  const p = [qa2.submit([1]), qc2.submit([2]), qa2.submit([3])];
  await Promise.all(p);
  assert.deepEqual(order, ["a1", "c2", "a3"]);
});

test("a failing batch rejects its rows and the scheduler carries on", async () => {
  const s = new Scheduler(1);
  let fail = true;
  const b = new Batcher(
    { model: "m", graph: "g" },
    opts,
    async (xs: number[]) => {
      if (fail) throw new Error("boom");
      return xs;
    },
    s,
  );
  await assert.rejects(b.submit([1]), /boom/);
  fail = false;
  assert.deepEqual(await b.submit([2]), [2]);
});

test("rows of a run whose worker was lost run again once, first; a row lost twice gets 503 worker_lost", async () => {
  const reruns: [number, string][] = [];
  const s = new Scheduler(1, () => true, { onRerun: (_k, n, reason) => reruns.push([n, reason]) });
  let losses = 2; // the first two runs lose their worker
  const batches: number[][] = [];
  const b = new Batcher(
    { model: "m", graph: "g" },
    opts,
    async (xs: number[], w: number) => {
      batches.push([...xs]);
      await sleep(5);
      if (losses-- > 0) throw new WorkerLost(w, "exit", "worker 0 exited");
      return xs.map((x) => x * 2);
    },
    s,
  );
  const first = b.submit([1]); // runs alone: lost; runs again with the rows queued meanwhile: lost again
  const second = b.submit([2, 3]); // lost once: runs again
  await assert.rejects(
    first,
    (e: unknown) => e instanceof ApiError && e.code === "worker_lost" && e.status === 503 && e.retryAfterS === 1,
  );
  assert.deepEqual(await second, [4, 6]);
  assert.deepEqual(batches, [[1], [1, 2, 3], [2, 3]], "a row run again goes first");
  assert.deepEqual(reruns, [
    [1, "exit"],
    [2, "exit"],
  ]);
});

test("a stale row (what it reads was lost with a worker) is rebuilt before it runs; a failed rebuild answers it", async () => {
  type In = { v: number; at: number | null }; // `at`: the worker holding what it reads
  const lost = new Set([1]);
  const ran: { inputs: In[]; worker: number }[] = [];
  const b = new Batcher<In, number>(
    { model: "m", graph: "g" },
    opts,
    async (xs, worker) => (ran.push({ inputs: xs, worker }), xs.map((x) => x.v)),
    new Scheduler(2),
    {
      affinity: (x) => (x.at !== null && !lost.has(x.at) ? x.at : null),
      stale: (x) => x.at !== null && lost.has(x.at),
      rebuild: async (x) => {
        if (x.v < 0) throw new ApiError("worker_lost", "cannot be recomputed");
        return { v: x.v * 10, at: null }; // recomputed: runs anywhere
      },
    },
  );
  assert.deepEqual(
    await b.submit([
      { v: 1, at: 1 },
      { v: 2, at: 0 },
    ]),
    [10, 2],
  );
  assert.ok(
    ran.every((r) => r.inputs.every((x) => x.at === null || !lost.has(x.at))),
    "no row ran reading a lost worker's rows",
  );
  await assert.rejects(b.submit([{ v: -1, at: 1 }]), /cannot be recomputed/);
});
