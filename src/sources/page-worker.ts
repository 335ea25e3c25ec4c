/** The worker thread of page-workers.ts: processes each page it is sent and posts the result back. */
import { parentPort } from 'node:worker_threads';
import { processPage } from './page-process.js';
import type { PageReply, PageRequest } from './page-workers.js';

const port = parentPort;
if (port === null) throw new Error('page-worker.js runs only as a worker thread (see page-workers.ts)');

port.on('message', (m: PageRequest) => {
  let reply: PageReply;
  try {
    const r = processPage(m.body, m.options);
    if (typeof r === 'string') {
      reply = { seq: m.seq, reason: r };
      port.postMessage(reply);
      return;
    }
    reply = { seq: m.seq, page: r };
    const e = r.events;
    port.postMessage(reply, [e.bytes.buffer as ArrayBuffer, e.ends.buffer as ArrayBuffer, e.timeMs.buffer as ArrayBuffer, r.hour.buffer as ArrayBuffer, r.processedAtMs.buffer as ArrayBuffer, r.valid.buffer as ArrayBuffer]);
  } catch (err) {
    reply = { seq: m.seq, reason: `page processing failed: ${(err as Error).message}` };
    port.postMessage(reply);
  }
});
