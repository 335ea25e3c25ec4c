/**
 * Runs the simulator in a process of its own, so that a benchmark's pipeline does not share its
 * main thread with the server:
 *
 *   node dist/src/simulator/main.js [--port 0] [--host 127.0.0.1] [--options '{"events":1000000}']
 *
 * `--options` is a JSON {@link SimulatorOptions}. When listening it prints one JSON line on
 * stdout: `{"url","orgId","apiKey","summary"}`. SIGINT/SIGTERM close the server and exit 0.
 *
 * Started with `child_process.fork`, it also answers IPC messages `{id, op, args}` with
 * `{id, result}` or `{id, error}`. Ops: `append` (args `[n, opts?]`), `summary`, `stats`,
 * `resetStats`, `setFaults` (`[faults]`), `failNextRequests` (`[kinds]`), `invalidateCursors`,
 * `truth` (result `{valid: [id, event][], invalid, duplicates, totalRecords}`: large for big
 * logs) and `close` (closes and exits).
 */
import { parseArgs } from 'node:util';
import { createSimulator } from './index.js';
import type { FaultKind, FaultOptions, SimulatorOptions } from './index.js';

interface Message {
  id: number;
  op: string;
  args?: unknown[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      options: { type: 'string', default: '{}' },
    },
  });
  const options = JSON.parse(values.options ?? '{}') as SimulatorOptions;
  const sim = createSimulator(options);
  const url = await sim.start(Number(values.port), values.host);
  process.stdout.write(`${JSON.stringify({ url, orgId: sim.orgId, apiKey: sim.apiKey, summary: sim.summary() })}\n`);

  let closing = false;
  const shutdown = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    await sim.close();
    process.disconnect?.();
    process.exitCode = 0;
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());

  if (process.send === undefined) return;
  const reply = (m: unknown): void => {
    process.send?.(m);
  };
  process.on('message', (raw: unknown) => {
    const msg = raw as Message;
    const args = msg.args ?? [];
    try {
      let result: unknown;
      switch (msg.op) {
        case 'append':
          sim.append(args[0] as number, args[1] as { late?: boolean } | undefined);
          result = sim.summary();
          break;
        case 'summary':
          result = sim.summary();
          break;
        case 'stats':
          result = sim.stats;
          break;
        case 'resetStats':
          sim.resetStats();
          break;
        case 'setFaults':
          sim.setFaults(args[0] as FaultOptions);
          break;
        case 'failNextRequests':
          sim.failNextRequests(args[0] as FaultKind[]);
          break;
        case 'invalidateCursors':
          sim.invalidateCursors();
          break;
        case 'truth': {
          const t = sim.truth();
          result = { valid: [...t.valid], invalid: t.invalid, duplicates: t.duplicates, totalRecords: t.totalRecords };
          break;
        }
        case 'close':
          reply({ id: msg.id, result: null });
          void shutdown();
          return;
        default:
          throw new Error(`unknown op ${msg.op}`);
      }
      reply({ id: msg.id, result: result ?? null });
    } catch (err) {
      reply({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
    }
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`simulator: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
