# Pieces the benchmark scripts share (sourced, not run).

# A one-thread HAProxy HTTP config on stdout: haproxy_conf BIND SERVER [GLOBAL-LINE]. BIND and
# SERVER are the rest of HAProxy's `bind` and `server` lines: an address and any TLS options.
haproxy_conf() {
  cat <<CONF
global
  nbthread 1
${3:+  $3
}defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind $1
  default_backend b
backend b
  server up $2
CONF
}
