#!/usr/bin/env node
import { describeError } from './errors.js';
import { main } from './cli.js';

// The AWS SDK warns on every start under Node 20 that its releases after January 2027 need
// Node 22. That is about upgrades, not this run (the README says it once); the SDK's own switch
// turns it off unless the user set it.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`atlassian-audit-pipeline: ${describeError(err)}\n`);
    process.exitCode = 1;
  },
);
