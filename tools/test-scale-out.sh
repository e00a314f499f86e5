#!/usr/bin/env bash
# The scale-out test: HAProxy in front of two `inferno serve` replicas of the demo model, health-checked on /ready.
# A bounded load goes through HAProxy (24 completions, 4 at a time, with curl); one replica gets SIGTERM while it
# has requests in flight. Holds when every request is answered 200 with all its tokens (the in-flight ones finished
# by the replica's drain, the later ones routed to the other), the drained replica exits 0, and both replicas'
# /metrics pass `promtool check metrics` (the killed one scraped just before the kill).
#
# Usage: tools/test-scale-out.sh [BUILD_DIR]   (default: build). Installs nothing: tools/install-deps.sh brings
# haproxy, prometheus (promtool) and curl. Exit 77 (meson's "skipped") with a message when one of them is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN="$BUILD/src/cli/inferno"
MODEL=models/brown-8m-bf16
REQUESTS=24
AT_ONCE=4
TOKENS=48

for tool in haproxy promtool curl python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-scale-out: SKIPPED: $tool is not installed (tools/install-deps.sh installs it)"
    exit 77
  fi
done
[ -x "$BIN" ] || { echo "test-scale-out: $BIN is missing: build first (ninja -C $BUILD)"; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "test-scale-out: FAILED: $*"; for f in "$WORK"/*.log; do echo "--- $f"; tail -n 20 "$f"; done; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The replicas, on ports they choose; each prints the port once its model is loaded.
start_replica() {  # name
  "$BIN" serve -m "$MODEL" --host 127.0.0.1 --port 0 --parallel 4 --log --drain-timeout 60 --quiet 2>"$WORK/$1.log" &
  PIDS+=($!)
  eval "PID_$1=$!"
}
replica_port() {  # name → port, once it listens (bounded: 120 s)
  for _ in $(seq 1200); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/$1.log")
    [ -n "$port" ] && { echo "$port"; return; }
    sleep 0.1
  done
  fail "replica $1 did not start"
}
start_replica a
start_replica b
PORT_a=$(replica_port a)
PORT_b=$(replica_port b)
FRONT=$(free_port)

# Retries go to the other replica (redispatch) when a connection is refused (the drained replica no longer
# listens) or a server answers nothing or 503 (a request that reached a replica as it began draining): the
# request is buffered, so HAProxy can send it again.
cat >"$WORK/haproxy.cfg" <<EOF
defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  retries 3
  option redispatch 1
  option http-buffer-request
  retry-on conn-failure empty-response 503
frontend inferno_front
  bind 127.0.0.1:$FRONT
  default_backend inferno
backend inferno
  balance roundrobin
  option httpchk
  http-check send meth GET uri /ready ver HTTP/1.1 hdr Host localhost
  http-check expect status 200
  default-server check inter 200ms fall 1 rise 1
  server a 127.0.0.1:$PORT_a
  server b 127.0.0.1:$PORT_b
EOF
haproxy -c -f "$WORK/haproxy.cfg" >"$WORK/haproxy-check.log" 2>&1 || fail "haproxy refused its configuration"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$FRONT/ready" >/dev/null && break; sleep 0.1; done
sleep 1  # both replicas checked up

# The load: each request writes its status and body to files of its own.
mkdir -p "$WORK/out"
send() {  # i
  curl -s -m 300 -o "$WORK/out/$1.json" -w '%{http_code}' "http://127.0.0.1:$FRONT/v1/completions" \
    -H 'Content-Type: application/json' \
    -d "{\"prompt\": \"The jury said request $1\", \"max_tokens\": $TOKENS, \"temperature\": 0, \"ignore_eos\": true}" \
    >"$WORK/out/$1.code" || true
}
export -f send
export WORK FRONT TOKENS
seq "$REQUESTS" | xargs -P "$AT_ONCE" -I{} bash -c 'send {}' &
LOAD=$!

# Replica a, once it has requests in flight: its metrics, then SIGTERM.
metric() { curl -s "http://127.0.0.1:$1/metrics" | sed -n "s/^$2 //p"; }
for _ in $(seq 600); do
  running=$(metric "$PORT_a" 'inferno:num_requests_running')
  [ "${running:-0}" != 0 ] && break
  sleep 0.05
done
[ "${running:-0}" != 0 ] || fail "replica a never had a request in flight"
curl -s "http://127.0.0.1:$PORT_a/metrics" >"$WORK/a.prom"
kill -TERM "$PID_a"
STATUS_a=0
wait "$PID_a" || STATUS_a=$?
wait "$LOAD"
curl -s "http://127.0.0.1:$PORT_b/metrics" >"$WORK/b.prom"

# Every request answered 200 with all its tokens.
ok=0
for i in $(seq "$REQUESTS"); do
  code=$(cat "$WORK/out/$i.code" 2>/dev/null || echo none)
  if [ "$code" = 200 ] && grep -q "\"completion_tokens\":$TOKENS" "$WORK/out/$i.json"; then
    ok=$((ok + 1))
  else
    echo "request $i: status $code: $(head -c 300 "$WORK/out/$i.json" 2>/dev/null)"
  fi
done
served_a=$(grep -c 'POST /v1/completions 200' "$WORK/a.log" || true)
drained_a=$(sed -n '/draining/,$p' "$WORK/a.log" | grep -c 'POST /v1/completions 200' || true)
served_b=$(grep -c 'POST /v1/completions 200' "$WORK/b.log" || true)
echo "test-scale-out: $ok/$REQUESTS requests answered 200 with $TOKENS tokens each; replica a served $served_a" \
     "($drained_a of them finished while it drained after SIGTERM) and exited $STATUS_a, replica b served $served_b"
[ "$ok" = "$REQUESTS" ] || fail "$((REQUESTS - ok)) requests were not answered whole"
[ "$STATUS_a" = 0 ] || fail "replica a exited $STATUS_a after SIGTERM"
[ "$drained_a" -ge 1 ] || fail "replica a finished no request while draining"
grep -q 'inferno serve: stopped' "$WORK/a.log" || fail "replica a did not say it stopped"

# promtool: exit 0, or 3 (lint problems) when the only problem is the colon in the names, which the metrics'
# contract requires (vLLM's "vllm:" names, which the Gateway API Inference Extension reads) and promtool's linter
# reserves for recording rules. A parse error (exit 1) or any other lint problem fails.
for replica in a b; do
  rc=0
  promtool check metrics <"$WORK/$replica.prom" >"$WORK/promtool-$replica.txt" 2>&1 || rc=$?
  other=$(grep -v "metric names should not contain ':'" "$WORK/promtool-$replica.txt" || true)
  if [ "$rc" != 0 ] && { [ "$rc" != 3 ] || [ -n "$other" ]; }; then
    cat "$WORK/promtool-$replica.txt"
    fail "promtool check metrics on replica $replica's /metrics: exit $rc"
  fi
  families=$(grep -c '^# TYPE ' "$WORK/$replica.prom")
  echo "test-scale-out: replica $replica's /metrics: $families families, promtool check metrics exit $rc" \
       "($(grep -c "should not contain ':'" "$WORK/promtool-$replica.txt" || true) lint notes, all on the colon of 'inferno:')"
done
echo "test-scale-out: OK"
