#!/usr/bin/env bash
# xDS apply cost: time to translate a whole config (Envoy v3 → oxidecar's model, every field
# checked) and build the data plane's tables from it, and the memory it takes, for the real
# hotel-reservation sidecar dump (138 clusters, 141 listeners, 90 route configs) and for generated
# meshes of 1,000 and 5,000 services (cluster + endpoints + listener + route config each).
# Targets: ≤ 100 ms for the dump, ≤ 2 s for 5,000 services.
# Usage: tests/bench/xds.sh   (release build; fixtures from ../shared/fixtures/istio or
#        OXIDECAR_ISTIO_FIXTURES)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p oxidecar >/dev/null
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/oxidecar"
fixtures="${OXIDECAR_ISTIO_FIXTURES:-../shared/fixtures/istio}"
python="${OXIDECAR_PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

run() { # name file
  for i in 1 2 3; do
    line="$("$bin" validate --envoy-config-dump "$2" | grep 'apply cost' || true)"
    echo "$1 run $i: ${line#  apply cost: }"
  done
  "$bin" validate --envoy-config-dump "$2" | grep -E '^  (Cluster|Listener|RouteConfiguration|ClusterLoadAssignment):|snapshot:' | sed "s/^/$1: /"
}

run "hotel-reservation dump" "$fixtures/sidecar-full-configdump-v3-istio1.18-hotelreservation-geo.json"
for n in 1000 5000; do
  "$python" tests/bench/xds_mesh.py "$n" > "$tmp/mesh-$n.json"
  run "mesh of $n services" "$tmp/mesh-$n.json"
done
