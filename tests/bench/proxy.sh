#!/usr/bin/env bash
# HTTP/1.1 keep-alive proxying benchmark: oxidecar vs HAProxy vs nginx (Debian packages) to the same
# upstream, and a direct connection, in one run. Each proxy is pinned to one core (CPU 1) with one
# worker; the load generator and the upstream share the other core (CPU 0).
# Usage: bash tests/bench/proxy.sh [seconds-per-run]   (writes a Markdown table to stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/lib.sh
DUR=${1:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxidecar-target}"
for p in wrk haproxy nginx; do
  command -v $p >/dev/null || { echo "installing $p" >&2; apt-get install -y -qq wrk haproxy nginx-light >/dev/null; }
done
cargo build --release -q -p oxidecar -p oxidecar-tests --bin oxidecar --bin loadgen
cargo build --release -q -p oxidecar --example bare_pingora
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d); trap 'cat $WORK/ox.err $WORK/oxt.err >&2 2>/dev/null; pids=$(jobs -p); disown -a; kill $pids 2>/dev/null; sleep 0.5; kill -KILL $pids 2>/dev/null; rm -rf $WORK' EXIT
UP=18480; OX=18481; HA=18482; NG=18483; BP=18484; OXT=18485; ADMIN=18490; ADMIN_T=18494; DEAD_OTLP=18499

# Upstream: nginx with a 13-byte static answer, one worker on CPU 0.
cat > $WORK/upstream.conf <<CONF
worker_processes 1; daemon off; pid $WORK/up.pid; error_log $WORK/up.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello, world\n"; } } }
CONF
taskset -c 0 nginx -c $WORK/upstream.conf &

cat > $WORK/oxidecar.yaml <<CONF
admin: { address: 127.0.0.1:$ADMIN, metrics_addresses: [127.0.0.1:$((ADMIN+1))], health_address: 127.0.0.1:$((ADMIN+2)) }
listeners:
  - name: bench
    address: 127.0.0.1:$OX
    filter_chains: [{ http: { route_config: main } }]
route_configs:
  - name: main
    virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: up } }] }]
clusters:
  - { name: up, protocol: http1, endpoints: [{ address: 127.0.0.1:$UP }] }
CONF
RUST_LOG=warn taskset -c 1 $BIN/oxidecar run --config $WORK/oxidecar.yaml --concurrency 1 --dapr-grpc-port 18500 --dapr-http-port 18501 2>$WORK/ox.err &
OXPID=$!

# The same proxy with the opt-in observability on: a JSON access-log line per request to a file,
# and every request traced (100% sampling) with OTLP export to a collector that is not there, so
# spans are built, batched and dropped. Against the plain row, it prices the per-request work.
sed -e "s/127.0.0.1:$OX/127.0.0.1:$OXT/" -e "s/$ADMIN/$ADMIN_T/; s/$((ADMIN+1))/$((ADMIN_T+1))/; s/$((ADMIN+2))/$((ADMIN_T+2))/" \
  $WORK/oxidecar.yaml > $WORK/oxidecar-observed.yaml
cat >> $WORK/oxidecar-observed.yaml <<CONF
telemetry:
  access_log: { format: json, path: $WORK/access.log }
  tracing: { sampling: 100, otlp: { endpoint: "http://127.0.0.1:$DEAD_OTLP", timeout: 1s } }
CONF
RUST_LOG=warn taskset -c 1 $BIN/oxidecar run --config $WORK/oxidecar-observed.yaml --concurrency 1 --dapr-grpc-port 18502 --dapr-http-port 18503 2>$WORK/oxt.err &

# Bare Pingora (one fixed upstream, nothing else): Pingora's own per-request cost.
taskset -c 1 $BIN/examples/bare_pingora 127.0.0.1:$BP 127.0.0.1:$UP 2>$WORK/bp.err &

haproxy_conf "127.0.0.1:$HA" "127.0.0.1:$UP" > $WORK/haproxy.cfg
taskset -c 1 haproxy -f $WORK/haproxy.cfg -db 2>$WORK/ha.err &

cat > $WORK/nginx-proxy.conf <<CONF
worker_processes 1; daemon off; pid $WORK/ng.pid; error_log $WORK/ng.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
taskset -c 1 nginx -c $WORK/nginx-proxy.conf &

for port in $UP $OX $HA $NG $BP $OXT; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
IDLE_RSS=$(rss_kb $OXPID)

saturate() { taskset -c 0 wrk -t1 -c64 -d${DUR}s --latency "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
latency() { taskset -c 0 $BIN/loadgen "http://127.0.0.1:$1/" 1000 "$DUR" 16; }

declare -A RPS LAT
for name in direct oxidecar oxidecar-observed bare-pingora haproxy nginx; do
  case $name in direct) port=$UP;; oxidecar) port=$OX;; oxidecar-observed) port=$OXT;; haproxy) port=$HA;; nginx) port=$NG;; bare-pingora) port=$BP;; esac
  saturate $port >/dev/null  # warm-up: pools and caches
  RPS[$name]=$(saturate $port)
  if [ $name = oxidecar ]; then LOAD_RSS=$(rss_kb $OXPID); fi
  LAT[$name]=$(latency $port)
done
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us/1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a/b }'; }
d50=$(field "${LAT[direct]}" p50_us); d99=$(field "${LAT[direct]}" p99_us)

echo "| path | req/s at saturation (1 core) | vs HAProxy | p50 at 1k req/s (ms) | p99 at 1k req/s (ms) | added p50 (ms) | added p99 (ms) | errors |"
echo "|---|---|---|---|---|---|---|---|"
for name in direct oxidecar oxidecar-observed bare-pingora haproxy nginx; do
  p50=$(field "${LAT[$name]}" p50_us); p99=$(field "${LAT[$name]}" p99_us); err=$(field "${LAT[$name]}" errors)
  echo "| $name | ${RPS[$name]} | $(ratio ${RPS[$name]} ${RPS[haproxy]}) | $(ms $p50) | $(ms $p99) | $(ms $((p50-d50))) | $(ms $((p99-d99))) | $err |"
done
echo
echo "oxidecar RSS: idle $((IDLE_RSS/1024)) MB, under load $((LOAD_RSS/1024)) MB"
echo "oxidecar-observed vs oxidecar req/s: $(ratio ${RPS[oxidecar-observed]} ${RPS[oxidecar]}); oxidecar vs bare Pingora: $(ratio ${RPS[oxidecar]} ${RPS[bare-pingora]}); access-log lines written: $(wc -l < $WORK/access.log)"
