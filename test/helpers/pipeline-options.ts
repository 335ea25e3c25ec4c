import { join } from 'node:path';
import type { PipelineOptions } from '../../src/pipeline.js';

/**
 * Options for a library run against `api` (the simulator or a scripted API) from the start of its
 * stream into `dir/out`, with its state in `dir/state.json` and a fast backoff; `over` wins.
 */
export function localRunOptions(api: { url: string; orgId: string; apiKey: string }, dir: string, over: Partial<PipelineOptions> = {}): PipelineOptions {
  return {
    orgId: api.orgId,
    apiKey: api.apiKey,
    apiUrl: api.url,
    from: 0,
    statePath: join(dir, 'state.json'),
    output: { kind: 'local', dir: join(dir, 'out') },
    backoffBaseMs: 1,
    backoffCapMs: 5,
    ...over,
  };
}
