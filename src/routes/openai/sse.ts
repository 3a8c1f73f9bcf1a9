// Server-Sent Events for OpenAI-style streams: one `data: <json>` event per chunk, `data: [DONE]`, then the end of
// the response (the Python SDK reads to EOF after [DONE]). Headers: text/event-stream, no caching, and no proxy
// buffering (nginx's X-Accel-Buffering), so each chunk reaches the client as it is written.
import { PassThrough } from "node:stream";
import type { FastifyReply } from "fastify";

export class EventStream {
  readonly body = new PassThrough();

  /** Sends the response head and the stream as its body; chunks follow as they are written. */
  start(reply: FastifyReply): FastifyReply {
    return reply
      .status(200)
      .header("content-type", "text/event-stream; charset=utf-8")
      .header("cache-control", "no-cache")
      .header("x-accel-buffering", "no")
      .send(this.body);
  }

  /** Whether the client still reads (the response was not closed under us). */
  get open(): boolean {
    return !this.body.destroyed && !this.body.writableEnded;
  }

  send(data: unknown): void {
    if (this.open) this.body.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** `data: [DONE]` and the end of the response. */
  done(): void {
    if (!this.open) return;
    this.body.write("data: [DONE]\n\n");
    this.body.end();
  }
}
