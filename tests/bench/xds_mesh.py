#!/usr/bin/env python3
"""Writes an Envoy config dump of a generated mesh as istiod would send it to one sidecar:
N services, each an EDS cluster (LEAST_REQUEST, Istio's circuit breakers and tlsMode-istio
transport socket match), a load assignment with 3 endpoints, a per-service outbound listener
(bind_to_port false, HTTP via RDS) and a route config with Istio's default retry policy.
Usage: xds_mesh.py N > dump.json"""
import json, sys

n = int(sys.argv[1])
T = "type.googleapis.com/"
clusters, cla, listeners, routes = [], [], [], []
tls = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
       "common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {"ads": {}, "resource_api_version": "V3"}}],
                              "combined_validation_context": {"default_validation_context": {"match_subject_alt_names": [{"exact": "spiffe://cluster.local/ns/default/sa/default"}]},
                                                              "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": {"ads": {}, "resource_api_version": "V3"}}},
                              "alpn_protocols": ["istio-peer-exchange", "istio"]}}}
for i in range(n):
    host = f"svc{i}.ns{i % 50}.svc.cluster.local"
    name = f"outbound|8080||{host}"
    ip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
    clusters.append({"cluster": {"@type": T + "envoy.config.cluster.v3.Cluster", "name": name, "type": "EDS",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}, "service_name": name},
        "connect_timeout": "10s", "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [{"max_connections": 4294967295, "max_pending_requests": 4294967295, "max_requests": 4294967295, "max_retries": 4294967295, "track_remaining": True}]},
        "transport_socket_matches": [{"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": dict(tls, typed_config=dict(tls["typed_config"], sni=f"outbound_.8080_._.{host}"))},
                                     {"name": "tlsMode-disabled", "match": {}, "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": T + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}],
        "metadata": {"filter_metadata": {"istio": {"services": [{"host": host, "name": f"svc{i}", "namespace": f"ns{i % 50}"}]}}}}})
    cla.append({"endpoint_config": {"@type": T + "envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": name, "endpoints": [{"locality": {}, "lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": f"172.{16 + (i * 3 + k) // 65536}.{((i * 3 + k) // 256) % 256}.{(i * 3 + k) % 256}", "port_value": 8080}}},
         "health_status": "HEALTHY", "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}, "load_balancing_weight": 1} for k in range(3)]}]}})
    listeners.append({"name": f"{ip}_8080", "active_state": {"listener": {"@type": T + "envoy.config.listener.v3.Listener", "name": f"{ip}_8080",
        "address": {"socket_address": {"address": ip, "port_value": 8080}}, "bind_to_port": False, "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]},
            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {"@type": T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name, "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"}, "route_config_name": f"{host}:8080"},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"}}]}}]},
            {"filter_chain_match": {}, "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": name, "cluster": name}}]}]}}})
    routes.append({"route_config": {"@type": T + "envoy.config.route.v3.RouteConfiguration", "name": f"{host}:8080", "validate_clusters": False, "ignore_port_in_host_matching": True,
        "virtual_hosts": [{"name": f"{host}:8080", "domains": ["*"], "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "0s",
            "retry_policy": {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", "num_retries": 2, "retriable_status_codes": [503],
                             "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                             "host_selection_retry_max_attempts": "5"}, "max_grpc_timeout": "0s"}}]}]}})
clusters.append({"cluster": {"@type": T + "envoy.config.cluster.v3.Cluster", "name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "10s"}})
listeners.append({"name": "virtualOutbound", "active_state": {"listener": {"@type": T + "envoy.config.listener.v3.Listener", "name": "virtualOutbound",
    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}}, "use_original_dst": True, "traffic_direction": "OUTBOUND",
    "filter_chains": [{"name": "virtualOutbound-catchall-tcp", "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "PassthroughCluster", "cluster": "PassthroughCluster"}}]}]}}})
json.dump({"configs": [
    {"@type": T + "envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": clusters},
    {"@type": T + "envoy.admin.v3.EndpointsConfigDump", "dynamic_endpoint_configs": cla},
    {"@type": T + "envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": listeners},
    {"@type": T + "envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": routes}]}, sys.stdout)
