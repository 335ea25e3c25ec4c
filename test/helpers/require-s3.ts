import assert from 'node:assert/strict';
import { s3Available } from './s3.js';

/**
 * Integration tests need the real S3 server. Under `npm test` (AAP_REQUIRE_S3=1) its absence is a
 * failure, never a skip; run directly without S3_ENDPOINT they are skipped with a reason.
 */
export function s3Skip(): false | string {
  if (s3Available()) return false;
  if (process.env['AAP_REQUIRE_S3'] === '1') assert.fail('S3_ENDPOINT is not set: run the suite with `npm test`, which starts radosgw');
  return 'S3_ENDPOINT not set (npm test starts radosgw)';
}
