// The lifecycle: nothing admitted before open or while draining (503 with Retry-After), and a drain that waits for
// admitted requests, up to its time limit.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ApiError } from "../../src/errors.js";
import { Lifecycle } from "../../src/services/lifecycle.js";

const refused = (code: string) => (e: unknown) => (e as ApiError).code === code && (e as ApiError).status === 503;

test("admits only while open; not_ready before open and after close", () => {
  const life = new Lifecycle();
  assert.throws(() => life.admit(), refused("not_ready"));
  life.open();
  const done = life.admit();
  assert.equal(life.inflight, 1);
  done();
  done(); // idempotent: an answered request counts once
  assert.equal(life.inflight, 0);
  life.close();
  assert.throws(() => life.assertReady(), refused("not_ready"));
});

test("drain: refuses new requests at once, resolves when the admitted ones are answered", async () => {
  const life = new Lifecycle();
  life.open();
  const first = life.admit();
  const second = life.admit();
  const t0 = performance.now();
  const drained = life.drain(5_000);
  assert.throws(
    () => life.admit(),
    (e: unknown) => refused("draining")(e) && (e as ApiError).retryAfterS! > 0,
  );
  setTimeout(first, 20);
  setTimeout(second, 60);
  assert.equal(await drained, 0);
  const took = performance.now() - t0;
  assert.ok(took >= 55 && took < 1_000, `drained after ${took.toFixed(0)} ms`);
  life.open(); // a drain does not end: opening again admits nothing
  assert.throws(() => life.admit(), refused("draining"));
});

test("drain: gives up after its time, saying how many are unanswered", async () => {
  const life = new Lifecycle();
  life.open();
  life.admit();
  const t0 = performance.now();
  assert.equal(await life.drain(50), 1);
  assert.ok(performance.now() - t0 >= 45);
  assert.equal(await life.drain(0), 1, "nothing in flight finished");
});
