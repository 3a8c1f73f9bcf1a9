// A bulk import through a running server: N generated images (64 x 64 PNGs of varied colour and shape) streamed as
// one NDJSON body to PUT /v1/collections/{name}/imports/{job}, its progress polled from a second connection.
// Usage: node --import tsx scripts/collections-import.ts [BASE_URL] [N]   (default http://127.0.0.1:8080, 10000)
import { Readable } from "node:stream";
import sharp from "sharp";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const n = Number(process.argv[3] ?? 10_000);
const name = `import-${Date.now().toString(36)}`;

async function image(i: number): Promise<string> {
  const colour = `#${((i * 2654435761) >>> 8).toString(16).padStart(6, "0").slice(0, 6)}`;
  const r = 8 + (i % 24);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="#fff"/><circle cx="${16 + (i % 32)}" cy="${16 + ((i >> 5) % 32)}" r="${r}" fill="${colour}"/></svg>`;
  return (await sharp(Buffer.from(svg)).png().toBuffer()).toString("base64");
}

async function* lines(): AsyncGenerator<string> {
  for (let i = 0; i < n; i++)
    yield JSON.stringify({ id: `img-${i}`, image: await image(i), metadata: { i, shard: i % 10 } }) + "\n";
}

const created = await fetch(`${base}/v1/collections`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ name }),
});
if (created.status !== 201) throw new Error(`create: ${created.status} ${await created.text()}`);
const t0 = performance.now();
const poll = setInterval(async () => {
  const j = (await (await fetch(`${base}/v1/collections/${name}/jobs/bulk`)).json()) as { received?: number };
  console.log(`${((performance.now() - t0) / 1000).toFixed(0)} s: ${j.received ?? 0} lines handled`);
}, 10_000);
const res = await fetch(`${base}/v1/collections/${name}/imports/bulk`, {
  method: "PUT",
  headers: { "content-type": "application/x-ndjson" },
  body: Readable.from(lines()) as unknown as BodyInit,
  duplex: "half",
} as RequestInit);
clearInterval(poll);
const s = (performance.now() - t0) / 1000;
const job = (await res.json()) as { status: string; succeeded: number; failed: number };
console.log(
  `${res.status} ${job.status}: ${job.succeeded} imported, ${job.failed} failed in ${s.toFixed(1)} s (${(job.succeeded / s).toFixed(0)} images/s)`,
);
const q = await fetch(`${base}/v1/collections/${name}/search`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ text: "a red circle", limit: 5, filter: { shard: 3 }, rerank: "itm" }),
});
console.log(`search: ${q.status} ${(await q.text()).slice(0, 300)}`);
