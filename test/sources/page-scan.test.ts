import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attachRawText, dataElementOffsets, MAX_RAW_DEPTH } from '../../src/sources/page-scan.js';
import { RAW_TEXT, type WithRawText } from '../../src/types.js';
import { parsePage } from '../../src/sources/atlassian-events.js';
import { auditStream } from '../../bench/lib/audit-stream.js';

/** The elements' texts as the scan cuts them. */
function cut(text: string): string[] | undefined {
  const o = dataElementOffsets(text);
  if (o === undefined) return undefined;
  const out: string[] = [];
  for (let i = 0; i < o.length; i += 2) out.push(o[i + 1]! < 0 ? '<deep>' : text.slice(o[i]!, o[i + 1]!));
  return out;
}

test('the scan cuts each element of data exactly, whatever the strings hold and wherever data sits', () => {
  const tricky = [
    { id: 'a', s: 'quote " backslash \\ both \\" end\\\\', b: '[{]}', u: 'é\u2028😀', e: '' },
    [1, [2, [3]], { k: ']' }],
    'a string, with a comma',
    -1.5e3,
    true,
    null,
    {},
    [],
  ];
  const compact = JSON.stringify({ meta: { next: 'c', arr: [[1], { data: [9] }] }, links: { self: 'x' }, data: tricky, after: [1, 2] });
  assert.deepEqual(cut(compact), tricky.map((v) => JSON.stringify(v)));
  // Pretty-printed: the cuts are trimmed of whitespace and still parse to the elements.
  const pretty = JSON.stringify({ data: tricky, meta: {} }, null, 2);
  assert.deepEqual(cut(pretty)!.map((t) => JSON.parse(t) as unknown), tricky);
  assert.deepEqual(cut('{"data":[]}'), []);
  assert.deepEqual(cut('{ "data" : [ 1 , {"a":"b"} ] }'), ['1', '{"a":"b"}']);
  // Duplicate keys: JSON.parse keeps the last; so does the scan.
  assert.deepEqual(cut('{"data":[1,2],"data":[{"x":3}]}'), ['{"x":3}']);
  // A top-level key with an escape might decode to "data": the scan gives up.
  assert.equal(cut('{"data":[1],"d\\u0061ta":[2]}'), undefined);
  assert.equal(cut('{"meta":{}}'), undefined);
  // A "data" key below the top level is not the page's data.
  assert.equal(cut('{"meta":{"data":[1]}}'), undefined);
});

test('an element nested deeper than MAX_RAW_DEPTH gets no text, so the sink serialises it (and quarantines it if it cannot)', () => {
  const deep = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;
  const text = `{"data":[{"a":${deep(MAX_RAW_DEPTH - 1)}},{"a":${deep(MAX_RAW_DEPTH)}},{"b":1}]}`;
  const c = cut(text)!;
  assert.equal(c.length, 3);
  assert.equal(c[0], `{"a":${deep(MAX_RAW_DEPTH - 1)}}`);
  assert.equal(c[1], '<deep>');
  assert.equal(c[2], '{"b":1}');
  const records = (JSON.parse(text) as { data: unknown[] }).data;
  assert.equal(attachRawText(text, records), 2);
  assert.equal((records[1] as WithRawText)[RAW_TEXT], undefined);
});

test('attachRawText marks objects with their text as received, invisibly, and only when it is one line', () => {
  const text = '{"data":[{"id":"1","name":"caf\\u00e9 \\/x"},\n{\n"id":"2"},3,{"id":"4"}],"meta":{"next":null}}';
  const page = parsePage(text);
  assert.ok(typeof page !== 'string');
  const [a, b, three, d] = page.records as WithRawText[];
  // Escapes are kept as the API wrote them; the line parses to the same event.
  assert.equal(a![RAW_TEXT], '{"id":"1","name":"caf\\u00e9 \\/x"}');
  assert.deepEqual(JSON.parse(a![RAW_TEXT]!), a);
  // Line breaks between tokens: no text, the sink serialises it.
  assert.equal(b![RAW_TEXT], undefined);
  assert.equal(three, 3);
  assert.equal(d![RAW_TEXT], '{"id":"4"}');
  // Not enumerable: comparisons, spreads and JSON.stringify do not see it.
  assert.deepEqual(Object.getOwnPropertySymbols(a!).map((s) => Object.getOwnPropertyDescriptor(a, s)!.enumerable), [false]);
  assert.deepEqual({ ...a }, { id: '1', name: 'café /x' });
  assert.equal(JSON.stringify(a), '{"id":"1","name":"café /x"}');
  // A count that does not match the parsed array: nothing is marked.
  const records = [{ x: 1 }];
  assert.equal(attachRawText('{"data":[{"x":1},{"x":2}]}', records), 0);
  assert.equal((records[0] as WithRawText)[RAW_TEXT], undefined);
});

test('on the simulator\'s pages every record\'s text parses to the record, and every one is marked', () => {
  const stream = auditStream(3000, 'page-scan');
  let marked = 0;
  for (const text of stream.pages) {
    const page = parsePage(text);
    assert.ok(typeof page !== 'string');
    for (const r of page.records) {
      if (typeof r !== 'object' || r === null || Array.isArray(r)) continue;
      const raw = (r as WithRawText)[RAW_TEXT];
      assert.notEqual(raw, undefined);
      assert.deepEqual(JSON.parse(raw!), r);
      marked++;
    }
  }
  assert.ok(marked >= 2900, `only ${marked} marked`);
});
