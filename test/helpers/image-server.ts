// A loopback HTTP server (127.0.0.1, a free port) that serves one PNG at /red.png and 404 elsewhere: the image URL
// tests' remote host.
import http from "node:http";
import type { AddressInfo } from "node:net";

export async function servePng(png: Buffer): Promise<{ url: string; close: () => void }> {
  const srv = http.createServer((req, res) =>
    req.url === "/red.png" ? res.writeHead(200, { "content-type": "image/png" }).end(png) : res.writeHead(404).end(),
  );
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/red.png`, close: () => srv.close() };
}
