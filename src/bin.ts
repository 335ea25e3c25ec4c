#!/usr/bin/env node
import { describeError } from './errors.js';
import { main } from './cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`atlassian-audit-pipeline: ${describeError(err)}\n`);
    process.exitCode = 1;
  },
);
