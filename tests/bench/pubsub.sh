#!/usr/bin/env bash
# Pub/sub benchmark: publish→deliver throughput and latency through the real `oxidecar` release
# binary for pubsub.in-memory, pubsub.redis (streams), pubsub.jetstream (NATS), pubsub.mqtt3
# (Mosquitto) and pubsub.rabbitmq, beside each broker's own client (the crates the components use)
# doing the same publish→consume, in one run. The client (tests/src/bin/pubsub_bench) is the
# sidecar's gRPC app and publishes with PublishEvent; it runs in its own process pinned to CPU 0,
# the sidecar to CPU 1; the brokers (the system ones on their default ports) are not pinned.
# Usage: bash tests/bench/pubsub.sh [seconds-per-run] [latency-run-rate]   (Markdown on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-5}
RATE=${2:-1000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxidecar-target}"
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis must run on 127.0.0.1:6379" >&2; exit 1; }
for port in 4222 1883 5672; do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || { echo "NATS 4222, Mosquitto 1883 and RabbitMQ 5672 must run (port $port is closed)" >&2; exit 1; }
done
cargo build --release -q -p oxidecar --bin oxidecar
cargo build --release -q -p oxidecar-tests --bin pubsub_bench
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
TOPIC="bench-$$-$(date +%s)"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  $BIN/pubsub_bench cleanup "$TOPIC" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(free_port); HTTP=$(free_port); APP=$(free_port); ADMIN=$(free_port); M1=$(free_port); M2=$(free_port); HEALTH=$(free_port)

mkdir -p $WORK/components
component() { # name type metadata-list-items
  printf 'apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: %s}\nspec:\n  type: %s\n  version: v1\n  metadata:\n%s---\n' "$1" "$2" "${3:-    []
}"
}
{
  component memory pubsub.in-memory
  component redis pubsub.redis "  - {name: redisHost, value: '127.0.0.1:6379'}
"
  # parallel: up to 64 deliveries at once per subscription (the default, single, is one at a time).
  component jetstream pubsub.jetstream "  - {name: natsURL, value: 'nats://127.0.0.1:4222'}
  - {name: concurrency, value: parallel}
"
  component mqtt pubsub.mqtt3 "  - {name: url, value: 'tcp://127.0.0.1:1883'}
  - {name: consumerID, value: 'pubsub-bench-$$'}
"
  component rabbitmq pubsub.rabbitmq "  - {name: connectionString, value: 'amqp://guest:guest@127.0.0.1:5672'}
"
} > $WORK/components/pubsub.yaml
cat > $WORK/mesh.yaml <<YAML
admin: { address: 127.0.0.1:$ADMIN, metrics_addresses: [127.0.0.1:$M1, 127.0.0.1:$M2], health_address: 127.0.0.1:$HEALTH }
YAML
RUST_LOG=warn taskset -c 1 $BIN/oxidecar run --config $WORK/mesh.yaml --concurrency 1 --app-id pubsub-bench \
  --dapr-grpc-port $GRPC --dapr-http-port $HTTP --app-port $APP --app-protocol grpc \
  --resources-path $WORK/components 2>$WORK/ox.err &
SIDECAR=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$HTTP/v1.0/healthz/outbound && break; sleep 0.1; done
curl -sf -o /dev/null http://127.0.0.1:$HTTP/v1.0/healthz/outbound || { cat $WORK/ox.err >&2; exit 1; }
echo "sidecar pid $SIDECAR (gRPC $GRPC, app $APP), topic $TOPIC, $DUR s per run" >&2

taskset -c 0 $BIN/pubsub_bench run 127.0.0.1:$GRPC $APP "$TOPIC" "$DUR" "$RATE" || { cat $WORK/ox.err >&2; exit 1; }
kill $SIDECAR; wait $SIDECAR 2>/dev/null || true
