//! `deploy/`: the Dockerfile's stages and user, every Kubernetes manifest against the Kubernetes
//! JSON schemas (kubernetes-validate from PyPI, offline), Dapr Component files, the sample's mesh
//! configs through `oxidecar validate`, the Helm chart rendered (Go templates via the gtmpl crate:
//! no helm binary is in the package registries) and validated, Istio's injection templates
//! rendered, and the Grafana dashboard's metric names checked against a running proxy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gtmpl_value::Value as Gv;
use oxidecar_tests::mtls::{DevCa, identity_yaml, spiffe};
use oxidecar_tests::otlp::OtlpReceiver;
use oxidecar_tests::upstream::{http_upstream, tcp_echo};
use oxidecar_tests::*;
use serde_norway::Value as Yv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

fn documents(text: &str) -> Vec<Yv> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .filter(|v: &Yv| !v.is_null())
        .collect()
}

fn get<'a>(v: &'a Yv, path: &[&str]) -> Option<&'a Yv> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn string(v: &Yv, path: &[&str]) -> String {
    get(v, path).and_then(Yv::as_str).unwrap_or_default().to_string()
}

/// The kubernetes-validate next to the test venv's python (tests/run installs it).
fn validator() -> PathBuf {
    let python = std::env::var("OXIDECAR_PYTHON").unwrap_or_else(|_| format!("{}/.cache/oxidecar-venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let bin = Path::new(&python).with_file_name("kubernetes-validate");
    assert!(bin.exists(), "{} is missing: run tests/run (it installs kubernetes-validate into the venv)", bin.display());
    bin
}

/// Validates `files` strictly against the Kubernetes schemas; panics with the validator's output.
async fn kubernetes_validate(files: &[PathBuf]) {
    let out = tokio::process::Command::new(validator()).arg("--strict").arg("--no-warn").args(files).output().await.expect("kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(text.matches(" passed for resource ").count() >= files.len(), "every file checked:\n{text}");
}

/// A Dapr Component as daprd and oxidecar read it.
fn check_component(doc: &Yv, file: &Path) {
    assert_eq!(string(doc, &["apiVersion"]), "dapr.io/v1alpha1", "{}", file.display());
    assert!(!string(doc, &["metadata", "name"]).is_empty(), "{}: metadata.name", file.display());
    let kind = string(doc, &["spec", "type"]);
    assert!(kind.contains('.'), "{}: spec.type {kind:?}", file.display());
    assert_eq!(string(doc, &["spec", "version"]), "v1", "{}", file.display());
    for m in get(doc, &["spec", "metadata"]).and_then(Yv::as_sequence).into_iter().flatten() {
        assert!(!string(m, &["name"]).is_empty(), "{}: metadata entry without name", file.display());
        assert!(m.get("value").is_some() || m.get("secretKeyRef").is_some(), "{}: {m:?} needs value or secretKeyRef", file.display());
    }
}

#[test]
fn dockerfile_builds_in_one_stage_and_runs_minimal_as_uid_1337() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    // Join continuation lines, drop comments.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let mut stages: Vec<(String, String, Vec<&str>)> = Vec::new();
    let mut args = BTreeSet::new();
    for l in &lines {
        let (inst, rest) = l.split_once(' ').unwrap_or((l, ""));
        match inst.to_ascii_uppercase().as_str() {
            "FROM" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                assert!(parts.len() == 3 && parts[1].eq_ignore_ascii_case("AS"), "every stage is named: {l}");
                for var in parts[0].split("${").skip(1).filter_map(|s| s.split_once('}')).map(|(v, _)| v) {
                    assert!(args.contains(var), "{var} is declared with ARG before {l}");
                }
                stages.push((parts[2].to_string(), parts[0].to_string(), Vec::new()));
            }
            "ARG" if stages.is_empty() => {
                args.insert(rest.split('=').next().unwrap_or_default().to_string());
            }
            known => {
                assert!(
                    ["RUN", "COPY", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "ARG", "ENV", "LABEL"].contains(&known),
                    "unexpected instruction {known}"
                );
                stages.last_mut().expect("an instruction before FROM").2.push(l);
            }
        }
    }
    let names: Vec<&str> = stages.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["builder", "runtime"]);
    let (_, _, builder) = &stages[0];
    assert!(builder.iter().any(|l| l.contains("cargo build --release --locked -p oxidecar")), "{builder:?}");
    assert!(builder.iter().any(|l| l.contains("/out/oxidecar")));
    for (i, (name, base, body)) in stages.iter().enumerate() {
        for l in body.iter().filter(|l| l.starts_with("COPY --from=")) {
            let from = l["COPY --from=".len()..].split_whitespace().next().unwrap_or_default();
            assert!(names[..i].contains(&from), "{name}: {l} copies from an earlier stage");
        }
        if i > 0 {
            assert!(body.contains(&"USER 1337:1337"), "{name} runs as uid 1337: {body:?}");
            assert!(body.contains(&"COPY --from=builder /out/oxidecar /usr/local/bin/oxidecar"), "{name}: {body:?}");
        }
        if name == "runtime" {
            assert!(base.starts_with("gcr.io/distroless/cc-debian12"), "a minimal runtime image: {base}");
            assert!(body.contains(&r#"ENTRYPOINT ["/usr/local/bin/oxidecar"]"#));
            let exposed: BTreeSet<&str> = body.iter().filter_map(|l| l.strip_prefix("EXPOSE ")).flat_map(str::split_whitespace).collect();
            for port in ["15001", "15006", "15000", "15020", "15021", "15090", "50001", "3500"] {
                assert!(exposed.contains(port), "EXPOSE {port}");
            }
        }
    }
    // What the runtime image must provide: the binary links nothing beyond libc, libm, libgcc_s.
    let ldd = std::process::Command::new("ldd").arg(binary()).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        assert!(
            ["linux-vdso", "libgcc_s", "libm.", "libc.", "/lib64/ld-linux"].iter().any(|ok| lib.starts_with(ok)),
            "the distroless cc image lacks {lib}"
        );
    }
}

#[tokio::test]
async fn manifests_validate_against_kubernetes_schemas_and_components_are_daprs() {
    let mut files = Vec::new();
    yaml_files(&deploy().join("k8s"), &mut files);
    files.push(deploy().join("istio/sample-pod-annotations.yaml"));
    files.push(deploy().join("istio/bootstrap-configmap.yaml"));
    files.sort();
    let mut k8s = Vec::new();
    let mut components = 0;
    for f in &files {
        let docs = documents(&std::fs::read_to_string(f).expect("read"));
        assert!(!docs.is_empty(), "{}", f.display());
        if docs.iter().all(|d| string(d, &["kind"]) == "Component") {
            docs.iter().for_each(|d| check_component(d, f));
            components += docs.len();
        } else {
            assert!(docs.iter().all(|d| string(d, &["kind"]) != "Component"), "{}: mixes Components and Kubernetes kinds", f.display());
            k8s.push(f.clone());
        }
    }
    assert!(components >= 2 && k8s.len() >= 5, "{components} components, {k8s:?}");
    kubernetes_validate(&k8s).await;

    // The sample's components ConfigMap carries exactly the component files.
    let sample = deploy().join("k8s/sample");
    let cm = documents(&std::fs::read_to_string(sample.join("dapr-components.yaml")).expect("read")).remove(0);
    let data = get(&cm, &["data"]).and_then(Yv::as_mapping).expect("data");
    let mut on_disk = BTreeMap::new();
    for e in std::fs::read_dir(sample.join("components")).expect("components").flatten() {
        on_disk.insert(e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).expect("read"));
    }
    let in_map: BTreeMap<String, String> =
        data.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.as_str().unwrap_or_default().to_string())).collect();
    assert_eq!(in_map, on_disk, "deploy/k8s/sample/dapr-components.yaml is out of date with components/");
}

/// `oxidecar validate` on a mesh config taken from a ConfigMap.
async fn validate_mesh(yaml: &str, what: &str) {
    let dir = TempDir::new("deploy-mesh");
    let file = dir.0.join("mesh.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = tokio::process::Command::new(binary()).arg("validate").arg(&file).output().await.expect("validate");
    assert!(out.status.success(), "{what}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn the_samples_mesh_configs_and_components_load_in_oxidecar() {
    let sample = deploy().join("k8s/sample");
    let mut checked = 0;
    for name in ["reviews.yaml", "productpage.yaml"] {
        for doc in documents(&std::fs::read_to_string(sample.join(name)).expect("read")) {
            if string(&doc, &["kind"]) == "ConfigMap" {
                validate_mesh(&string(&doc, &["data", "mesh.yaml"]), name).await;
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2);
    // Mode 1's bootstrap (beside pilot-agent) is a valid config too.
    let boot = documents(&std::fs::read_to_string(deploy().join("istio/bootstrap-configmap.yaml")).expect("read")).remove(0);
    validate_mesh(&string(&boot, &["data", "bootstrap.yaml"]), "istio/bootstrap-configmap.yaml").await;
    // The component files load (types and metadata keys known to this build).
    let p = Proxy::start_with_args(AdminPorts::new(), "", &["--resources-path", &sample.join("components").display().to_string()]).await;
    assert_eq!(p.admin("/ready").await.0, 200);
}

/// Sprig's `indent`: prefixes every line with N spaces.
fn indent(args: &[Gv]) -> Result<Gv, gtmpl_value::FuncError> {
    let (Some(Gv::Number(n)), Some(Gv::String(s))) = (args.first(), args.get(1)) else {
        return Err(gtmpl_value::FuncError::ExactlyXArgs("indent".into(), 2));
    };
    let pad = " ".repeat(n.as_u64().unwrap_or(0) as usize);
    Ok(Gv::String(s.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")))
}

fn to_gtmpl(v: &Yv) -> Gv {
    match v {
        Yv::Null => Gv::Nil,
        Yv::Bool(b) => Gv::Bool(*b),
        Yv::Number(n) => n.as_i64().map(Gv::from).or_else(|| n.as_f64().map(Gv::from)).unwrap_or(Gv::Nil),
        Yv::String(s) => Gv::String(s.clone()),
        Yv::Sequence(s) => Gv::Array(s.iter().map(to_gtmpl).collect()),
        Yv::Mapping(m) => Gv::Map(m.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_gtmpl(v))).collect()),
        Yv::Tagged(t) => to_gtmpl(&t.value),
    }
}

/// Overrides `path` in a YAML value (as `--set a.b=c` does).
fn set(values: &mut Yv, path: &[&str], v: Yv) {
    let mut cur = values;
    for k in &path[..path.len() - 1] {
        cur = cur.get_mut(*k).expect("path exists");
    }
    cur[path[path.len() - 1]] = v;
}

/// Renders every template of the chart with `values`, as `helm template rel --namespace demo`.
fn render_chart(values: &Yv) -> Vec<(String, String)> {
    let chart_dir = deploy().join("helm/oxidecar");
    let chart: Yv = serde_norway::from_str(&std::fs::read_to_string(chart_dir.join("Chart.yaml")).expect("Chart.yaml")).expect("yaml");
    let mut root = HashMap::new();
    root.insert("Values".to_string(), to_gtmpl(values));
    root.insert(
        "Release".to_string(),
        Gv::Map(HashMap::from([
            ("Name".to_string(), Gv::from("rel".to_string())),
            ("Namespace".to_string(), Gv::from("demo".to_string())),
            ("Service".to_string(), Gv::from("Helm".to_string())),
        ])),
    );
    root.insert(
        "Chart".to_string(),
        Gv::Map(HashMap::from([
            ("Name".to_string(), Gv::from(string(&chart, &["name"]))),
            ("Version".to_string(), Gv::from(string(&chart, &["version"]))),
            ("AppVersion".to_string(), Gv::from(string(&chart, &["appVersion"]))),
        ])),
    );
    let ctx = Gv::Map(root);
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(chart_dir.join("templates")).expect("templates").flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let mut t = gtmpl::Template::default();
        t.add_func("indent", indent);
        t.parse(std::fs::read_to_string(&path).expect("template")).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rendered = t.render(&gtmpl::Context::from(ctx.clone())).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), rendered));
    }
    out
}

#[tokio::test]
async fn helm_chart_renders_to_valid_manifests_for_default_and_custom_values() {
    let values: Yv = serde_norway::from_str(&std::fs::read_to_string(deploy().join("helm/oxidecar/values.yaml")).expect("values")).expect("yaml");
    let mut custom = values.clone();
    set(&mut custom, &["app", "name"], Yv::from("orders"));
    set(&mut custom, &["oxidecar", "capture"], Yv::Bool(false));
    set(&mut custom, &["oxidecar", "tracing", "otlpEndpoint"], Yv::from("http://otel-collector.observability:4317"));
    set(&mut custom, &["oxidecar", "appMetricsPath"], Yv::from("/metrics"));
    for (label, values) in [("default", &values), ("custom", &custom)] {
        let rendered = render_chart(values);
        let dir = TempDir::new("helm");
        let mut files = Vec::new();
        let mut docs = Vec::new();
        for (name, text) in &rendered {
            let f = dir.0.join(name);
            std::fs::write(&f, text).expect("write");
            files.push(f);
            docs.extend(documents(text));
        }
        kubernetes_validate(&files).await;
        let kinds: BTreeSet<String> = docs.iter().map(|d| string(d, &["kind"])).collect();
        assert_eq!(kinds, BTreeSet::from(["ConfigMap", "Deployment", "Service", "ServiceAccount"].map(String::from)), "{label}");
        let deployment = docs.iter().find(|d| string(d, &["kind"]) == "Deployment").expect("deployment");
        let pod = get(deployment, &["spec", "template", "spec"]).expect("pod spec");
        let sidecar = &get(pod, &["containers"]).and_then(Yv::as_sequence).expect("containers")[0];
        assert_eq!(string(sidecar, &["name"]), "oxidecar");
        assert_eq!(get(sidecar, &["securityContext", "runAsUser"]).and_then(Yv::as_u64), Some(1337), "{label}");
        let app_name = string(get(values, &["app"]).expect("app"), &["name"]);
        assert!(get(sidecar, &["args"]).and_then(Yv::as_sequence).expect("args").contains(&Yv::from(format!("--app-id={app_name}"))));
        let capture = get(values, &["oxidecar", "capture"]).and_then(Yv::as_bool).unwrap_or(false);
        assert_eq!(pod.get("initContainers").is_some(), capture, "{label}: capture init container iff oxidecar.capture");
        let mesh = docs.iter().find(|d| string(d, &["metadata", "name"]) == "rel-mesh").expect("mesh ConfigMap");
        let mesh_yaml = string(mesh, &["data", "mesh.yaml"]);
        validate_mesh(&mesh_yaml, label).await;
        assert_eq!(mesh_yaml.contains("otlp:"), label == "custom", "{mesh_yaml}");
        assert_eq!(mesh_yaml.contains("app_scrape:"), label == "custom", "{mesh_yaml}");
        let comps = docs.iter().find(|d| string(d, &["metadata", "name"]) == "rel-components").expect("components ConfigMap");
        let statestore = string(comps, &["data", "statestore.yaml"]);
        check_component(&documents(&statestore)[0], Path::new("rendered statestore.yaml"));
    }
}

#[test]
fn istio_injection_templates_render_to_a_patch_of_istio_proxy() {
    let values: Yv = serde_norway::from_str(&std::fs::read_to_string(deploy().join("istio/injector-values.yaml")).expect("values")).expect("yaml");
    let templates = get(&values, &["sidecarInjectorWebhook", "templates"]).and_then(Yv::as_mapping).expect("templates");
    let mut seen = Vec::new();
    for (name, body) in templates {
        let name = name.as_str().unwrap_or_default();
        let meta = |labels: &[(&str, &str)]| Gv::Map(labels.iter().map(|(k, v)| (k.to_string(), Gv::from(v.to_string()))).collect());
        let ctx = Gv::Map(HashMap::from([
            (
                "ObjectMeta".to_string(),
                Gv::Map(HashMap::from([("Labels".to_string(), meta(&[("app", "reviews")])), ("Annotations".to_string(), meta(&[]))])),
            ),
            ("DeploymentMeta".to_string(), Gv::Map(HashMap::from([("Name".to_string(), Gv::from("reviews-v1".to_string())), ("Namespace".to_string(), Gv::from("default".to_string()))]))),
        ]));
        let rendered = gtmpl::template(body.as_str().expect("a template string"), ctx).unwrap_or_else(|e| panic!("{name}: {e}"));
        let patch: Yv = serde_norway::from_str(&rendered).unwrap_or_else(|e| panic!("{name}: {e}\n{rendered}"));
        let containers = get(&patch, &["spec", "containers"]).and_then(Yv::as_sequence).expect("containers");
        assert!(containers.iter().any(|c| string(c, &["name"]) == "istio-proxy"), "{name} patches Istio's proxy container");
        // The container that runs oxidecar: beside pilot-agent (Mode 1) or in its place (Mode 2).
        let (runs, xds) = if name == "oxidecar" { ("oxidecar", "--xds-address=unix:") } else { ("istio-proxy", "--xds-address=https://") };
        let c = containers.iter().find(|c| string(c, &["name"]) == runs).unwrap_or_else(|| panic!("{name}: no {runs} container"));
        assert!(string(c, &["image"]).starts_with("ghcr.io/oxidecar/oxidecar:") && string(c, &["image"]).ends_with(":0.1.0"), "{name}: {rendered}");
        assert_eq!(get(c, &["securityContext", "runAsUser"]).and_then(Yv::as_u64), Some(1337), "{name}");
        let args: Vec<String> = get(c, &["args"]).and_then(Yv::as_sequence).expect("args").iter().map(|a| a.as_str().unwrap_or_default().to_string()).collect();
        assert!(args.iter().any(|a| a.starts_with(xds)), "{name}: {args:?}");
        assert!(args.contains(&"--app-id=reviews".to_string()), "{name}: {args:?}");
        if name == "oxidecar" {
            let agent = containers.iter().find(|c| string(c, &["name"]) == "istio-proxy").expect("istio-proxy");
            let disabled = get(agent, &["env"]).and_then(Yv::as_sequence).is_some_and(|e| e.iter().any(|v| string(v, &["name"]) == "DISABLE_ENVOY" && string(v, &["value"]) == "true"));
            assert!(disabled, "pilot-agent runs without Envoy: {rendered}");
        }
        seen.push(name.to_string());
    }
    assert_eq!(seen, ["oxidecar", "oxidecar-standalone"]);
}

/// Metric families a dashboard expression names (`istio_*` / `oxidecar_*`, histogram suffixes
/// stripped).
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy().join("grafana/oxidecar-dashboard.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let mut names = BTreeSet::new();
    for e in exprs {
        let bytes = e.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if (e[i..].starts_with("istio_") || e[i..].starts_with("oxidecar_")) && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) {
                let end = e[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(e.len(), |n| i + n);
                let name = &e[i..end];
                let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
                names.insert(family.to_string());
                i = end;
            } else {
                i += 1;
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let wanted = dashboard_metrics();
    assert!(wanted.len() >= 12, "{wanted:?}");
    // Two sidecars over mTLS, with lanes, a TCP chain, tracing, a runtime API call and a reload:
    // every family has samples once this traffic has passed.
    let ca = DevCa::new("dashboard").await;
    ca.mint(&["default/productpage", "default/reviews"], &[]).await;
    let ident = |w: &str| identity_yaml(&ca.workload_dir(w), &ca.root());
    let otlp = OtlpReceiver::start().await;
    let app = http_upstream("reviews").await;
    let echo = tcp_echo().await;
    let (inbound, inbound_dev, outbound, tcp_port, dapr_http) = (free_port(), free_port(), free_port(), free_port(), free_port());
    let server = format!(
        "{}node: {{ workload: reviews-v1, namespace: default }}\nlisteners:\n  - name: in\n    address: 127.0.0.1:{inbound}\n    direction: inbound\n    filter_chains:\n      - match: {{ transport_protocol: tls }}\n        tls: {{}}\n        http: {{ route_config: in }}\n  - name: in-dev\n    address: 127.0.0.1:{inbound_dev}\n    direction: inbound\n    filter_chains:\n      - match: {{ transport_protocol: tls }}\n        tls: {{}}\n        http: {{ route_config: in }}\nroute_configs:\n  - name: in\n    virtual_hosts:\n{}clusters:\n  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n",
        ident("default/reviews"),
        catch_all("cluster: app"),
        app.port()
    );
    let srv = Proxy::start(AdminPorts::new(), &server).await;
    let client_body = |sampling: u32| {
        format!(
            "{}node: {{ workload: productpage-v1, namespace: default }}\ntelemetry:\n  access_log: {{ format: json, path: /dev/null }}\n  tracing: {{ sampling: {sampling}, otlp: {{ endpoint: \"{}\" }} }}\nlisteners:\n  - name: out\n    address: 127.0.0.1:{outbound}\n    filter_chains: [{{ http: {{ route_config: main }} }}]\n  - name: db\n    address: 127.0.0.1:{tcp_port}\n    filter_chains: [{{ tcp: {{ cluster: echo }} }}]\nroute_configs:\n  - name: main\n    virtual_hosts:\n{}clusters:\n  - name: reviews\n    tls: {{ mode: istio_mutual, subject_alt_names: [\"{}\"] }}\n    endpoints: [{{ address: 127.0.0.1:{inbound} }}, {{ address: 127.0.0.1:{inbound_dev}, labels: {{ lane: dev }} }}]\n  - {{ name: echo, endpoints: [{{ address: {echo} }}] }}\n",
            ident("default/productpage"),
            otlp.endpoint(),
            catch_all("cluster: reviews"),
            spiffe("default/reviews")
        )
    };
    let cli = Proxy::start_with_args(AdminPorts::new(), &client_body(100), &["--dapr-http-port", &dapr_http.to_string()]).await;
    let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{outbound}/"), &[("host", "reviews"), ("x-lane", "dev")], "").await.expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut s = tokio::net::TcpStream::connect(local(tcp_port)).await.expect("connect");
    s.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.expect("echo");
    drop(s);
    let saved = send(&http1_client(), "POST", &format!("http://127.0.0.1:{dapr_http}/v1.0/state/statestore"), &[("content-type", "application/json")], r#"[{"key":"k","value":1}]"#)
        .await
        .expect("state");
    assert_eq!(saved.status, 204);
    cli.rewrite_config(&client_body(50));
    let families = eventually(Duration::from_secs(10), || async {
        let text = format!("{}{}", cli.metrics_now().await, srv.metrics_now().await);
        let have: BTreeSet<String> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
        let missing: Vec<&String> = wanted.iter().filter(|w| !have.contains(*w)).collect();
        missing.is_empty().then_some(have)
    })
    .await;
    let Some(_) = families else {
        let text = format!("{}{}", cli.metrics_now().await, srv.metrics_now().await);
        let have: BTreeSet<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_whitespace().next()).collect();
        let missing: Vec<&String> = wanted.iter().filter(|w| !have.contains(w.as_str())).collect();
        panic!("the dashboard queries metrics the proxy does not export: {missing:?}");
    };
}
