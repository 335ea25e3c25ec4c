/**
 * A fault-injecting HTTP reverse proxy in front of the test radosgw, for the faults radosgw
 * cannot produce itself: throttling, 5xx, connection resets, lost responses and a server that
 * stops answering.
 *
 * Forwarding is byte-faithful where SigV4 needs it: the method, the request target and every
 * request header (Host included, in their original case and order) go upstream unchanged, so
 * the client's signature still verifies; bodies stream both ways without buffering. Each
 * request is classified as an S3 operation (path-style addressing) and recorded in `log`,
 * with the `x-amz-server-side-encryption*` request headers it carried.
 *
 * Faults are rules: "the next N requests of an operation" or "every request until cleared",
 * optionally narrowed by a predicate (e.g. only part 2). A rule answers instead of radosgw:
 * - `SlowDown` 503, `InternalError` 500, `ServiceUnavailable` 503, `AccessDenied` 403 (a policy
 *   without the permission): an S3 XML error, sent after
 *   the request body was read to its end (a client still sending would otherwise see EPIPE);
 * - `reset`: the connection is reset at once (TCP RST), nothing reaches radosgw;
 * - `lost-response`: the request is forwarded and radosgw acts on it, then the client's
 *   connection is reset instead of answering (a response lost on the way back);
 * - `cut-body`: the request is forwarded and the answer's status and headers are passed on, but
 *   the connection is reset after CUT_BODY_AFTER bytes of its body (a download cut mid-way);
 * - `blackhole`: the request is held, unread and unanswered, until `release()` forwards it
 *   (or resets it). A client that gives up first (its request timeout) is never forwarded.
 */
import { createServer, request as httpRequest, Agent, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { WRITE_CHECK_NAME } from '../../src/sinks/s3-check.js';

export type S3Operation =
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListMultipartUploads'
  | 'ListParts'
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'DeleteObjects'
  | 'ListObjects'
  | 'CreateBucket'
  | 'DeleteBucket'
  | 'HeadBucket'
  | 'ListBuckets'
  | 'Other';

export type S3ErrorFault = 'SlowDown' | 'InternalError' | 'ServiceUnavailable' | 'AccessDenied';
export type Fault = S3ErrorFault | 'reset' | 'lost-response' | 'blackhole' | 'cut-body';

/** How much of a response body a `cut-body` fault lets through before it resets the connection. */
export const CUT_BODY_AFTER = 64 * 1024;

const ERRORS: Record<S3ErrorFault, { status: number; message: string }> = {
  SlowDown: { status: 503, message: 'Please reduce your request rate.' },
  InternalError: { status: 500, message: 'We encountered an internal error. Please try again.' },
  ServiceUnavailable: { status: 503, message: 'Service is unable to handle request.' },
  AccessDenied: { status: 403, message: 'Access Denied' },
};

/** What a rule's predicate sees. */
export interface RequestInfo {
  op: S3Operation;
  method: string;
  /** The request target as received: path and query. */
  path: string;
  bucket: string | undefined;
  key: string | undefined;
  partNumber: number | undefined;
  uploadId: string | undefined;
}

/** One request as the proxy saw it. */
export interface ProxyLogEntry extends RequestInfo {
  /** 1, 2, ... in arrival order. */
  seq: number;
  /** The fault injected, if any. */
  fault?: Fault;
  /** Status sent to the client (radosgw's or the injected one); undefined if none was sent. */
  status?: number;
  /**
   * `forwarded`: radosgw answered and the answer was passed on. `injected`: an error status was
   * answered. `reset`: the connection was reset (by a `reset` or `lost-response` fault, or on
   * release). `held`: blackholed, not released yet. `client-gone`: the client closed the
   * connection while its request was held. `upstream-error`: radosgw could not be reached.
   */
  outcome: 'pending' | 'forwarded' | 'injected' | 'reset' | 'held' | 'client-gone' | 'upstream-error';
  /** `x-amz-server-side-encryption*` request headers, names lower-cased. */
  sse: Record<string, string>;
}

export interface FaultRule {
  /** The operation it applies to; `*` for every request. */
  op: S3Operation | '*';
  fault: Fault;
  /** Requests left to fault; Infinity until cleared. */
  remaining: number;
  /** Narrows the rule, e.g. `(r) => r.partNumber === 2`. */
  match?: (r: RequestInfo) => boolean;
}

interface Held {
  req: IncomingMessage;
  res: ServerResponse;
  entry: ProxyLogEntry;
}

/** Whether a request is the sink's start-up check (on its check key), not an object's upload. */
export function isWriteCheck(r: RequestInfo): boolean {
  // Its ListMultipartUploads names the key in `prefix=`, the other requests in the path.
  return r.key?.endsWith(WRITE_CHECK_NAME) === true || decodeURIComponent(r.path).includes(WRITE_CHECK_NAME);
}

/** The S3 operation of a path-style request. */
export function classifyS3Request(method: string, target: string): RequestInfo {
  const url = new URL(target, 'http://proxy.invalid');
  const q = url.searchParams;
  const segments = url.pathname.split('/');
  const bucket = segments[1] === undefined || segments[1] === '' ? undefined : decodeURIComponent(segments[1]);
  const rest = segments.slice(2).join('/');
  const key = rest === '' ? undefined : decodeURIComponent(rest);
  const partText = q.get('partNumber');
  const info: RequestInfo = {
    op: 'Other',
    method,
    path: target,
    bucket,
    key,
    partNumber: partText === null ? undefined : Number(partText),
    uploadId: q.get('uploadId') ?? undefined,
  };
  const m = method.toUpperCase();
  if (bucket === undefined) {
    if (m === 'GET') info.op = 'ListBuckets';
  } else if (key === undefined) {
    if (m === 'GET') info.op = q.has('uploads') ? 'ListMultipartUploads' : 'ListObjects';
    else if (m === 'PUT' && [...q.keys()].length === 0) info.op = 'CreateBucket';
    else if (m === 'DELETE' && [...q.keys()].length === 0) info.op = 'DeleteBucket';
    else if (m === 'HEAD') info.op = 'HeadBucket';
    else if (m === 'POST' && q.has('delete')) info.op = 'DeleteObjects';
  } else if (m === 'POST') {
    if (q.has('uploads')) info.op = 'CreateMultipartUpload';
    else if (q.has('uploadId')) info.op = 'CompleteMultipartUpload';
  } else if (m === 'PUT') {
    if (q.has('partNumber') && q.has('uploadId')) info.op = 'UploadPart';
    else if (![...q.keys()].some((k) => k !== 'x-id')) info.op = 'PutObject';
  } else if (m === 'DELETE') {
    info.op = q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  } else if (m === 'GET') {
    info.op = q.has('uploadId') ? 'ListParts' : 'GetObject';
  } else if (m === 'HEAD') {
    info.op = 'HeadObject';
  }
  return info;
}

function s3ErrorXml(code: S3ErrorFault, resource: string, requestId: string): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${ERRORS[code].message}</Message>` +
    `<Resource>${esc(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`
  );
}

function sseHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    if (name.startsWith('x-amz-server-side-encryption')) out[name] = req.rawHeaders[i + 1]!;
  }
  return out;
}

/** Resets the connection (RST), so the client sees ECONNRESET rather than a clean close. */
function resetSocket(socket: Socket | null): void {
  if (socket !== null && !socket.destroyed) socket.resetAndDestroy();
}

export class S3FaultProxy {
  readonly log: ProxyLogEntry[] = [];
  readonly #upstream: URL;
  readonly #server: Server;
  // No keep-alive upstream: a pooled connection that radosgw closed while idle would surface
  // as a spurious upstream error, i.e. a fault nobody injected.
  readonly #agent = new Agent({ keepAlive: false });
  #rules: FaultRule[] = [];
  #held: Held[] = [];
  #seq = 0;
  #url: string | undefined;

  constructor(upstream: string) {
    this.#upstream = new URL(upstream);
    if (this.#upstream.protocol !== 'http:') throw new Error(`the fault proxy forwards to http only, not ${upstream}`);
    this.#server = createServer({ requestTimeout: 0, keepAliveTimeout: 60_000 }, (req, res) => this.#onRequest(req, res));
  }

  /** Listens on 127.0.0.1 (a free port); resolves the endpoint to give the S3 client. */
  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.#url;
  }

  get url(): string {
    if (this.#url === undefined) throw new Error('the fault proxy is not started');
    return this.#url;
  }

  /** Faults the next `times` requests of `op` (matching `match`, if given) with `fault`. */
  failNext(op: FaultRule['op'], fault: Fault, times = 1, match?: FaultRule['match']): this {
    this.#rules.push({ op, fault, remaining: times, ...(match === undefined ? {} : { match }) });
    return this;
  }

  /** Faults every request of `op` (matching `match`, if given) until `clear()`. */
  failAlways(op: FaultRule['op'], fault: Fault, match?: FaultRule['match']): this {
    return this.failNext(op, fault, Infinity, match);
  }

  /** Holds every request of `op` (default: all) until `release()`. */
  blackhole(op: FaultRule['op'] = '*', match?: FaultRule['match']): this {
    return this.failAlways(op, 'blackhole', match);
  }

  /**
   * Ends every blackhole rule, then forwards the requests held so far (`forward`, the default)
   * or resets their connections (`reset`).
   */
  release(how: 'forward' | 'reset' = 'forward'): void {
    this.#rules = this.#rules.filter((r) => r.fault !== 'blackhole');
    const held = this.#held;
    this.#held = [];
    for (const h of held) {
      if (how === 'forward') {
        h.entry.outcome = 'pending';
        this.#forward(h.req, h.res, h.entry);
      } else {
        h.entry.outcome = 'reset';
        resetSocket(h.req.socket);
      }
    }
  }

  /** Removes every rule (held requests stay held until `release()`). */
  clear(): void {
    this.#rules = [];
  }

  /** Requests being held by a blackhole now. */
  get held(): number {
    return this.#held.length;
  }

  /** Log entries of `op`, optionally filtered. */
  entries(op: S3Operation | '*', filter: (e: ProxyLogEntry) => boolean = () => true): ProxyLogEntry[] {
    return this.log.filter((e) => (op === '*' || e.op === op) && filter(e));
  }

  /** Resets held requests and open connections, stops listening. */
  async close(): Promise<void> {
    this.release('reset');
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    this.#agent.destroy();
  }

  #take(info: RequestInfo): Fault | undefined {
    const rule = this.#rules.find((r) => r.remaining > 0 && (r.op === '*' || r.op === info.op) && (r.match === undefined || r.match(info)));
    if (rule === undefined) return undefined;
    rule.remaining--;
    if (rule.remaining === 0) this.#rules = this.#rules.filter((r) => r !== rule);
    return rule.fault;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const info = classifyS3Request(req.method ?? 'GET', req.url ?? '/');
    const entry: ProxyLogEntry = { ...info, seq: ++this.#seq, outcome: 'pending', sse: sseHeaders(req) };
    this.log.push(entry);
    res.once('close', () => {
      if (entry.outcome === 'pending') entry.outcome = 'client-gone';
    });
    const fault = this.#take(info);
    if (fault !== undefined) entry.fault = fault;
    switch (fault) {
      case undefined:
      case 'lost-response':
      case 'cut-body':
        this.#forward(req, res, entry);
        return;
      case 'reset':
        entry.outcome = 'reset';
        resetSocket(req.socket);
        return;
      case 'blackhole': {
        // Node has already sent "100 Continue" if the client asked (no checkContinue listener),
        // so a client with a body sends it; it waits in the socket buffers, unread.
        entry.outcome = 'held';
        const held: Held = { req, res, entry };
        this.#held.push(held);
        // A client that times out closes its connection: forget the request, never forward it.
        res.once('close', () => {
          if (!this.#held.includes(held)) return;
          this.#held = this.#held.filter((h) => h !== held);
          entry.outcome = 'client-gone';
        });
        return;
      }
      default: {
        const code = fault;
        // Read the body to its end first: answering while the client still sends would make it
        // see EPIPE/ECONNRESET instead of the S3 error.
        req.resume();
        req.once('end', () => {
          const body = s3ErrorXml(code, info.path, `fault-proxy-${entry.seq}`);
          entry.status = ERRORS[code].status;
          entry.outcome = 'injected';
          res.writeHead(ERRORS[code].status, {
            'Content-Type': 'application/xml',
            'Content-Length': Buffer.byteLength(body),
            'x-amz-request-id': `fault-proxy-${entry.seq}`,
          });
          res.end(body);
        });
        req.once('error', () => {});
      }
    }
  }

  #forward(req: IncomingMessage, res: ServerResponse, entry: ProxyLogEntry): void {
    if (res.destroyed || req.socket.destroyed) {
      entry.outcome = 'client-gone';
      return;
    }
    const lose = entry.fault === 'lost-response';
    const upstream = httpRequest(
      {
        host: this.#upstream.hostname,
        port: this.#upstream.port,
        method: req.method,
        path: req.url,
        // The raw header list as received: Host and the signed x-amz-* headers stay byte-equal.
        headers: req.rawHeaders,
        agent: this.#agent,
      },
      (ures) => {
        if (lose) {
          // radosgw has acted on the request; the client never hears about it.
          ures.resume();
          ures.once('end', () => {
            entry.outcome = 'reset';
            resetSocket(req.socket);
          });
          return;
        }
        entry.status = ures.statusCode;
        entry.outcome = 'forwarded';
        res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.rawHeaders);
        if (entry.fault === 'cut-body') {
          let sent = 0;
          ures.on('data', (chunk: Buffer) => {
            if (sent >= CUT_BODY_AFTER) return;
            const room = CUT_BODY_AFTER - sent;
            res.write(chunk.length > room ? chunk.subarray(0, room) : chunk);
            sent += Math.min(room, chunk.length);
            if (sent >= CUT_BODY_AFTER) {
              entry.outcome = 'reset';
              ures.destroy();
              // Let the bytes written so far leave before the reset.
              setTimeout(() => resetSocket(req.socket), 50);
            }
          });
          ures.once('end', () => res.end());
          return;
        }
        pipeline(ures, res).catch(() => resetSocket(req.socket));
      },
    );
    upstream.once('error', () => {
      entry.outcome = 'upstream-error';
      if (!res.headersSent) {
        entry.status = 502;
        res.writeHead(502, { 'Content-Length': 0 }).end();
      } else {
        resetSocket(req.socket);
      }
    });
    // Errors surface on `upstream` (above) or as the client closing; either is handled there.
    pipeline(req, upstream).catch(() => {});
  }
}

/** Starts a proxy in front of `upstream` (default: S3_ENDPOINT). */
export async function startS3FaultProxy(upstream = process.env['S3_ENDPOINT'] ?? ''): Promise<S3FaultProxy> {
  if (upstream === '') throw new Error('S3_ENDPOINT is not set: the fault proxy has nothing to forward to');
  const proxy = new S3FaultProxy(upstream);
  await proxy.start();
  return proxy;
}
