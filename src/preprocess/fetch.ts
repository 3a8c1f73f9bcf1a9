// Image references -> bytes: a data URI or bare base64 (always), or an http(s) URL (only when IMAGE_URL_HOSTS names
// hosts). URLs are where a server can be turned against its own network (SSRF: vllm #57157, sglang #17269), so a
// fetch is fenced: hosts from an allow-list (exact names, or `*.example.com` for its sub-domains), http and https
// only, no redirects followed, every address the name resolves to checked (no private, loopback, link-local,
// multicast or reserved address unless the host is allowed by its exact name) and the connection made to the
// checked address (a second lookup cannot rebind it), at most IMAGE_URL_MAX_BYTES read (413), and
// IMAGE_URL_TIMEOUT_MS for the whole fetch (504). Every refusal is an ApiError naming the reason.
import { lookup as dnsLookup } from "node:dns/promises";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import type { Config } from "../config.js";
import { ApiError, invalidImage } from "../errors.js";
import { decodeImageString } from "../routes/input.js";

export interface UrlPolicy {
  hosts: string[]; // lower-case names or `*.suffix` patterns; empty: URLs are refused
  maxBytes: number; // response bytes at most
  timeoutMs: number; // the whole fetch: connect, headers and body
}

export interface Address {
  address: string;
  family: number; // 4 or 6
}

export interface SourceOptions {
  policy: UrlPolicy;
  fileLimitBytes: number; // data URIs and base64 (FILE_LIMIT_BYTES)
  signal?: AbortSignal; // the request's deadline / client gone
  resolve?: (host: string) => Promise<Address[]>; // name -> addresses (default: the system resolver, all of them)
}

const policies = new WeakMap<Config, UrlPolicy>();

/** The URL policy of a config, parsed once per config (routes ask for it per image). */
export function urlPolicy(config: Config): UrlPolicy {
  let policy = policies.get(config);
  if (policy === undefined) {
    policy = {
      hosts: (config.imageUrlHosts ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
      maxBytes: config.imageUrlMaxBytes,
      timeoutMs: config.imageUrlTimeoutMs,
    };
    policies.set(config, policy);
  }
  return policy;
}

/** The bytes of an image reference: a data URI, bare base64, or an http(s) URL under `opts.policy`. */
export async function imageSourceBytes(ref: string, label: string, opts: SourceOptions): Promise<Buffer> {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(ref.slice(0, 32))?.[1]?.toLowerCase();
  if (scheme === "http" || scheme === "https") return fetchImage(ref, label, opts);
  if (scheme !== undefined && scheme !== "data" && ref.slice(scheme.length + 1, scheme.length + 3) === "//")
    throw invalidImage(`${label} is a ${scheme}: URL; only http(s) URLs, data URIs and base64 are accepted`);
  return decodeImageString(ref, label, opts.fileLimitBytes);
}

async function fetchImage(ref: string, label: string, opts: SourceOptions): Promise<Buffer> {
  const { policy } = opts;
  if (policy.hosts.length === 0)
    throw invalidImage(
      `${label} is a URL, and this server fetches no image URLs (IMAGE_URL_HOSTS is empty): send the image as a data URI or base64`,
    );
  let url: URL;
  try {
    url = new URL(ref);
  } catch {
    throw invalidImage(`${label} is not a valid URL`);
  }
  if (url.username || url.password) throw invalidImage(`${label}: URLs with credentials are not fetched`);
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, ""); // IPv6 literals lose their brackets
  const byName = policy.hosts.includes(host);
  if (!byName && !policy.hosts.some((p) => p.startsWith("*.") && host.endsWith(p.slice(1)) && isIP(host) === 0))
    throw invalidImage(`${label}: host '${host.slice(0, 100)}' is not in IMAGE_URL_HOSTS`);

  const timeout = AbortSignal.timeout(policy.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  const timedOut = () =>
    new ApiError(
      "deadline_exceeded",
      `${label}: fetching the image took longer than ${policy.timeoutMs} ms (IMAGE_URL_TIMEOUT_MS)`,
    );
  const addresses = await withSignal(resolveAll(host, opts.resolve), signal, timedOut).catch((err: unknown) => {
    if (err instanceof ApiError) throw err;
    throw invalidImage(`${label}: host '${host.slice(0, 100)}' does not resolve`);
  });
  if (addresses.length === 0) throw invalidImage(`${label}: host '${host.slice(0, 100)}' does not resolve`);
  const inner = addresses.find((a) => isInternal(a));
  if (inner && !byName)
    throw invalidImage(
      `${label}: host '${host.slice(0, 100)}' resolves to a private, loopback or reserved address (${inner.address}); ` +
        "such hosts must be listed by their exact name in IMAGE_URL_HOSTS",
    );
  return withSignal(get(url, addresses[0], label, policy, signal), signal, timedOut);
}

async function resolveAll(host: string, resolve?: SourceOptions["resolve"]): Promise<Address[]> {
  const family = isIP(host);
  if (family !== 0) return [{ address: host, family }];
  return resolve ? resolve(host) : dnsLookup(host, { all: true, verbatim: true });
}

/** One GET to the checked address (the URL's name kept for the Host header and TLS), the body capped. */
function get(url: URL, to: Address, label: string, policy: UrlPolicy, signal: AbortSignal): Promise<Buffer> {
  const lookup: LookupFunction = (_name, options, cb) => {
    if (options.all) (cb as (e: null, a: Address[]) => void)(null, [to]);
    else cb(null, to.address, to.family);
  };
  const client = url.protocol === "https:" ? https : http;
  return new Promise<Buffer>((resolve, reject) => {
    const req = client.get(url, { lookup, signal, headers: { accept: "image/*" } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        res.destroy();
        return reject(invalidImage(`${label}: the image URL redirects (HTTP ${status}); redirects are not followed`));
      }
      if (status !== 200) {
        res.destroy();
        return reject(invalidImage(`${label}: the image URL answered HTTP ${status}`));
      }
      const tooBig = () =>
        new ApiError(
          "file_too_large",
          `${label}: the image at the URL is larger than ${policy.maxBytes} bytes (IMAGE_URL_MAX_BYTES)`,
        );
      if (Number(res.headers["content-length"] ?? 0) > policy.maxBytes) {
        res.destroy();
        return reject(tooBig());
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > policy.maxBytes) {
          res.destroy(); // stop reading past the cap
          reject(tooBig());
        } else chunks.push(c);
      });
      res.on("end", () => resolve(Buffer.concat(chunks)));
      res.on("error", reject);
    });
    req.on("error", (err) =>
      reject(signal.aborted ? err : invalidImage(`${label}: the image URL could not be fetched (${err.message})`)),
    );
  });
}

/** `p`, or the abort: the request's own reason (client gone, deadline), else the fetch timeout's error. */
function withSignal<T>(p: Promise<T>, signal: AbortSignal, timedOut: () => ApiError): Promise<T> {
  const reason = () => (signal.reason instanceof ApiError ? signal.reason : timedOut());
  if (signal.aborted) return Promise.reject(reason());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(reason());
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

// Addresses no public image host has: unspecified, "this network", private (RFC 1918, ULA), shared (CGNAT),
// loopback, link-local, benchmarking, IETF protocol, multicast and reserved ranges.
const INTERNAL = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const)
  INTERNAL.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["64:ff9b::", 96],
  ["2001:db8::", 32],
] as const)
  INTERNAL.addSubnet(net, bits, "ipv6");

export function isInternal(a: Address): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a.address); // IPv4-mapped IPv6: check the IPv4 address
  if (mapped) return INTERNAL.check(mapped[1], "ipv4");
  return INTERNAL.check(a.address, a.family === 6 ? "ipv6" : "ipv4");
}
