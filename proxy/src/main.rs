//! `oxidecar`: one sidecar that is both the mesh data plane (in place of Envoy under Istio) and the
//! application runtime (Dapr-compatible APIs on localhost).

mod accesslog;
mod admin;
mod capture;
mod cli;
mod control;
mod devca;
mod dns;
mod health;
mod http;
mod invoke;
mod lanes;
mod listener;
mod logctl;
mod metrics;
mod original_dst;
mod peer;
mod server;
mod shared;
mod tables;
mod tcp;
mod trace;
mod validate;
mod wait;
mod tls;

use std::process::ExitCode;

use clap::Parser;


fn main() -> ExitCode {
    // Before Pingora or anything else can install ring: our TLS runs on aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => {
            logctl::init(&args.log_level, args.log_as_json);
            match server::run(args.run_options()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("oxidecar: cannot start:\n{e}");
                    ExitCode::from(2)
                }
            }
        }
        cli::Command::Wait(args) => wait::run(&args),
        cli::Command::Capture(args) => ExitCode::from(capture::run(&args)),
        cli::Command::Validate { envoy_config_dump: Some(dump), .. } => validate::envoy_config_dump(&dump),
        cli::Command::Validate { file: None, .. } => ExitCode::from(2),
        cli::Command::Validate { file: Some(file), .. } => match oxidecar_xds::load_file(&file) {
            Ok(s) => {
                println!(
                    "{}: valid ({} listeners, {} route configs, {} clusters)",
                    file.display(),
                    s.listeners.len(),
                    s.route_configs.len(),
                    s.clusters.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                for p in e.problems() {
                    eprintln!("{p}");
                }
                ExitCode::from(2)
            }
        },
        cli::Command::DevCa(args) => dev_ca(&args),
    }
}

fn dev_ca(args: &cli::DevCaArgs) -> ExitCode {
    let ca = match devca::DevCa::open_or_create(&args.dir, &args.trust_domain) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("oxidecar dev-ca: {e}");
            return ExitCode::from(2);
        }
    };
    println!("root: {}", args.dir.join(devca::ROOT_CERT).display());
    for w in &args.workloads {
        match ca.write_workload(&args.dir, w, args.validity, args.backdate) {
            Ok((dir, id)) => println!("{id}: {}", dir.display()),
            Err(e) => {
                eprintln!("oxidecar dev-ca: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
