#!/usr/bin/env bash
# xDS apply cost, every phase in one command:
#  1. offline: `oxidecar validate --envoy-config-dump` times translating a whole config (Envoy v3 →
#     oxidecar's model, every field checked) and building the data plane's tables from it, three
#     runs per input;
#  2. live: the same config served over ADS (tests/src/bin/ads_serve.rs) to a running
#     `oxidecar run --xds-address`, timing start → first snapshot applied and reading the
#     process's RSS once it holds the config, beside an idle proxy without xDS.
# Inputs: the real hotel-reservation sidecar dump (138 clusters, 141 listeners, 90 route configs)
# and generated meshes of 1,000 and 5,000 services (cluster + endpoints + listener + route config
# each, tests/bench/xds_mesh.py). RSS growth per 1,000 clusters = (RSS(5,000) − RSS(1,000)) / 4.
# Targets: ≤ 100 ms for the dump, ≤ 2 s for 5,000 services.
# Usage: tests/bench/xds.sh   (release build; fixtures from ../shared/fixtures/istio or
#        OXIDECAR_ISTIO_FIXTURES)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p oxidecar -p oxidecar-tests --bins >/dev/null
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/oxidecar"
ads="$target/release/ads_serve"
fixtures="${OXIDECAR_ISTIO_FIXTURES:-../shared/fixtures/istio}"
python="${OXIDECAR_PYTHON:-python3}"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
now_ms() { date +%s%3N; }

# validate exits 2 when it rejects something (the dump's NACKed listeners): that is a report,
# not a failure of the benchmark.
validate() { "$bin" validate --envoy-config-dump "$1" || [ $? -eq 2 ]; }

offline() { # name file
  for i in 1 2 3; do
    line="$(validate "$2" | grep 'apply cost')"
    echo "$1 run $i: ${line#  apply cost: }"
  done
  validate "$2" | grep -E '^  (Cluster|Listener|RouteConfiguration|ClusterLoadAssignment):|snapshot:' | sed "s/^/$1: /"
}

# Starts a proxy (extra flags in $@) with free admin ports; sets $proxy_pid and $metrics_port.
start_proxy() {
  local admin health merged
  admin="$(free_port)"; metrics_port="$(free_port)"; merged="$(free_port)"; health="$(free_port)"
  cat > "$tmp/bootstrap.yaml" <<EOF
admin:
  address: 127.0.0.1:$admin
  metrics_addresses: [127.0.0.1:$metrics_port, 127.0.0.1:$merged]
  health_address: 127.0.0.1:$health
EOF
  "$bin" run --config "$tmp/bootstrap.yaml" --concurrency 1 --dapr-grpc-port "$(free_port)" --dapr-http-port "$(free_port)" "$@" 2>"$tmp/proxy.log" &
  proxy_pid=$!
  pids+=("$proxy_pid")
}

metric() { # name → value (0 when absent)
  curl -s "http://127.0.0.1:$metrics_port/stats/prometheus" 2>/dev/null | awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print 0 }'
}

stop_proxy() { kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; }

start_proxy
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$metrics_port/stats/prometheus" >/dev/null && break; sleep 0.05; done
sleep 1
idle_rss="$(rss_kib "$proxy_pid")"
stop_proxy
echo "idle proxy (no xDS): RSS $idle_rss KiB"

live() { # name file → sets $live_rss
  local port ads_pid start applied took
  port="$(free_port)"
  "$ads" "$2" "$port" > "$tmp/ads.out" &
  ads_pid=$!
  pids+=("$ads_pid")
  for _ in $(seq 1 600); do grep -q serving "$tmp/ads.out" && break; sleep 0.05; done
  start="$(now_ms)"
  start_proxy --xds-address "http://127.0.0.1:$port"
  applied=0
  for _ in $(seq 1 1200); do
    if [ "$(metric oxidecar_xds_snapshots_applied_total)" != 0 ]; then applied=1; break; fi
    sleep 0.025
  done
  took=$(( $(now_ms) - start ))
  if [ "$applied" = 1 ]; then
    sleep 1 # let the last responses (ACKs, late route configs) settle
    live_rss="$(rss_kib "$proxy_pid")"
    echo "$1 live: start → first snapshot applied $took ms (process start and ADS stream included), RSS $live_rss KiB (+$(( live_rss - idle_rss )) KiB over idle), clusters held $(metric 'oxidecar_xds_resources{type="Cluster"}')"
  else
    live_rss=0
    echo "$1 live: no snapshot applied within 30 s; proxy log:" && tail -5 "$tmp/proxy.log"
  fi
  stop_proxy
  kill "$ads_pid" 2>/dev/null || true; wait "$ads_pid" 2>/dev/null || true
}

hotel="$fixtures/sidecar-full-configdump-v3-istio1.18-hotelreservation-geo.json"
offline "hotel-reservation dump" "$hotel"
live "hotel-reservation dump" "$hotel"
declare -A rss
for n in 1000 5000; do
  "$python" tests/bench/xds_mesh.py "$n" > "$tmp/mesh-$n.json"
  offline "mesh of $n services" "$tmp/mesh-$n.json"
  live "mesh of $n services" "$tmp/mesh-$n.json"
  rss[$n]="$live_rss"
done
if [ "${rss[1000]}" != 0 ] && [ "${rss[5000]}" != 0 ]; then
  echo "RSS growth per 1,000 clusters (each with its endpoints, listener and route config): $(( (rss[5000] - rss[1000]) / 4 )) KiB"
fi
