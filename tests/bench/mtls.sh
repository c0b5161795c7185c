#!/usr/bin/env bash
# mTLS sidecar-pair benchmark, side by side in one run:
#   bulk throughput  : wrk (1 connection) downloads a 4 MiB file through client sidecar -> mTLS ->
#                      server sidecar -> nginx; oxidecar pair vs HAProxy pair (same TLS origination
#                      and termination with client certificates) vs the plaintext oxidecar pair, and
#                      `openssl speed -evp aes-128-gcm` on one core as the ceiling;
#   handshakes       : `openssl s_time` (TLS 1.2) full (-new) and resumed (-reuse) handshakes per second
#                      against the server sidecar's mTLS port, and against HAProxy's;
#   HTTP requests/s  : wrk (64 connections, 13-byte answers) over the warm mTLS pair vs the
#                      plaintext pair, with HTTP/1.1 between the sidecars and again with HTTP/2
#                      (ALPN istio-h2 over mTLS vs h2c).
# Each sidecar runs one worker: the client side on CPU 1, the server side on CPU 0 (which the load
# generator and the upstream share), the same for HAProxy.
# Usage: bash tests/bench/mtls.sh [seconds-per-run]   (Markdown to stdout)
set -eu
cd "$(dirname "$0")/../.."
source tests/bench/lib.sh
DUR=${1:-8}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxidecar-target}"
for p in wrk haproxy nginx openssl; do
  command -v $p >/dev/null || { echo "installing $p" >&2; apt-get install -y -qq wrk haproxy nginx-light openssl >/dev/null; }
done
cargo build --release -q -p oxidecar --bin oxidecar
BIN=$CARGO_TARGET_DIR/release/oxidecar
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf $WORK' EXIT
UP=18580; CLI_MTLS=18581; CLI_PLAIN=18582; SRV=18583; HA_CLI=18584; HA_SRV=18585; CLI_MTLS_H2=18586; CLI_PLAIN_H2=18587; ADMIN=18590

$BIN dev-ca --dir $WORK/ca --workload default/client --workload default/server >/dev/null
C=$WORK/ca/default.client; S=$WORK/ca/default.server; ROOT=$WORK/ca/root-cert.pem
cat $C/cert-chain.pem $C/key.pem > $WORK/ha-client.pem
cat $S/cert-chain.pem $S/key.pem > $WORK/ha-server.pem

head -c $((4 * 1024 * 1024)) /dev/urandom > $WORK/big; chmod 755 $WORK; chmod 644 $WORK/big
cat > $WORK/upstream.conf <<CONF
worker_processes 1; daemon off; pid $WORK/up.pid; error_log $WORK/up.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; sendfile on;
  server { listen 127.0.0.1:$UP; root $WORK; location = / { return 200 "hello, world\n"; } } }
CONF
taskset -c 0 nginx -c $WORK/upstream.conf &

admin() { echo "admin: { address: 127.0.0.1:$1, metrics_addresses: [127.0.0.1:$(($1+1))], health_address: 127.0.0.1:$(($1+2)) }"; }
cat > $WORK/server.yaml <<CONF
$(admin $ADMIN)
identity: { cert_chain: $S/cert-chain.pem, private_key: $S/key.pem, trust_bundle: $ROOT }
listeners:
  - name: inbound
    address: 127.0.0.1:$SRV
    direction: inbound
    filter_chains:
      - { match: { transport_protocol: tls }, tls: {}, http: { route_config: app } }
      - { match: { transport_protocol: raw_buffer }, http: { route_config: app } }
route_configs:
  - name: app
    virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: app } }] }]
clusters:
  - { name: app, protocol: http1, endpoints: [{ address: 127.0.0.1:$UP }] }
CONF
cat > $WORK/client.yaml <<CONF
$(admin $((ADMIN+3)))
identity: { cert_chain: $C/cert-chain.pem, private_key: $C/key.pem, trust_bundle: $ROOT }
listeners:
  - { name: mtls, address: 127.0.0.1:$CLI_MTLS, filter_chains: [{ http: { route_config: mtls } }] }
  - { name: plain, address: 127.0.0.1:$CLI_PLAIN, filter_chains: [{ http: { route_config: plain } }] }
  - { name: mtls-h2, address: 127.0.0.1:$CLI_MTLS_H2, filter_chains: [{ http: { route_config: mtls-h2 } }] }
  - { name: plain-h2, address: 127.0.0.1:$CLI_PLAIN_H2, filter_chains: [{ http: { route_config: plain-h2 } }] }
route_configs:
  - name: mtls
    virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: server-mtls } }] }]
  - name: plain
    virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: server-plain } }] }]
  - name: mtls-h2
    virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: server-mtls-h2 } }] }]
  - name: plain-h2
    virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: server-plain-h2 } }] }]
clusters:
  - name: server-mtls
    protocol: http1
    tls: { mode: istio_mutual, subject_alt_names: [spiffe://cluster.local/ns/default/sa/server] }
    endpoints: [{ address: 127.0.0.1:$SRV }]
  - { name: server-plain, protocol: http1, endpoints: [{ address: 127.0.0.1:$SRV }] }
  # HTTP/2 between the sidecars (ALPN istio-h2 over mTLS, h2c in plaintext): many requests share
  # a few connections, as Istio does when a DestinationRule upgrades to h2.
  - name: server-mtls-h2
    protocol: h2
    tls: { mode: istio_mutual, subject_alt_names: [spiffe://cluster.local/ns/default/sa/server] }
    endpoints: [{ address: 127.0.0.1:$SRV }]
  - { name: server-plain-h2, protocol: h2, endpoints: [{ address: 127.0.0.1:$SRV }] }
CONF
RUST_LOG=warn taskset -c 0 $BIN run --config $WORK/server.yaml --concurrency 1 --dapr-grpc-port 18600 --dapr-http-port 18601 2>$WORK/srv.err &
RUST_LOG=warn taskset -c 1 $BIN run --config $WORK/client.yaml --concurrency 1 --dapr-grpc-port 18602 --dapr-http-port 18603 2>$WORK/cli.err &

haproxy_conf "127.0.0.1:$HA_SRV ssl crt $WORK/ha-server.pem ca-file $ROOT verify required" "127.0.0.1:$UP" "tune.ssl.default-dh-param 2048" > $WORK/ha-server.cfg
haproxy_conf "127.0.0.1:$HA_CLI" "127.0.0.1:$HA_SRV ssl crt $WORK/ha-client.pem ca-file $ROOT verify required" > $WORK/ha-client.cfg
taskset -c 0 haproxy -f $WORK/ha-server.cfg -db 2>$WORK/has.err &
taskset -c 1 haproxy -f $WORK/ha-client.cfg -db 2>$WORK/hac.err &

for port in $UP $CLI_MTLS $CLI_PLAIN $SRV $HA_CLI $HA_SRV $CLI_MTLS_H2 $CLI_PLAIN_H2; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
# wrk's Transfer/sec in MB/s.
bulk() { taskset -c 0 wrk -t1 -c1 -d${DUR}s --timeout 30s "http://127.0.0.1:$1/big" | tee -a $WORK/bulk.log | awk '/Transfer\/sec/ { v=$2; u=substr(v, length(v)-1); n=v+0; if (u=="GB") n*=1024; else if (u=="KB") n/=1024; printf "%.0f", n }'; }
rps() { taskset -c 0 wrk -t1 -c64 -d${DUR}s "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {printf "%.0f", $2}'; }
# openssl s_time: connections per second (full or resumed handshakes), one client core. TLS 1.2,
# because s_time never reads a TLS 1.3 session ticket (it sends nothing), so it cannot resume 1.3.
handshakes() {
  taskset -c 1 openssl s_time -connect 127.0.0.1:$1 -cert $C/cert-chain.pem -key $C/key.pem -CAfile $ROOT -time "$DUR" -tls1_2 $2 2>/dev/null < /dev/null \
    | awk '/connections in/ && /real seconds/ { n=$1; s=$4 } END { if (s > 0) printf "%.0f", n/s; else print 0 }'
}
# AES-128-GCM on one core with 16 KiB blocks, in MB/s.
AES=$(taskset -c 1 openssl speed -evp aes-128-gcm -bytes 16384 -seconds 3 2>/dev/null | awk '/^AES-128-GCM/ { v=$NF; sub(/k$/, "", v); printf "%.0f", v*1000/1048576 }')

trap 'cat $WORK/bulk.log >&2 2>/dev/null; kill $(jobs -p) 2>/dev/null; rm -rf $WORK' EXIT
for p in $CLI_MTLS $CLI_PLAIN $HA_CLI $CLI_MTLS_H2 $CLI_PLAIN_H2; do bulk $p >/dev/null; rps $p >/dev/null; done   # warm-up
B_OX=$(bulk $CLI_MTLS); B_HA=$(bulk $HA_CLI); B_PLAIN=$(bulk $CLI_PLAIN); B_DIRECT=$(bulk $UP)
R_MTLS=$(rps $CLI_MTLS); R_PLAIN=$(rps $CLI_PLAIN); R_HA=$(rps $HA_CLI); R_MTLS_H2=$(rps $CLI_MTLS_H2); R_PLAIN_H2=$(rps $CLI_PLAIN_H2)
H_OX_FULL=$(handshakes $SRV -new); H_OX_RES=$(handshakes $SRV -reuse)
H_HA_FULL=$(handshakes $HA_SRV -new); H_HA_RES=$(handshakes $HA_SRV -reuse)

echo "### Bulk throughput (one 4 MiB download at a time, MB/s)"
echo
echo "| path | MB/s | vs HAProxy pair | vs AES-128-GCM on one core |"
echo "|---|---|---|---|"
echo "| openssl speed aes-128-gcm (1 core, 16 KiB) | $AES | | 1.00 |"
echo "| oxidecar mTLS pair | $B_OX | $(ratio $B_OX $B_HA) | $(ratio $B_OX $AES) |"
echo "| HAProxy mTLS pair | $B_HA | 1.00 | $(ratio $B_HA $AES) |"
echo "| oxidecar plaintext pair | $B_PLAIN | $(ratio $B_PLAIN $B_HA) | |"
echo "| direct to nginx | $B_DIRECT | | |"
echo
echo "### Handshakes per second (openssl s_time, TLS 1.2, client certificate, one client core)"
echo
echo "| server | full | resumed | resumed / full |"
echo "|---|---|---|---|"
echo "| oxidecar inbound | $H_OX_FULL | $H_OX_RES | $(ratio $H_OX_RES $H_OX_FULL) |"
echo "| HAProxy | $H_HA_FULL | $H_HA_RES | $(ratio $H_HA_RES $H_HA_FULL) |"
echo
echo "### HTTP requests/s over a warm pair (64 connections, 13-byte answers)"
echo
echo "| pair | req/s | vs plaintext oxidecar pair |"
echo "|---|---|---|"
echo "| oxidecar plaintext | $R_PLAIN | 1.00 |"
echo "| oxidecar mTLS | $R_MTLS | $(ratio $R_MTLS $R_PLAIN) |"
echo "| HAProxy mTLS | $R_HA | $(ratio $R_HA $R_PLAIN) |"
echo
echo "With HTTP/2 between the sidecars (clients still speak HTTP/1.1 to the client sidecar):"
echo
echo "| pair | req/s | vs plaintext h2c pair | vs plaintext HTTP/1.1 pair |"
echo "|---|---|---|---|"
echo "| oxidecar plaintext, h2c | $R_PLAIN_H2 | 1.00 | $(ratio $R_PLAIN_H2 $R_PLAIN) |"
echo "| oxidecar mTLS, h2 | $R_MTLS_H2 | $(ratio $R_MTLS_H2 $R_PLAIN_H2) | $(ratio $R_MTLS_H2 $R_PLAIN) |"
