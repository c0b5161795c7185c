//! Configuration, lock, secret and binding RPCs.

use std::collections::HashMap;

use bytes::Bytes;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as pb;
use oxidecar_components::configuration::ConfigItem;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{BoxStream, GrpcApi};

fn items(m: HashMap<String, ConfigItem>) -> HashMap<String, common::ConfigurationItem> {
    m.into_iter()
        .map(|(k, v)| (k, common::ConfigurationItem { value: v.value, version: v.version, metadata: v.metadata }))
        .collect()
}

impl GrpcApi {
    pub(super) async fn do_get_configuration(&self, req: Request<pb::GetConfigurationRequest>) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        let r = req.into_inner();
        let found = self.api.get_configuration(&r.store_name, &r.keys).await?;
        Ok(Response::new(pb::GetConfigurationResponse { items: items(found) }))
    }

    pub(super) async fn do_get_configuration_alpha1(&self, req: Request<pb::GetConfigurationRequest>) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        self.do_get_configuration(req).await
    }

    /// Streams changes; the first message carries only the subscription id. The subscription ends
    /// when the client goes away, it is unsubscribed, or the runtime shuts down.
    pub(super) async fn do_subscribe_configuration(
        &self,
        req: Request<pb::SubscribeConfigurationRequest>,
    ) -> Result<Response<BoxStream<pb::SubscribeConfigurationResponse>>, Status> {
        let r = req.into_inner();
        let mut sub = self.api.subscribe_configuration(&r.store_name, r.keys, &r.metadata).await?;
        let (tx, rx) = mpsc::channel(16);
        let id = sub.id.clone();
        let first = pb::SubscribeConfigurationResponse { id: id.clone(), items: HashMap::new() };
        let _ = tx.send(Ok(first)).await;
        let api = self.api.clone();
        let store = r.store_name;
        let span = tracing::debug_span!("configuration_subscription", store = %store, id = %id);
        self.api.tasks.spawn(
            async move {
                loop {
                    let batch = tokio::select! {
                        _ = api.cancel.cancelled() => break,
                        _ = tx.closed() => break,
                        b = sub.updates.recv() => match b { Some(b) => b, None => break },
                    };
                    let msg = pb::SubscribeConfigurationResponse { id: id.clone(), items: items(batch) };
                    if tx.send(Ok(msg)).await.is_err() {
                        break;
                    }
                }
                let _ = api.unsubscribe_configuration(&store, &id).await;
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    pub(super) async fn do_subscribe_configuration_alpha1(
        &self,
        req: Request<pb::SubscribeConfigurationRequest>,
    ) -> Result<Response<BoxStream<pb::SubscribeConfigurationResponse>>, Status> {
        self.do_subscribe_configuration(req).await
    }

    pub(super) async fn do_unsubscribe_configuration(&self, req: Request<pb::UnsubscribeConfigurationRequest>) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
        let r = req.into_inner();
        let ok = self.api.unsubscribe_configuration(&r.store_name, &r.id).await?;
        let message = if ok { String::new() } else { format!("configuration store {:?}: subscription {:?} does not exist", r.store_name, r.id) };
        Ok(Response::new(pb::UnsubscribeConfigurationResponse { ok, message }))
    }

    pub(super) async fn do_unsubscribe_configuration_alpha1(&self, req: Request<pb::UnsubscribeConfigurationRequest>) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
        self.do_unsubscribe_configuration(req).await
    }

    pub(super) async fn do_try_lock_alpha1(&self, req: Request<pb::TryLockRequest>) -> Result<Response<pb::TryLockResponse>, Status> {
        let r = req.into_inner();
        let success = self.api.try_lock(&r.store_name, &r.resource_id, &r.lock_owner, r.expiry_in_seconds).await?;
        Ok(Response::new(pb::TryLockResponse { success }))
    }

    pub(super) async fn do_unlock_alpha1(&self, req: Request<pb::UnlockRequest>) -> Result<Response<pb::UnlockResponse>, Status> {
        let r = req.into_inner();
        let status = self.api.unlock(&r.store_name, &r.resource_id, &r.lock_owner).await?;
        Ok(Response::new(pb::UnlockResponse { status: status as i32 }))
    }

    pub(super) async fn do_get_secret(&self, req: Request<pb::GetSecretRequest>) -> Result<Response<pb::GetSecretResponse>, Status> {
        let r = req.into_inner();
        let data = self.api.get_secret(&r.store_name, &r.key, &r.metadata).await?;
        Ok(Response::new(pb::GetSecretResponse { data }))
    }

    pub(super) async fn do_get_bulk_secret(&self, req: Request<pb::GetBulkSecretRequest>) -> Result<Response<pb::GetBulkSecretResponse>, Status> {
        let r = req.into_inner();
        let all = self.api.get_bulk_secret(&r.store_name, &r.metadata).await?;
        let data = all.into_iter().map(|(k, secrets)| (k, pb::SecretResponse { secrets })).collect();
        Ok(Response::new(pb::GetBulkSecretResponse { data }))
    }

    pub(super) async fn do_invoke_binding(&self, req: Request<pb::InvokeBindingRequest>) -> Result<Response<pb::InvokeBindingResponse>, Status> {
        let r = req.into_inner();
        let resp = self.api.invoke_binding(&r.name, &r.operation, Bytes::from(r.data), r.metadata).await?;
        Ok(Response::new(pb::InvokeBindingResponse { data: resp.data.to_vec(), metadata: resp.metadata }))
    }
}
