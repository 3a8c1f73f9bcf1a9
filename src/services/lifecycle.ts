// The server's lifecycle, owned in one place: loading (nothing admitted), open (models warmed up: /v1 requests are
// admitted and counted), draining (on SIGTERM: nothing new is admitted while admitted requests finish), closed.
// The app's onRequest hook admits, /readyz reads the state, the models plugin opens and closes, server.ts drains.
import { ApiError } from "../errors.js";

type Phase = "loading" | "open" | "draining" | "closed";

export class Lifecycle {
  private phase: Phase = "loading";
  private admitted = 0; // admitted /v1 requests not yet answered (a drain waits for 0)
  private idle: (() => void)[] = []; // drains waiting for `admitted` to reach 0

  /** Models loaded and warmed up: requests are admitted from now on. */
  open(): void {
    if (this.phase === "loading" || this.phase === "closed") this.phase = "open";
  }

  /** The sessions are going away: nothing is admitted any more (not ready). */
  close(): void {
    this.phase = "closed";
  }

  /** Requests admitted and not yet answered. */
  get inflight(): number {
    return this.admitted;
  }

  /** Throws the 503 that /readyz and the task routes answer while the server takes no work. */
  assertReady(): void {
    if (this.phase === "draining")
      throw new ApiError("draining", "the server is shutting down; retry on another instance", 5);
    if (this.phase !== "open") throw new ApiError("not_ready", "models are not loaded and warmed up yet", 1);
  }

  /** Admits a request (or throws its 503); call the returned function once it is answered or abandoned. */
  admit(): () => void {
    this.assertReady();
    this.admitted++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.admitted--;
      if (this.admitted === 0) for (const wake of this.idle.splice(0)) wake();
    };
  }

  /**
   * Stops admitting (readiness turns 503) and waits up to `ms` for the admitted requests to be answered. Resolves
   * with how many are still unanswered (0: drained).
   */
  async drain(ms: number): Promise<number> {
    if (this.phase !== "closed") this.phase = "draining";
    if (this.admitted > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.idle.push(resolve);
        timer = setTimeout(resolve, ms);
      });
      clearTimeout(timer);
    }
    return this.admitted;
  }
}
