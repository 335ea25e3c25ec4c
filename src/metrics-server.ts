/**
 * The HTTP endpoint Prometheus scrapes: `/metrics` (text format), `/healthz` (the process is
 * alive), `/readyz` (ready as the caller's `ready()` says; the CLI passes `isReady` of src/metrics.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServerOptions {
  /** Port to listen on; 0 picks a free one (see `MetricsServer.port`). */
  port: number;
  /** Default `0.0.0.0`, so a Prometheus on another host can scrape it. */
  host?: string;
  /** The prom-client registry served at `/metrics`. */
  registry: Registry;
  /** Readiness; default always ready. */
  ready?: () => boolean;
  /** Why it is not ready, for /readyz's body (`not ready: …`). */
  notReadyReason?: () => string | undefined;
}

export interface MetricsServer {
  /** The port the server listens on. */
  readonly port: number;
  /** Drops open connections and stops the server; resolves once it is closed. */
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        () => res.writeHead(500).end('metrics unavailable\n'),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = options.ready?.() ?? true;
      const why = ready ? undefined : options.notReadyReason?.();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : `not ready${why === undefined ? '' : `: ${why}`}\n`);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
