#!/usr/bin/env bash
# Service invocation benchmark: app → sidecar A (runtime API) → A's outbound listener (handed over in
# process) → sidecar B's inbound listener → the HTTP app, beside a direct app → app call, in one
# run. Both sidecars share CPU 1; the load generator and the target app (nginx) share CPU 0.
# Reference rows, same placement: the same two hops through two chained HAProxy processes and two
# chained bare Pingora proxies (proxy/examples/bare_pingora.rs), and through the two sidecars'
# listeners without the runtime (A's outbound listener → B's inbound listener → app). The CPU column
# is the CPU time every process on CPU 1 spent during the 1k req/s run, per request (ticks of
# /proc/PID/stat, so ±1 tick over the run): steadier than latency on a noisy machine.
# Usage: bash tests/bench/invocation.sh [seconds-per-run]   (Markdown table on stdout)
# BENCH_BIN=DIR takes oxidecar, loadgen and examples/bare_pingora from DIR instead of building them
# (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/lib.sh
DUR=${1:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxidecar-target}"
for p in wrk haproxy nginx; do
  command -v $p >/dev/null || { echo "installing $p" >&2; apt-get install -y -qq wrk haproxy nginx-light >/dev/null; }
done
if [ -n "${BENCH_BIN:-}" ]; then BIN=$BENCH_BIN; else
  cargo build --release -q -p oxidecar -p oxidecar-tests --bin oxidecar --bin loadgen
  cargo build --release -q -p oxidecar --example bare_pingora
  BIN=$CARGO_TARGET_DIR/release
fi
# Then SIGKILL: on SIGTERM Pingora shuts down gracefully and would keep bare_pingora (and the pipe
# to whoever reads this script's output) alive for minutes.
WORK=$(mktemp -d); trap 'pids=$(jobs -p); disown -a; kill $pids 2>/dev/null; sleep 0.5; kill -KILL $pids 2>/dev/null; rm -rf $WORK' EXIT
APP=18580; A_OUT=18581; B_IN=18582; A_HTTP=18583; B_HTTP=18584
HA1=18587; HA2=18588; BP1=18578; BP2=18579

cat > $WORK/app.conf <<CONF
worker_processes 1; daemon off; pid $WORK/app.pid; error_log $WORK/app.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$APP; location / { return 200 "order accepted\n"; } } }
CONF
taskset -c 0 nginx -c $WORK/app.conf &

admin() { echo "admin: { address: 127.0.0.1:$1, metrics_addresses: [127.0.0.1:$(($1+1))], health_address: 127.0.0.1:$(($1+2)) }"; }
cat > $WORK/a.yaml <<CONF
$(admin 18590)
listeners:
  - name: virtualOutbound
    address: 127.0.0.1:$A_OUT
    filter_chains: [{ http: { route_config: out } }]
route_configs:
  - name: out
    virtual_hosts: [{ name: orders, domains: ["orders", "127.0.0.1:$A_OUT"], routes: [{ match: { prefix: "/" }, route: { cluster: orders } }] }]
clusters:
  - { name: orders, protocol: http1, endpoints: [{ address: 127.0.0.1:$B_IN }] }
CONF
cat > $WORK/b.yaml <<CONF
$(admin 18595)
listeners:
  - name: virtualInbound
    address: 127.0.0.1:$B_IN
    direction: inbound
    filter_chains: [{ http: { route_config: in } }]
route_configs:
  - name: in
    virtual_hosts: [{ name: app, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: app } }] }]
clusters:
  - { name: app, endpoints: [{ address: 127.0.0.1:$APP }] }
CONF
# Every process on CPU 1, for the CPU time each path costs there per request.
CPU1_PIDS=""
RUST_LOG=warn taskset -c 1 $BIN/oxidecar run -c $WORK/a.yaml --concurrency 1 --app-id checkout --dapr-http-port $A_HTTP --dapr-grpc-port 18585 2>$WORK/a.err &
CPU1_PIDS+=" $!"
RUST_LOG=warn taskset -c 1 $BIN/oxidecar run -c $WORK/b.yaml --concurrency 1 --app-id orders --app-port $APP --dapr-http-port $B_HTTP --dapr-grpc-port 18586 2>$WORK/b.err &
CPU1_PIDS+=" $!"
# The reference hops: two chained processes each, on the sidecars' CPU.
haproxy_conf 127.0.0.1:$HA1 127.0.0.1:$APP > $WORK/ha1.cfg; haproxy_conf 127.0.0.1:$HA2 127.0.0.1:$HA1 > $WORK/ha2.cfg
taskset -c 1 haproxy -f $WORK/ha1.cfg -db 2>$WORK/ha1.err &
CPU1_PIDS+=" $!"
taskset -c 1 haproxy -f $WORK/ha2.cfg -db 2>$WORK/ha2.err &
CPU1_PIDS+=" $!"
taskset -c 1 $BIN/examples/bare_pingora 127.0.0.1:$BP1 127.0.0.1:$APP 2>$WORK/bp1.err &
CPU1_PIDS+=" $!"
taskset -c 1 $BIN/examples/bare_pingora 127.0.0.1:$BP2 127.0.0.1:$BP1 2>$WORK/bp2.err &
CPU1_PIDS+=" $!"
# User + system clock ticks of every CPU-1 process so far (idle ones add next to nothing).
cpu1_ticks() { local t=0 p; for p in $CPU1_PIDS; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
for port in $APP $A_OUT $B_IN $A_HTTP $B_HTTP $HA1 $HA2 $BP1 $BP2; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
DIRECT="http://127.0.0.1:$APP/neworder"
INVOKE="http://127.0.0.1:$A_HTTP/v1.0/invoke/orders/method/neworder"
# One leg only: the target sidecar's runtime delivering to its own app.
LOCAL="http://127.0.0.1:$B_HTTP/v1.0/invoke/orders/method/neworder"
curl -sf "$INVOKE" >/dev/null || { echo "invocation path is not working" >&2; cat $WORK/a.err $WORK/b.err >&2; exit 1; }
curl -sf "http://127.0.0.1:$A_OUT/neworder" >/dev/null && curl -sf "http://127.0.0.1:$BP2/neworder" >/dev/null && curl -sf "http://127.0.0.1:$HA2/neworder" >/dev/null || { echo "a reference path is not working" >&2; exit 1; }

field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us/1000 }'; }
echo "| path | max req/s | p50 at 1k req/s (ms) | p99 at 1k req/s (ms) | added p50 (ms) | added p99 (ms) | CPU 1 µs per request at 1k req/s | errors |"
echo "|---|---|---|---|---|---|---|---|"
declare -A LAT RPS CPU
HZ=$(getconf CLK_TCK)
PATHS="direct haproxy-2-hops bare-pingora-2-hops sidecar-listeners-2-hops local-delivery invocation"
for name in $PATHS; do
  case $name in
    direct) url=$DIRECT;; local-delivery) url=$LOCAL;; invocation) url=$INVOKE;;
    haproxy-2-hops) url="http://127.0.0.1:$HA2/neworder";;
    bare-pingora-2-hops) url="http://127.0.0.1:$BP2/neworder";;
    sidecar-listeners-2-hops) url="http://127.0.0.1:$A_OUT/neworder";;
  esac
  taskset -c 0 wrk -t1 -c32 -d3s "$url" >/dev/null
  RPS[$name]=$(taskset -c 0 wrk -t1 -c32 -d${DUR}s "$url" | awk '/Requests\/sec/ {print $2}')
  before=$(cpu1_ticks)
  LAT[$name]=$(taskset -c 0 $BIN/loadgen "$url" 1000 "$DUR" 16)
  CPU[$name]=$(( ($(cpu1_ticks) - before) * 1000000 / HZ / $(field "${LAT[$name]}" requests) ))
done
d50=$(field "${LAT[direct]}" p50_us); d99=$(field "${LAT[direct]}" p99_us)
for name in $PATHS; do
  p50=$(field "${LAT[$name]}" p50_us); p99=$(field "${LAT[$name]}" p99_us)
  echo "| $name | ${RPS[$name]} | $(ms $p50) | $(ms $p99) | $(ms $((p50-d50))) | $(ms $((p99-d99))) | ${CPU[$name]} | $(field "${LAT[$name]}" errors) |"
done
