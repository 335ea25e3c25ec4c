/**
 * An S3 endpoint that accepts every upload and keeps nothing: the capacity scenario's sink, so
 * the pipeline is measured without a storage server's CPU on this 2-core machine.
 *
 * It answers what the SDK's `Upload` and the sink send: CreateMultipartUpload, UploadPart,
 * CompleteMultipartUpload, PutObject, ListMultipartUploads (always empty) and
 * AbortMultipartUpload. Bodies are read and counted, never stored.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DiscardS3Stats {
  /** Objects completed (PutObject or CompleteMultipartUpload). */
  objects: number;
  /** Bytes of completed objects. */
  bytes: number;
  /** Multipart parts received. */
  parts: number;
  /** Requests by operation. */
  requests: Record<string, number>;
}

export interface DiscardS3 {
  url: string;
  stats: DiscardS3Stats;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Starts the endpoint on 127.0.0.1 (a free port). Path-style addressing: `/bucket/key`. */
export async function startDiscardS3(): Promise<DiscardS3> {
  const stats: DiscardS3Stats = { objects: 0, bytes: 0, parts: 0, requests: {} };
  /** uploadId → bytes received so far, per part number (a retried part replaces its earlier copy). */
  const uploads = new Map<string, { key: string; parts: Map<number, number> }>();
  let nextId = 1;

  const handle = (req: IncomingMessage, res: ServerResponse, bytes: number): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    const q = url.searchParams;
    const [, bucket = '', ...rest] = decodeURIComponent(url.pathname).split('/');
    const key = rest.join('/');
    const op = (name: string): void => {
      stats.requests[name] = (stats.requests[name] ?? 0) + 1;
    };
    const etag = `"${(nextId++).toString(16).padStart(32, '0')}"`;
    if (req.method === 'POST' && q.has('uploads')) {
      op('CreateMultipartUpload');
      const id = `u${nextId++}`;
      uploads.set(id, { key, parts: new Map() });
      send(res, 200, `<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>${esc(bucket)}</Bucket><Key>${esc(key)}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`);
    } else if (req.method === 'PUT' && q.has('partNumber') && q.has('uploadId')) {
      op('UploadPart');
      const u = uploads.get(q.get('uploadId')!);
      if (u === undefined) return send(res, 404, '<Error><Code>NoSuchUpload</Code></Error>');
      u.parts.set(Number(q.get('partNumber')), bytes);
      stats.parts++;
      send(res, 200, '', { etag });
    } else if (req.method === 'POST' && q.has('uploadId')) {
      op('CompleteMultipartUpload');
      const u = uploads.get(q.get('uploadId')!);
      if (u === undefined) return send(res, 404, '<Error><Code>NoSuchUpload</Code></Error>');
      uploads.delete(q.get('uploadId')!);
      let total = 0;
      for (const n of u.parts.values()) total += n;
      stats.objects++;
      stats.bytes += total;
      send(res, 200, `<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><Bucket>${esc(bucket)}</Bucket><Key>${esc(key)}</Key><ETag>${etag}</ETag></CompleteMultipartUploadResult>`);
    } else if (req.method === 'PUT') {
      op('PutObject');
      stats.objects++;
      stats.bytes += bytes;
      send(res, 200, '', { etag });
    } else if (req.method === 'GET' && q.has('uploads')) {
      op('ListMultipartUploads');
      send(res, 200, `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>${esc(bucket)}</Bucket><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>`);
    } else if (req.method === 'DELETE' && q.has('uploadId')) {
      op('AbortMultipartUpload');
      uploads.delete(q.get('uploadId')!);
      send(res, 204);
    } else {
      op('Other');
      send(res, 501, `<Error><Code>NotImplemented</Code><Message>${esc(`${req.method} ${url.pathname}`)}</Message></Error>`);
    }
  };

  const server: Server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    req.on('end', () => handle(req, res, bytes));
    req.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
