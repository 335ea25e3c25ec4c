/**
 * validate-stdin: audit events as JSON lines on stdin → the valid ones, with `attributes.time`
 * in canonical UTC form, as JSON lines on stdout. Every line that is not a valid event goes to
 * stderr as one JSON line, `{"reason": "...", "record": <as received>}`, and the run goes on.
 *
 *   node dist/examples/validate-stdin.js < events.jsonl > valid.jsonl 2> quarantined.jsonl
 *
 * Exit code 0 when the input was read to its end (however many lines were quarantined), 1 when
 * a stream failed (stdout closed early, a line over 16 MiB).
 *
 * The stages take loose chunks here (one line each), not the pipeline's Batches: validate parses
 * a string as JSON text and answers with the event or with a quarantine chunk; normalize-time
 * passes quarantine chunks through; quarantine-route takes them out of the stream.
 */
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import split2 from 'split2';
import { createNormalizeTime, createQuarantineRoute, createValidate, describeError, quarantineLine, TOO_DEEP, truncateDepth } from 'atlassian-audit-pipeline';

/**
 * Each event as one JSON line. Only events reach it: quarantine-route took everything else. An
 * event nested too deeply for JSON.stringify (JSON.parse reads any depth) is quarantined too, as
 * a truncated copy, rather than failing the run.
 */
function toJsonLines(): Transform {
  return new Transform({
    writableObjectMode: true,
    transform(event: unknown, _enc, cb) {
      let line: string;
      try {
        line = `${JSON.stringify(event)}\n`;
      } catch {
        process.stderr.write(quarantineLine({ reason: TOO_DEEP, record: truncateDepth(event) }));
        cb();
        return;
      }
      cb(null, line);
    },
  });
}

try {
  await pipeline(
    process.stdin,
    // One string per line; blank lines are dropped (returning undefined skips a line). A line
    // longer than maxLength fails the run instead of filling memory.
    split2((line: string) => (line.trim() === '' ? undefined : line), { maxLength: 16 * 1024 * 1024 }),
    createValidate(),
    createNormalizeTime(),
    // A byte stream gets one JSON line per refused record. Writes wait for 'drain', so a slow
    // reader of stderr slows the run down rather than letting lines pile up in memory.
    createQuarantineRoute({ to: process.stderr }),
    toJsonLines(),
    process.stdout,
  );
} catch (err) {
  process.stderr.write(`validate-stdin: ${describeError(err)}\n`);
  process.exitCode = 1;
}
