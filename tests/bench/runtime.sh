#!/usr/bin/env bash
# Runtime API benchmark: GetState / SaveState over gRPC against the real `oxidecar` release binary,
# with the client (runtime-apis/examples/bench_state.rs) in a separate process. Stores: state.in-memory
# and state.redis, plus the same operations by a direct Redis client (the `redis` crate) in the same run.
# The sidecar is pinned to CPU 1, the client to CPU 0; redis-server (the system one on 127.0.0.1:6379)
# is not pinned. Usage: bash tests/bench/runtime.sh [seconds-per-run]   (Markdown table on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxidecar-target}"
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis must run on 127.0.0.1:6379" >&2; exit 1; }
cargo build --release -q -p oxidecar --bin oxidecar
cargo build --release -q -p oxidecar-runtime-apis --example bench_state
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf $WORK' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(free_port); HTTP=$(free_port); ADMIN=$(free_port); M1=$(free_port); M2=$(free_port); HEALTH=$(free_port)

mkdir -p $WORK/components
cat > $WORK/components/stores.yaml <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.in-memory, version: v1}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: redisstore}
spec:
  type: state.redis
  version: v1
  metadata:
  - {name: redisHost, value: "127.0.0.1:6379"}
YAML
cat > $WORK/mesh.yaml <<YAML
admin: { address: 127.0.0.1:$ADMIN, metrics_addresses: [127.0.0.1:$M1, 127.0.0.1:$M2], health_address: 127.0.0.1:$HEALTH }
YAML
RUST_LOG=warn taskset -c 1 $BIN/oxidecar run --config $WORK/mesh.yaml --concurrency 1 --app-id bench \
  --dapr-grpc-port $GRPC --dapr-http-port $HTTP --resources-path $WORK/components 2>$WORK/ox.err &
SIDECAR=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$HTTP/v1.0/healthz && break; sleep 0.1; done
curl -sf -o /dev/null http://127.0.0.1:$HTTP/v1.0/healthz || { cat $WORK/ox.err >&2; exit 1; }
echo "sidecar pid $SIDECAR (gRPC $GRPC)" >&2

run() { taskset -c 0 $BIN/examples/bench_state "$@" "$DUR"; }
echo "| client | target | operation | concurrency | ops/s | p50 µs | p99 µs | errors |"
echo "|---|---|---|---|---|---|---|---|"
for op in SaveState GetState; do
  for c in 16 64; do
    run grpc://127.0.0.1:$GRPC/statestore $op $c
  done
done
for op in SaveState GetState; do
  for c in 16 64; do
    run grpc://127.0.0.1:$GRPC/redisstore $op $c
    run redis://127.0.0.1:6379 $op $c
  done
done
