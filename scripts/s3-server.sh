#!/usr/bin/env bash
# A real S3 server for integration tests: single-node Ceph radosgw on an in-memory OSD.
#
#   scripts/s3-server.sh install            install the Ceph packages if missing (needs root)
#   scripts/s3-server.sh start DIR [PORT]   start mon + memstore OSD + radosgw inside DIR,
#                                           S3 on http://127.0.0.1:PORT (default 7480),
#                                           then write DIR/env (source it)
#   scripts/s3-server.sh stop DIR           stop the daemons started from DIR
#
# Everything (config, data, logs, pid files, admin sockets) lives under DIR; nothing is
# written to /etc/ceph or /var/lib/ceph. The caller removes DIR after `stop`.
#
# After `start`, DIR/env holds export lines for S3_ENDPOINT, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY and AWS_REGION, and S3_SSE_KMS_KEY_ID: a key id the server accepts in
# `x-amz-server-side-encryption-aws-kms-key-id` (SSE-KMS through Ceph's "testing" KMS backend).
# Use path-style addressing and set the SDK's
# requestChecksumCalculation/responseChecksumValidation to WHEN_REQUIRED.
#
# Warm-up: the first write to a fresh radosgw takes ~4 s (it creates its data pools then).
# This script does not do it (it would need SigV4); test/helpers/s3.ts createTestBucket()
# does a tiny put+delete on its first call in a process.
#
# Environment overrides:
#   S3_SERVER_TIMEOUT   seconds to wait for readiness (default 120)
#   S3_SERVER_MON_PORT  first port to try for the monitor (default 3300; v2=P, v1=P+1)
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd radosgw ceph-common)
ACCESS_KEY=TESTACCESSKEY0000000
SECRET_KEY=testsecretkey000000000000000000000000000
REGION=us-east-1
# KMS keys of the "testing" SSE-KMS backend (key id=base64 of 32 bytes): see ceph.conf below.
SSE_KMS_TEST_KEY_ID=aap-test-key-1
SSE_KMS_TEST_KEYS="aap-test-key-1=WpmsipD0iBhQ7CuTfiIh9wcpVbpvY1KXHb1Lm/6+pUg= aap-test-key-2=e32UJuTEXwM/0BRZKJ8VvJd+Dxlsed44s0DIQU7gP3I="

die() { echo "s3-server: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 install | start DIR [PORT] | stop DIR" >&2
  exit 2
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cmd_install() {
  local missing=0 tool
  for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
    command -v "$tool" >/dev/null 2>&1 || missing=1
  done
  [[ $missing == 0 ]] && return 0
  if [[ $(id -u) != 0 ]]; then
    die "Ceph is not installed and this is not root: run 'sudo apt-get install -y --no-install-recommends ${PACKAGES[*]}'"
  fi
  command -v apt-get >/dev/null 2>&1 || die "Ceph is not installed and apt-get is missing: install ${PACKAGES[*]}"
  echo "s3-server: installing ${PACKAGES[*]} ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null
  apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${PACKAGES[@]}" </dev/null >/dev/null
  for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
    command -v "$tool" >/dev/null 2>&1 || die "installed ${PACKAGES[*]} but '$tool' is still not on PATH"
  done
}

# True if something listens on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if http://127.0.0.1:$1/ answers with any HTTP status line.
http_answers() {
  if command -v curl >/dev/null 2>&1; then
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null) || true
    [[ -n $code && $code != 000 ]]
  else
    local line
    # shellcheck disable=SC2016 # $1 expands in the inner shell
    line=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && head -n1 <&3' _ "$1" 2>/dev/null) || true
    [[ $line == HTTP/* ]]
  fi
}

# PIDs of processes whose command line has "-c $CONF" (i.e. started from this DIR).
pids_for_conf() {
  local conf=$1 p
  for p in /proc/[0-9]*; do
    [[ -r $p/cmdline ]] || continue
    if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$conf"; then
      echo "${p#/proc/}"
    fi
  done
}

# True if PID $1 is alive and was started with config $2.
pid_matches() {
  [[ -r /proc/$1/cmdline ]] && tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$2"
}

show_logs() {
  local dir=$1 f
  for f in "$dir"/log/client.rgw.a.log "$dir"/log/osd.0.log "$dir"/log/mon.a.log "$dir"/log/*.out; do
    [[ -s $f ]] || continue
    echo "----- tail -n 30 $f" >&2
    tail -n 30 "$f" >&2 || true
  done
}

cmd_stop() {
  local dir=$1
  [[ -d $dir ]] || die "stop: no such directory: $dir"
  dir=$(cd "$dir" && pwd)
  local conf=$dir/ceph.conf name pid pids=() deadline
  # SIGTERM radosgw, then the OSD, then the monitor (all data is throw-away: the OSD is
  # in-memory and exits at once with osd_fast_shutdown, without dumping memstore to disk).
  for name in client.rgw.a osd.0 mon.a; do
    if [[ -s $dir/run/$name.pid ]]; then
      pid=$(<"$dir/run/$name.pid")
      if [[ $pid =~ ^[0-9]+$ ]] && pid_matches "$pid" "$conf"; then
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
      fi
    fi
  done
  # Anything else started with this DIR's config (a daemon that died before writing its
  # pid file, a stuck radosgw-admin or ceph command, ...).
  for pid in $(pids_for_conf "$conf"); do
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  deadline=$((SECONDS + 10))
  for pid in ${pids[@]+"${pids[@]}"}; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  done
  for pid in $(pids_for_conf "$conf"); do
    echo "s3-server: pid $pid did not exit after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + 10))
  while [[ -n $(pids_for_conf "$conf") ]] && ((SECONDS < deadline)); do sleep 0.2; done
  [[ -z $(pids_for_conf "$conf") ]] || die "stop: processes still running for $dir: $(pids_for_conf "$conf" | tr '\n' ' ')"
}

cmd_start() {
  local dir=$1 port=${2:-7480}
  [[ $port =~ ^[0-9]+$ ]] || die "start: PORT must be a number, got '$port'"
  local t0 timeout=${S3_SERVER_TIMEOUT:-120}
  t0=$(now)
  cmd_install

  [[ -e $dir/ceph.conf ]] && die "start: $dir already holds a cluster (ceph.conf exists); use a new DIR"
  port_in_use "$port" && die "start: port 127.0.0.1:$port is already in use"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ $dir == *[[:space:]]* ]] && die "start: DIR must not contain whitespace: $dir"
  local conf=$dir/ceph.conf

  # Pick two free ports for the monitor (msgr v2 and v1), so servers in different DIRs
  # can run side by side (with different PORTs).
  local mon_port=${S3_SERVER_MON_PORT:-3300}
  while port_in_use "$mon_port" || port_in_use $((mon_port + 1)); do
    mon_port=$((mon_port + 2))
    ((mon_port < 3400)) || die "start: no free monitor ports in 3300-3400"
  done
  local mon_v1=$((mon_port + 1))

  mkdir -p "$dir"/{run,log,mon,osd,rgw,crash}
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)

  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$mon_port,v1:127.0.0.1:$mon_v1]
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_bind_ipv4 = true
ms_bind_ipv6 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
log_to_file = true
log_to_stderr = false
err_to_stderr = false
mon_cluster_log_file = $dir/log/cluster.log
crash_dir = $dir/crash
keyring = $dir/\$name.keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_crit = 1
mon_data_avail_warn = 2
# Commit monitor map changes (pool creation, ...) quickly: radosgw creates ~7 pools,
# each one a monitor round; the 1 s default makes start-up and the first upload slow.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[mon]
mon_data = $dir/mon/\$cluster-\$id

[osd]
osd_objectstore = memstore
osd_data = $dir/osd/\$cluster-\$id
osd_journal = $dir/osd/\$cluster-\$id/journal
# memstore only uses memory for what is stored; this is just the reported capacity.
memstore_device_bytes = 4294967296

[client]
# With auth off, radosgw (and radosgw-admin) hang at start-up in the default
# "secure crc" mode.
ms_mon_client_mode = crc

[client.rgw.a]
rgw_data = $dir/rgw/\$cluster-\$id
rgw_frontends = beast endpoint=127.0.0.1:$port
rgw_thread_pool_size = 64
# SSE-KMS for the --sse aws:kms tests: the "testing" KMS backend takes its keys from this
# option (key id = base64 of 32 random bytes; throw-away test keys, never use them elsewhere).
# Over plain HTTP radosgw refuses every SSE header unless rgw_crypt_require_ssl is off.
# SSE-S3 (x-amz-server-side-encryption: AES256) needs Ceph 17+ with a Vault backend; Pacific
# (16.x) answers it with 400 InvalidArgument.
rgw_crypt_require_ssl = false
rgw_crypt_s3_kms_backend = testing
rgw_crypt_s3_kms_encryption_keys = $SSE_KMS_TEST_KEYS
EOF

  local c=(-c "$conf")
  fail() {
    echo "s3-server: $*" >&2
    show_logs "$dir"
    echo "s3-server: stopping what was started in $dir" >&2
    cmd_stop "$dir" || true
    exit 1
  }
  remaining() { awk -v a="$t0" -v b="$(now)" -v t="$timeout" 'BEGIN { r = t - (b - a); print (r < 1 ? 1 : int(r)) }'; }
  expired() { awk -v a="$t0" -v b="$(now)" -v t="$timeout" 'BEGIN { exit !((b - a) > t) }'; }

  # Monitor.
  ceph-authtool "${c[@]}" --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$mon_port,v1:127.0.0.1:$mon_v1]" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon "${c[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring" \
    </dev/null >>"$dir/log/mon.a.out" 2>&1 || fail "ceph-mon --mkfs failed"
  ceph-mon "${c[@]}" -i a </dev/null >>"$dir/log/mon.a.out" 2>&1 || fail "ceph-mon failed to start"

  # OSD (registering it also proves the monitor answers).
  local osd_id=""
  until osd_id=$(timeout 10 ceph "${c[@]}" --connect-timeout 5 osd new "$osd_uuid" 2>>"$dir/log/ceph-cli.out"); do
    expired && fail "monitor did not answer within ${timeout}s"
    sleep 0.5
  done
  [[ $osd_id == 0 ]] || fail "expected osd id 0, got '$osd_id'"
  mkdir -p "$dir/osd/ceph-0" # memstore's mkfs asserts if osd_data is missing
  ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" </dev/null >>"$dir/log/osd.0.out" 2>&1 ||
    fail "ceph-osd --mkfs failed"
  ceph-osd "${c[@]}" -i 0 </dev/null >>"$dir/log/osd.0.out" 2>&1 || fail "ceph-osd failed to start"
  local stat=""
  until [[ $stat == *'"num_up_osds":1'* && $stat == *'"num_in_osds":1'* ]]; do
    expired && fail "OSD did not come up within ${timeout}s (last: $stat)"
    sleep 0.5
    stat=$(timeout 10 ceph "${c[@]}" --connect-timeout 5 osd stat -f json 2>>"$dir/log/ceph-cli.out" | tr -d ' \n') || true
  done

  # radosgw.
  radosgw "${c[@]}" -n client.rgw.a </dev/null >>"$dir/log/client.rgw.a.out" 2>&1 || fail "radosgw failed to start"
  until http_answers "$port"; do
    expired && fail "radosgw did not answer on http://127.0.0.1:$port within ${timeout}s"
    sleep 0.5
  done

  # Test user with fixed credentials.
  timeout "$(remaining)" radosgw-admin "${c[@]}" user create --uid=test --display-name=test \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" </dev/null >>"$dir/log/radosgw-admin.out" 2>&1 ||
    fail "radosgw-admin user create failed (see $dir/log/radosgw-admin.out)"

  cat >"$dir/env" <<EOF
export S3_ENDPOINT=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export S3_SSE_KMS_KEY_ID=$SSE_KMS_TEST_KEY_ID
EOF
  echo "radosgw ready at http://127.0.0.1:$port ($(elapsed "$t0")s)"
}

[[ $# -ge 1 ]] || usage
case $1 in
  install) [[ $# -eq 1 ]] || usage; cmd_install ;;
  start) [[ $# -ge 2 && $# -le 3 ]] || usage; cmd_start "$2" "${3:-7480}" ;;
  stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
  *) usage ;;
esac
