/**
 * An API gateway in front of a test API server, as a company proxy or an API management layer
 * is: it serves the API under a path `prefix` and forwards each request upstream with the
 * upstream's own Host header, so the pages' links (which the simulator builds from Host) name the
 * upstream host, not the gateway. Anything outside the prefix gets the gateway's own 404 page.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Gateway {
  /** The gateway's base URL, prefix included: what `--api-url` is set to. */
  readonly url: string;
  /** Paths asked of the gateway, as received. */
  readonly paths: string[];
  close(): Promise<void>;
}

export async function startGateway(upstream: string, options: { prefix: string; upstreamHost: string }): Promise<Gateway> {
  const target = new URL(upstream);
  const paths: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    paths.push(path);
    if (!path.startsWith(`${options.prefix}/`)) {
      res.writeHead(404, { 'content-type': 'text/html' }).end('<html><body><h1>404 Not Found</h1><hr>gateway</body></html>\n');
      return;
    }
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: path.slice(options.prefix.length), headers: { ...req.headers, host: options.upstreamHost } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${options.prefix}`,
    paths,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
