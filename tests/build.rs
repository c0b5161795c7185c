//! Generates the tonic client and server of the test-only `oxidecar.test.Echo` service from a
//! manual definition (no .proto file, no protoc).

fn main() {
    let method = |name: &str, route: &str| {
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::grpc::EchoRequest")
            .output_type("crate::grpc::EchoReply")
            .codec_path("tonic_prost::ProstCodec")
    };
    let service = tonic_build::manual::Service::builder()
        .name("Echo")
        .package("oxidecar.test")
        .method(method("unary", "Unary").build())
        .method(method("chat", "Chat").client_streaming().server_streaming().build())
        .build();
    tonic_build::manual::Builder::new().compile(&[service]);
}
