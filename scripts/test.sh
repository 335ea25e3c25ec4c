#!/usr/bin/env bash
# The whole test suite: build, start a real S3 server (single-node radosgw) unless S3_ENDPOINT is
# already set, run every test under node:test, stop the server. Installs the Ceph packages if they
# are missing (needs root; see scripts/s3-server.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

npm run build --silent

if [[ -z "${S3_ENDPOINT:-}" ]]; then
  S3_DIR=$(mktemp -d /tmp/aap-s3.XXXXXX)
  cleanup() { scripts/s3-server.sh stop "$S3_DIR" >/dev/null 2>&1 || true; rm -rf "$S3_DIR"; }
  trap cleanup EXIT
  port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
  scripts/s3-server.sh start "$S3_DIR" "$port"
  # shellcheck disable=SC1091
  source "$S3_DIR/env"
  export S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
fi
export AAP_REQUIRE_S3=1

# Test files run one at a time: the crash and pipeline tests spawn CLIs and share one radosgw
# on a 2-core machine. --test-force-exit: a test that fails before it closes what it opened (a
# server, a worker thread) must not keep its file's process, and so the suite, waiting for ever.
node --no-warnings --test --test-concurrency=1 --test-force-exit dist/test/
