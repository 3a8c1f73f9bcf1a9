// Image references to bytes (src/preprocess/fetch.ts) against a loopback HTTP server started here: URLs off by
// default, the allow-list, redirects, the size cap, the timeout, private addresses; data URIs and base64 always.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { defaultConfig } from "../../src/config.js";
import { ApiError } from "../../src/errors.js";
import {
  imageSourceBytes,
  isInternal,
  urlPolicy,
  type SourceOptions,
  type UrlPolicy,
} from "../../src/preprocess/fetch.js";
import { continuation, TextStream } from "../../src/decode/detokenize.js";

const IMAGE = Buffer.from("\x89PNG fake image bytes, only their transport is under test");
let server: http.Server;
let base: string;
let slowAnswers = 0; // times /slow answered
before(async () => {
  server = http.createServer((req, res) => {
    if (req.url === "/img.png") return res.writeHead(200, { "content-type": "image/png" }).end(IMAGE);
    if (req.url === "/redirect") return res.writeHead(302, { location: "/img.png" }).end();
    if (req.url === "/missing") return res.writeHead(404).end();
    if (req.url === "/big") {
      res.writeHead(200, { "content-type": "image/png" }); // no content-length: the cap must stop the reading
      const chunk = Buffer.alloc(64 * 1024);
      let sent = 0;
      const more = () => {
        while (sent < 64 && res.write(chunk)) sent++;
        if (sent < 64) res.once("drain", more);
        else res.end();
      };
      return more();
    }
    if (req.url === "/slow") return setTimeout(() => (slowAnswers++, res.writeHead(200).end(IMAGE)), 2000).unref();
    res.writeHead(500).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const policy = (hosts: string[], more: Partial<UrlPolicy> = {}): UrlPolicy => ({
  hosts,
  maxBytes: 1 << 20,
  timeoutMs: 500,
  ...more,
});
const get = (ref: string, p: UrlPolicy, more: Partial<SourceOptions> = {}) =>
  imageSourceBytes(ref, "image", { policy: p, fileLimitBytes: 1 << 20, ...more });

async function refused(p: Promise<unknown>, status: number, msg: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.status, status, e.message);
    assert.match(e.message, msg);
    return true;
  });
}

test("URLs are off by default (IMAGE_URL_HOSTS unset); data URIs and base64 always work", async () => {
  const off = urlPolicy(defaultConfig());
  assert.deepEqual(off.hosts, []);
  await refused(get(`${base}/img.png`, off), 400, /IMAGE_URL_HOSTS is empty/);
  assert.deepEqual(await get(`data:image/png;base64,${IMAGE.toString("base64")}`, off), IMAGE);
  assert.deepEqual(await get(IMAGE.toString("base64"), off), IMAGE);
  await refused(get("ftp://127.0.0.1/x.png", policy(["127.0.0.1"])), 400, /only http\(s\) URLs/);
  assert.deepEqual(urlPolicy({ ...defaultConfig(), imageUrlHosts: " 127.0.0.1, *.Example.com ,," }).hosts, [
    "127.0.0.1",
    "*.example.com",
  ]);
});

test("an allowed host is fetched; a host not on the list is refused", async () => {
  assert.deepEqual(await get(`${base}/img.png`, policy(["127.0.0.1"])), IMAGE);
  await refused(get(`${base}/img.png`, policy(["images.example.com"])), 400, /'127.0.0.1' is not in IMAGE_URL_HOSTS/);
  await refused(get(`${base}/missing`, policy(["127.0.0.1"])), 400, /answered HTTP 404/);
});

test("redirects are refused, not followed", async () => {
  await refused(get(`${base}/redirect`, policy(["127.0.0.1"])), 400, /redirects \(HTTP 302\)/);
});

test("an image over IMAGE_URL_MAX_BYTES is a 413, and the reading stops", async () => {
  await refused(get(`${base}/big`, policy(["127.0.0.1"], { maxBytes: 100_000 })), 413, /IMAGE_URL_MAX_BYTES/);
  await refused(get(`${base}/img.png`, policy(["127.0.0.1"], { maxBytes: 10 })), 413, /larger than 10 bytes/);
});

test("a slow server times out (504 naming IMAGE_URL_TIMEOUT_MS)", async () => {
  await refused(get(`${base}/slow`, policy(["127.0.0.1"], { timeoutMs: 200 })), 504, /IMAGE_URL_TIMEOUT_MS/);
  assert.equal(slowAnswers, 0, "refused at the timeout, before the server's answer");
});

test("private and loopback addresses: only for hosts allowed by their exact name", async () => {
  const port = (server.address() as AddressInfo).port;
  const toLoopback = async () => [{ address: "127.0.0.1", family: 4 }];
  // a name matched by a wildcard that resolves to loopback: refused (the name could be anyone's DNS)
  await refused(
    get(`http://img.cdn.test:${port}/img.png`, policy(["*.cdn.test"]), { resolve: toLoopback }),
    400,
    /resolves to a private, loopback or reserved address \(127.0.0.1\)/,
  );
  // a name whose addresses include one internal address: refused, whichever comes first
  const mixed = async () => [
    { address: "93.184.216.34", family: 4 },
    { address: "10.0.0.7", family: 4 },
  ];
  await refused(get(`http://img.cdn.test:${port}/x`, policy(["*.cdn.test"]), { resolve: mixed }), 400, /10\.0\.0\.7/);
  // the same name listed exactly: fetched, and from the checked address (the URL's name is never looked up again)
  assert.deepEqual(
    await get(`http://img.cdn.test:${port}/img.png`, policy(["img.cdn.test"]), { resolve: toLoopback }),
    IMAGE,
  );
  await refused(get(`http://other.test:${port}/img.png`, policy(["*.cdn.test"])), 400, /not in IMAGE_URL_HOSTS/);
  for (const a of ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"])
    assert.equal(isInternal({ address: a, family: 4 }), true, a);
  for (const a of ["::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::"])
    assert.equal(isInternal({ address: a, family: 6 }), true, a);
  for (const [a, f] of [
    ["93.184.216.34", 4],
    ["2606:2800:220:1::1", 6],
  ] as const)
    assert.equal(isInternal({ address: a, family: f }), false, a);
});

test("streamed text: the deltas put together are the decoded text, after a prompt prefix", () => {
  const pieces: Record<number, string> = { 1: "a", 2: "dog", 3: "##gy", 4: "runs", 5: "." };
  const tok = {
    decode: (ids: readonly number[]) =>
      ids
        .map((i) => pieces[i])
        .map((p, k) => (p.startsWith("##") ? p.slice(2) : k === 0 || p === "." ? p : ` ${p}`))
        .join(""),
  };
  const s = new TextStream(tok);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((t) => s.push(t)),
    ["a", " dog", "gy", " runs", "."],
  );
  assert.equal(s.text, "a doggy runs.");
  assert.equal(continuation(tok, [3, 4], [1, 2]), "gy runs", "a '##' piece continues the prompt's last word");
  assert.equal(continuation(tok, [4], [1, 2]), " runs");
});
