#!/usr/bin/env node
import { describeError } from './errors.js';
import { main } from './cli.js';

// The AWS SDK warns on every start under Node 20 that its releases after January 2027 need
// Node 22. That is about upgrades, not this run (the README says it once); the SDK's own switch
// turns it off unless the user set it.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

/**
 * Exits once the command is done. Normally nothing is left and the process ends by itself; but
 * after a stop that aborted uploads to an unreachable S3, the SDK's requests (which lib-storage
 * cannot cancel) would keep the process alive until their own timeouts. The checkpoint is
 * already saved then, so a short grace is all they get.
 */
function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 1000).unref();
}

main(process.argv.slice(2)).then(finish, (err: unknown) => {
  process.stderr.write(`atlassian-audit-pipeline: ${describeError(err)}\n`);
  finish(1);
});
