/**
 * A scripted events-stream server for tests: a fixed sequence of pages whose records are raw JSON
 * texts (strings or Buffers, so invalid UTF-8 and 10 MB records are possible), and whose failures
 * are raw answers of any status, headers and body: the bodies the simulator cannot produce.
 *
 * The real source walks it: page i answers the cursor that page i-1 handed out (page 0 answers a
 * request without a cursor), cursors are opaque random tokens, and past the last page an empty
 * page points at itself (Atlassian's "cursor" end style). Every request is recorded.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';

/** One answer exactly as sent. */
export interface RawAnswer {
  /** Default 200. */
  status?: number;
  /** Default `content-type: application/json`. */
  headers?: Record<string, string>;
  body: string | Buffer;
}

/** A bad answer, or one made from the page's good body (e.g. the good body cut short). */
export type BadAnswer = RawAnswer | ((good: Buffer) => RawAnswer);

export interface ScriptedPage {
  /** Raw JSON text of each element of `data`. */
  records: ReadonlyArray<string | Buffer>;
  /** Answers to the first requests for this page, one request each; then the good page. */
  bad?: BadAnswer[];
  /** Answers every request for this page with this instead (until {@link ScriptedApi.heal}). */
  badForever?: BadAnswer;
  /** Headers of the good answer. Default `content-type: application/json`. */
  headers?: Record<string, string>;
  /** Bytes put before the good body (e.g. a UTF-8 byte order mark). */
  bodyPrefix?: Buffer;
}

export interface ScriptedRequest {
  query: Record<string, string>;
  /** Index of the page asked for; `pages.length` is the end page; undefined if none matched. */
  page: number | undefined;
  status: number;
  /** Which answer was sent: `good`, `bad<n>`, `forever`, or an error such as `401`. */
  answer: string;
}

export interface ScriptedApi {
  readonly url: string;
  readonly orgId: string;
  readonly apiKey: string;
  readonly requests: ScriptedRequest[];
  /** Requests for page `i` (the end page is `pages.length`). */
  requestsFor(i: number): ScriptedRequest[];
  /** The good body of page `i`, as served. */
  goodBody(i: number): Buffer;
  /** From now on every page answers well (its `badForever` is dropped). */
  heal(): void;
  close(): Promise<void>;
}

const JSON_TYPE = { 'content-type': 'application/json' };

/** The body of a page: `{"data":[...],"meta":{"next","page_size"},"links":{...}}`, records spliced in as bytes. */
export function pageBody(records: ReadonlyArray<string | Buffer>, next: string | null): Buffer {
  const parts: Buffer[] = [Buffer.from('{"data":[')];
  records.forEach((r, i) => {
    if (i > 0) parts.push(Buffer.from(','));
    parts.push(typeof r === 'string' ? Buffer.from(r, 'utf8') : r);
  });
  const meta = { next, page_size: records.length };
  parts.push(Buffer.from(`],"meta":${JSON.stringify(meta)},"links":{"self":null,"next":null}}`));
  return Buffer.concat(parts);
}

export async function startScriptedApi(pages: ScriptedPage[], opts: { orgId?: string; apiKey?: string } = {}): Promise<ScriptedApi> {
  const orgId = opts.orgId ?? 'scripted-org';
  const apiKey = opts.apiKey ?? 'scripted-key';
  // cursors[i] answers page i; cursors[pages.length] is the end page. Page 0 is also the answer
  // to a request without a cursor.
  const cursors = Array.from({ length: pages.length + 1 }, () => randomBytes(12).toString('base64url'));
  const byCursor = new Map(cursors.map((c, i) => [c, i]));
  const goodBodies = new Map<number, Buffer>();
  const good = (i: number): Buffer => {
    let body = goodBodies.get(i);
    if (body === undefined) {
      const page = pages[i];
      body = page === undefined ? pageBody([], cursors[i]!) : pageBody(page.records, cursors[i + 1]!);
      if (page?.bodyPrefix !== undefined) body = Buffer.concat([page.bodyPrefix, body]);
      goodBodies.set(i, body);
    }
    return body;
  };
  const requests: ScriptedRequest[] = [];
  let healed = false;

  const send = (res: ServerResponse, log: ScriptedRequest, answer: RawAnswer): void => {
    log.status = answer.status ?? 200;
    res.writeHead(log.status, answer.headers ?? JSON_TYPE).end(answer.body);
  };
  const error = (res: ServerResponse, log: ScriptedRequest, status: number, code: string): void => {
    log.answer = String(status);
    send(res, log, { status, body: JSON.stringify({ errors: [{ status: String(status), code, title: code }] }) });
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const log: ScriptedRequest = { query: Object.fromEntries(url.searchParams), page: undefined, status: 0, answer: '' };
    requests.push(log);
    if (req.headers.authorization !== `Bearer ${apiKey}`) return error(res, log, 401, 'ADMIN-401');
    if (req.method !== 'GET' || url.pathname !== `/admin/v1/orgs/${encodeURIComponent(orgId)}/events-stream`) return error(res, log, 404, 'ADMIN-404-2');
    const cursor = url.searchParams.get('cursor');
    const i = cursor === null ? 0 : byCursor.get(cursor);
    if (i === undefined) return error(res, log, 400, 'ADMIN-400-1');
    log.page = i;
    const page = pages[i];
    const asked = requests.filter((r) => r.page === i).length;
    const bad = page?.badForever !== undefined && !healed ? page.badForever : page?.bad?.[asked - 1];
    if (bad === undefined) {
      log.answer = 'good';
      return send(res, log, { headers: page?.headers ?? JSON_TYPE, body: good(i) });
    }
    log.answer = page?.badForever !== undefined && !healed ? 'forever' : `bad${asked - 1}`;
    send(res, log, typeof bad === 'function' ? bad(good(i)) : bad);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    orgId,
    apiKey,
    requests,
    requestsFor: (i) => requests.filter((r) => r.page === i),
    goodBody: good,
    heal: () => {
      healed = true;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
