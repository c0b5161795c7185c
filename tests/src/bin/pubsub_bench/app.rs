//! The oxidecar side: the benchmark is the sidecar's app (a gRPC `AppCallback` server that lists one
//! subscription per pub/sub component and reports each `OnTopicEvent` to the recorder), and it
//! publishes with `PublishEvent` over the sidecar's gRPC API.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dapr::dapr::proto::common::v1::{InvokeRequest, InvokeResponse};
use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::app_callback_server::{AppCallback, AppCallbackServer};
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::measure::{Publish, Recorder};

/// Publish calls sharing one HTTP/2 connection to the sidecar, as a few SDK clients would.
const CALLERS_PER_CONNECTION: usize = 16;

struct App {
    rec: Arc<Recorder>,
    /// (pub/sub component, topic) the app subscribes to.
    subscriptions: Vec<(String, String)>,
}

fn not_served(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not served by the pub/sub benchmark app"))
}

#[tonic::async_trait]
impl AppCallback for App {
    async fn on_invoke(&self, _: Request<InvokeRequest>) -> Result<Response<InvokeResponse>, Status> {
        Err(not_served("OnInvoke"))
    }

    async fn list_topic_subscriptions(&self, _: Request<()>) -> Result<Response<pb::ListTopicSubscriptionsResponse>, Status> {
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|(pubsub, topic)| pb::TopicSubscription { pubsub_name: pubsub.clone(), topic: topic.clone(), ..Default::default() })
            .collect();
        Ok(Response::new(pb::ListTopicSubscriptionsResponse { subscriptions }))
    }

    async fn on_topic_event(&self, req: Request<pb::TopicEventRequest>) -> Result<Response<pb::TopicEventResponse>, Status> {
        self.rec.deliver(&req.get_ref().data);
        Ok(Response::new(pb::TopicEventResponse { status: pb::topic_event_response::TopicEventResponseStatus::Success as i32 }))
    }

    async fn list_input_bindings(&self, _: Request<()>) -> Result<Response<pb::ListInputBindingsResponse>, Status> {
        Ok(Response::new(pb::ListInputBindingsResponse::default()))
    }

    async fn on_binding_event(&self, _: Request<pb::BindingEventRequest>) -> Result<Response<pb::BindingEventResponse>, Status> {
        Err(not_served("OnBindingEvent"))
    }

    async fn on_bulk_topic_event(&self, _: Request<pb::TopicEventBulkRequest>) -> Result<Response<pb::TopicEventBulkResponse>, Status> {
        Err(not_served("OnBulkTopicEvent"))
    }

    async fn on_job_event(&self, _: Request<pb::JobEventRequest>) -> Result<Response<pb::JobEventResponse>, Status> {
        Err(not_served("OnJobEvent"))
    }
}

/// Serves the app on `127.0.0.1:port` until the process ends.
pub async fn serve(port: u16, rec: Arc<Recorder>, subscriptions: Vec<(String, String)>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let app = AppCallbackServer::new(App { rec, subscriptions });
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder().add_service(app).serve_with_incoming(incoming).await {
            eprintln!("app server: {e}");
        }
    });
    Ok(())
}

/// `PublishEvent` to one component and topic through the sidecar.
#[derive(Clone)]
pub struct Sidecar {
    clients: Arc<Vec<DaprClient<Channel>>>,
    next: Arc<AtomicUsize>,
    pubsub: String,
    topic: String,
}

impl Sidecar {
    pub async fn connect(addr: &str, pubsub: &str, topic: &str, callers: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for _ in 0..callers.div_ceil(CALLERS_PER_CONNECTION) {
            let ch = Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?;
            clients.push(DaprClient::new(ch));
        }
        Ok(Self { clients: Arc::new(clients), next: Arc::default(), pubsub: pubsub.to_string(), topic: topic.to_string() })
    }
}

impl Publish for Sidecar {
    async fn publish(&self, payload: Vec<u8>) -> anyhow::Result<()> {
        let mut c = self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()].clone();
        let req = pb::PublishEventRequest {
            pubsub_name: self.pubsub.clone(),
            topic: self.topic.clone(),
            data: payload,
            data_content_type: "text/plain".to_string(),
            ..Default::default()
        };
        c.publish_event(req).await?;
        Ok(())
    }
}
