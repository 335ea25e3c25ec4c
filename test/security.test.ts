import { test } from 'node:test';
import { batchRecords } from './helpers/batches.js';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseRunConfig } from '../src/cli.js';
import { ConfigError, ForeignLinkError } from '../src/errors.js';
import { createAtlassianEventsSource, parsePage } from '../src/sources/atlassian-events.js';
import type { Batch } from '../src/types.js';

const KEY = 'sekret-KEY-0123456789abcdef';

interface Served {
  url: string;
  requests: Array<{ url: string; authorization: string | undefined }>;
  close(): Promise<void>;
}

async function serve(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<Served> {
  const requests: Served['requests'] = [];
  const server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', authorization: req.headers.authorization });
    handler(req, res, requests.length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    requests,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function page(data: unknown[], next: string | null, links: Record<string, unknown> = {}): string {
  return JSON.stringify({ data, meta: { next, page_size: data.length }, links });
}

async function drain(src: AsyncIterable<Batch>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const b of src) out.push(...batchRecords(b));
  return out;
}

const base = { orgId: 'o', apiKey: KEY, start: { from: 0, skip: 0 }, rateLimit: false as const, backoffBaseMs: 1, backoffCapMs: 2 };

test('a links.next on another host is never followed and the walk goes on with meta.next on --api-url; a meta.next URL on another host stops at once with ForeignLinkError (exit 10); the key never reaches that host', async () => {
  const elsewhere = await serve((_req, res) => res.end(page([], null)));
  // Regression: a gateway's page (links.next naming its upstream host, meta.next a cursor) was
  // refused as malformed, retried 8 times (about 3 minutes), and the run ended with exit 6.
  const gatewayLike = await serve((req, res) => {
    const cursor = new URL(req.url ?? '/', 'http://x').searchParams.get('cursor');
    if (cursor === null) res.end(page([{ id: 'a' }], 'c2', { next: `${elsewhere.url}/admin/v1/orgs/o/events-stream?cursor=c2` }));
    else res.end(page([{ id: 'b' }], null, { next: 'HTTPS://user@evil.invalid:443/admin/v1/orgs/o/events-stream?cursor=c3' }));
  });
  try {
    assert.deepEqual(await drain(createAtlassianEventsSource({ ...base, apiUrl: gatewayLike.url })), [{ id: 'a' }, { id: 'b' }]);
    assert.deepEqual(gatewayLike.requests.map((r) => new URL(r.url, 'http://x').searchParams.get('cursor')), [null, 'c2']);
    assert.ok(gatewayLike.requests.every((r) => r.authorization === `Bearer ${KEY}`));
  } finally {
    await gatewayLike.close();
  }
  // The only way forward is a URL on another host: a configuration or security problem, not a
  // transient one, so no retry.
  for (const hostile of [`${elsewhere.url}/admin/v1/orgs/o/events-stream?cursor=c2`, 'HTTPS://user@evil.invalid:443/admin/v1/orgs/o/events-stream?cursor=c2']) {
    const api = await serve((_req, res, n) => res.end(page([{ id: `e${n}` }], hostile)));
    try {
      await assert.rejects(drain(createAtlassianEventsSource({ ...base, apiUrl: api.url, maxRetries: 2 })), (err: unknown) => {
        assert.ok(err instanceof ForeignLinkError, String(err));
        assert.equal(err.exitCode, 10);
        assert.match(err.message, new RegExp(`gave the next page as a URL on ${new URL(hostile).origin.replace(/[.]/g, '\\.')} \\("meta\\.next"\\): the key is only ever sent to --api-url`));
        assert.ok(!err.message.includes(KEY));
        return true;
      });
      assert.equal(api.requests.length, 1, 'stopped at once, without retries');
    } finally {
      await api.close();
    }
  }
  assert.equal(elsewhere.requests.length, 0, 'a request went to the other host');
  await elsewhere.close();
});

test('pagination links on the configured origin are fine, and a same-origin URL in meta.next yields its cursor', async () => {
  const api = await serve((req, res) => {
    const cursor = new URL(req.url ?? '/', 'http://x').searchParams.get('cursor');
    const self = `http://${req.headers.host}/admin/v1/orgs/o/events-stream`;
    if (cursor === null) res.end(page([{ id: 'a' }], `${self}?cursor=c2&limit=500`, { next: `${self}?cursor=c2`, self }));
    else if (cursor === 'c2') res.end(page([{ id: 'b' }], 'c3', { next: '/admin/v1/orgs/o/events-stream?cursor=c3' }));
    else res.end(page([], null));
  });
  try {
    const records = await drain(createAtlassianEventsSource({ ...base, apiUrl: api.url }));
    assert.deepEqual(records, [{ id: 'a' }, { id: 'b' }]);
    assert.deepEqual(api.requests.map((r) => new URL(r.url, 'http://x').searchParams.get('cursor')), [null, 'c2', 'c3']);
    // An opaque cursor that merely contains a colon, or is base64 starting with "//", is a cursor.
    assert.deepEqual(parsePage(page([], 'page:2'), api.url), { records: [], next: 'page:2' });
    assert.deepEqual(parsePage(page([], '//8AAAEAAABhYmM='), api.url), { records: [], next: '//8AAAEAAABhYmM=' });
    // Links to Atlassian's own API are fine behind a gateway (with or without a trailing dot).
    const viaGateway = page([], 'c9', { next: 'https://api.atlassian.com./admin/v1/orgs/o/events-stream?cursor=c9' });
    assert.deepEqual(parsePage(viaGateway, api.url), { records: [], next: 'c9' });
  } finally {
    await api.close();
  }
});

test('a redirect is never followed: ForeignLinkError (exit 10) naming the target, the key not sent there', async () => {
  const elsewhere = await serve((_req, res) => res.end(page([{ id: 'stolen' }], null)));
  const api = await serve((_req, res) => res.writeHead(302, { location: `${elsewhere.url}/collect` }).end());
  try {
    await assert.rejects(drain(createAtlassianEventsSource({ ...base, apiUrl: api.url })), (err: unknown) => {
      assert.ok(err instanceof ForeignLinkError, String(err));
      assert.equal(err.exitCode, 10);
      assert.match(err.message, new RegExp(`HTTP 302, a redirect to ${elsewhere.url}: redirects are never followed`));
      return true;
    });
    assert.equal(elsewhere.requests.length, 0);
  } finally {
    await api.close();
    await elsewhere.close();
  }
});

test('the key comes only from the environment or a file; TLS checks cannot be turned off; plain http only to this machine', () => {
  const env = { ATLASSIAN_API_KEY: KEY };
  for (const argv of [['--org-id', 'o', `--api-key=${KEY}`], ['--org-id', 'o', '--api-key', KEY], ['--org-id', 'o', '--token', KEY]]) {
    assert.throws(() => parseRunConfig(argv, env), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /never taken from the command line.*ATLASSIAN_API_KEY.*--api-key-file/);
      assert.ok(!err.message.includes(KEY));
      return true;
    });
  }
  // A stray argument (a key pasted in the wrong place) is not echoed back.
  assert.throws(() => parseRunConfig(['--org-id', 'o', KEY], env), (err: unknown) => err instanceof ConfigError && !err.message.includes(KEY));
  assert.throws(() => parseRunConfig(['--org-id', 'o'], { ...env, NODE_TLS_REJECT_UNAUTHORIZED: '0' }), /NODE_TLS_REJECT_UNAUTHORIZED=0 would turn off TLS/);
  assert.throws(() => parseRunConfig(['--org-id', 'o', '--api-url', 'http://api.example.com'], env), /unencrypted: use https/);
  for (const ok of ['https://api.atlassian.com', 'http://127.0.0.1:8080', 'http://localhost:1', 'http://[::1]:9']) {
    assert.equal(parseRunConfig(['--org-id', 'o', '--api-url', ok], env).pipeline.apiUrl, ok);
  }
  assert.equal(parseRunConfig(['--org-id', 'o'], env).pipeline.apiKey, KEY);
  // A gateway's path prefix is kept; credentials, a query or a fragment are refused, never echoed.
  assert.equal(parseRunConfig(['--org-id', 'o', '--api-url', 'https://gateway.example.com/atlassian/'], env).pipeline.apiUrl, 'https://gateway.example.com/atlassian/');
  assert.throws(() => parseRunConfig(['--org-id', 'o', '--api-url', 'https://user:p4ssw0rd-secret@api.example.com'], env), (err: unknown) =>
    err instanceof ConfigError && /must not hold a user name or password/.test(err.message) && !err.message.includes('p4ssw0rd-secret'));
  assert.throws(() => parseRunConfig(['--org-id', 'o', '--api-url', 'https://api.example.com/?limit=5'], env), /without a query or fragment/);
});
