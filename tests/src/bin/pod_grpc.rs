//! The tonic echo service and its client as a program, for running inside a pod's namespace:
//! `pod_grpc serve ADDR NAME` serves until killed; `pod_grpc call URL MESSAGE` makes one unary
//! call and prints the reply (exit 1 with the status on failure).

use oxidecar_tests::grpc::{EchoClient, EchoRequest, EchoServer, EchoService};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("serve"), Some(addr), Some(name)) => {
            let svc = EchoServer::new(EchoService { name: name.clone(), always_fail: None });
            tonic::transport::Server::builder().add_service(svc).serve(addr.parse()?).await?;
            Ok(())
        }
        (Some("call"), Some(url), Some(message)) => {
            let mut client = EchoClient::connect(url.clone()).await?;
            match client.unary(EchoRequest { message: message.clone(), fail_code: 0 }).await {
                Ok(reply) => {
                    println!("{}", reply.into_inner().message);
                    Ok(())
                }
                Err(status) => {
                    eprintln!("grpc status {:?}: {}", status.code(), status.message());
                    std::process::exit(1);
                }
            }
        }
        _ => anyhow::bail!("usage: pod_grpc serve ADDR NAME | pod_grpc call URL MESSAGE"),
    }
}
