//! Pub/sub RPCs.

use bytes::Bytes;
use dapr::dapr::proto::runtime::v1 as pb;
use tonic::{Request, Response, Status};

use super::GrpcApi;
use crate::api::BulkEntry;

impl GrpcApi {
    pub(super) async fn do_publish_event(&self, req: Request<pb::PublishEventRequest>) -> Result<Response<()>, Status> {
        let headers = req.metadata().clone().into_headers();
        let r = req.into_inner();
        let mut metadata = self.api.with_lane(&headers, r.metadata);
        if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            metadata.entry("traceparent".to_string()).or_insert_with(|| tp.to_string());
        }
        self.api.publish(&r.pubsub_name, &r.topic, Bytes::from(r.data), &r.data_content_type, &metadata).await?;
        Ok(Response::new(()))
    }

    pub(super) async fn do_bulk_publish_event(&self, req: Request<pb::BulkPublishRequest>) -> Result<Response<pb::BulkPublishResponse>, Status> {
        let headers = req.metadata().clone().into_headers();
        let mut r = req.into_inner();
        r.metadata = self.api.with_lane(&headers, r.metadata);
        let entries = r
            .entries
            .into_iter()
            .map(|e| BulkEntry { entry_id: e.entry_id, event: Bytes::from(e.event), content_type: e.content_type, metadata: e.metadata })
            .collect();
        let failed = self.api.bulk_publish(&r.pubsub_name, &r.topic, entries, &r.metadata).await?;
        let failed_entries = failed.into_iter().map(|(entry_id, error)| pb::BulkPublishResponseFailedEntry { entry_id, error }).collect();
        Ok(Response::new(pb::BulkPublishResponse { failed_entries }))
    }

    pub(super) async fn do_bulk_publish_event_alpha1(&self, req: Request<pb::BulkPublishRequest>) -> Result<Response<pb::BulkPublishResponse>, Status> {
        self.do_bulk_publish_event(req).await
    }
}
