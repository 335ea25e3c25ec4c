#!/usr/bin/env bash
# A simple end-to-end measurement (the full bench suite is separate work): one `run --once` of N
# simulated events into a fresh local radosgw. The simulator runs in its own process so its CPU
# is not charged to the pipeline; radosgw and zstd share the same machine.
#
#   bash bench/once-radosgw.sh [N]      (default 100000; needs `npm run build` and root for Ceph)
#
# Prints wall time, records/s (wall, including process start-up), CPU seconds and peak RSS.
set -euo pipefail
N=${1:-100000}
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/aap-bench.XXXXXX)
SIM_PID=
cleanup() {
  [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null || true
  scripts/s3-server.sh stop "$WORK/s3" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }

scripts/s3-server.sh start "$WORK/s3" "$(free_port)" >/dev/null
set -a; source "$WORK/s3/env"; set +a
SIM_PORT=$(free_port)
node dist/src/simulator/main.js --port "$SIM_PORT" --options "{\"events\":$N,\"seed\":5}" > "$WORK/sim.json" &
SIM_PID=$!
for _ in $(seq 1 240); do grep -q '"url"' "$WORK/sim.json" 2>/dev/null && break; sleep 0.5; done
field() { node -e "console.log(JSON.parse(require('fs').readFileSync('$WORK/sim.json','utf8').split('\n')[0]).$1)"; }
ORG=$(field orgId)
KEY=$(field apiKey)
BUCKET=bench-$RANDOM
AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true node -e "
const {S3Client,CreateBucketCommand}=require('@aws-sdk/client-s3');
new S3Client({endpoint:process.env.S3_ENDPOINT,forcePathStyle:true,region:'us-east-1'}).send(new CreateBucketCommand({Bucket:'$BUCKET'}))"

start=$(date +%s.%N)
ATLASSIAN_API_KEY=$KEY /usr/bin/time -v node dist/src/bin.js run --once --org-id "$ORG" \
  --api-url "http://127.0.0.1:$SIM_PORT" --from 2000-01-01 --bucket "$BUCKET" --s3-endpoint "$S3_ENDPOINT" \
  --s3-force-path-style --state "$WORK/state.json" --metrics-port 0 --rate-limit 0 --log-level warn > "$WORK/summary" 2> "$WORK/time"
end=$(date +%s.%N)
cat "$WORK/summary"
records=$(node -e "const s=require('fs').readFileSync('$WORK/summary','utf8');const g=k=>+s.match(new RegExp(k+':\\\\s+(\\\\d+)'))[1];console.log(g('events written')+g('quarantined')+g('duplicates'))")
rss=$(awk '/Maximum resident/ {print $6}' "$WORK/time")
cpu=$(awk '/User time/ {u=$4} /System time/ {s=$4} END {print u+s}' "$WORK/time")
awk -v a="$start" -v b="$end" -v n="$records" -v rss="$rss" -v cpu="$cpu" -v node="$(node --version)" -v cores="$(nproc)" \
  'BEGIN { printf "node %s, %d cores: %d records in %.2f s wall = %.0f records/s; Node CPU %.2f s; peak RSS %.0f MB\n", node, cores, n, b - a, n / (b - a), cpu, rss / 1024 }'
