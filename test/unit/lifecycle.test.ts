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

test("drain: refuses new requests at once, resolves when the admitted ones are answered", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] }); // the drain's time limit never passes unless ticked
  const life = new Lifecycle();
  life.open();
  const first = life.admit();
  const second = life.admit();
  let drained: number | null = null;
  const drain = life.drain(5_000).then((n) => (drained = n));
  assert.throws(
    () => life.admit(),
    (e: unknown) => refused("draining")(e) && (e as ApiError).retryAfterS! > 0,
  );
  first();
  await Promise.resolve();
  assert.equal(drained, null, "one admitted request is still unanswered");
  second();
  await drain;
  assert.equal(drained, 0, "resolved by the last answer, with no time passed");
  life.open(); // a drain does not end: opening again admits nothing
  assert.throws(() => life.admit(), refused("draining"));
});

test("drain: gives up after its time, saying how many are unanswered", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const life = new Lifecycle();
  life.open();
  life.admit();
  let drained: number | null = null;
  const drain = life.drain(50).then((n) => (drained = n));
  t.mock.timers.tick(49);
  await Promise.resolve();
  assert.equal(drained, null, "not before its time");
  t.mock.timers.tick(1);
  await drain;
  assert.equal(drained, 1);
  const again = life.drain(0);
  t.mock.timers.tick(0);
  assert.equal(await again, 1, "nothing in flight finished");
});
