//! State RPCs.

use bytes::Bytes;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as pb;
use oxidecar_components::state::{Concurrency, DeleteRequest, SetRequest, TransactionOp};
use tonic::{Request, Response, Status};

use super::GrpcApi;
use crate::error::ApiError;

fn concurrency(options: Option<&common::StateOptions>) -> Concurrency {
    match options.map(|o| o.concurrency) {
        Some(c) if c == common::state_options::StateConcurrency::ConcurrencyFirstWrite as i32 => Concurrency::FirstWrite,
        _ => Concurrency::LastWrite,
    }
}

fn etag(e: Option<common::Etag>) -> Option<String> {
    e.map(|e| e.value).filter(|v| !v.is_empty())
}

fn set_request(item: common::StateItem) -> SetRequest {
    SetRequest {
        concurrency: concurrency(item.options.as_ref()),
        key: item.key,
        value: Bytes::from(item.value),
        etag: etag(item.etag),
        metadata: item.metadata,
    }
}

fn delete_request(item: common::StateItem) -> DeleteRequest {
    DeleteRequest { concurrency: concurrency(item.options.as_ref()), key: item.key, etag: etag(item.etag), metadata: item.metadata }
}

impl GrpcApi {
    pub(super) async fn do_get_state(&self, req: Request<pb::GetStateRequest>) -> Result<Response<pb::GetStateResponse>, Status> {
        let r = req.into_inner();
        let item = self.api.get_state(&r.store_name, &r.key).await?;
        Ok(Response::new(match item {
            Some(i) => pb::GetStateResponse { data: i.value.to_vec(), etag: i.etag.unwrap_or_default(), metadata: i.metadata },
            None => pb::GetStateResponse::default(),
        }))
    }

    pub(super) async fn do_get_bulk_state(&self, req: Request<pb::GetBulkStateRequest>) -> Result<Response<pb::GetBulkStateResponse>, Status> {
        let r = req.into_inner();
        let items = self.api.get_bulk_state(&r.store_name, r.keys).await?;
        let items = items
            .into_iter()
            .map(|b| {
                let (data, etag, metadata) = match b.item {
                    Some(i) => (i.value.to_vec(), i.etag.unwrap_or_default(), i.metadata),
                    None => Default::default(),
                };
                pb::BulkStateItem { key: b.key, data, etag, error: b.error, metadata }
            })
            .collect();
        Ok(Response::new(pb::GetBulkStateResponse { items }))
    }

    pub(super) async fn do_save_state(&self, req: Request<pb::SaveStateRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.api.save_state(&r.store_name, r.states.into_iter().map(set_request).collect()).await?;
        Ok(Response::new(()))
    }

    pub(super) async fn do_query_state_alpha1(&self, req: Request<pb::QueryStateRequest>) -> Result<Response<pb::QueryStateResponse>, Status> {
        let r = req.into_inner();
        let page = self.api.query_state(&r.store_name, &r.query).await?;
        let results = page
            .results
            .into_iter()
            .map(|i| pb::QueryStateItem { key: i.key, data: i.value.to_vec(), etag: i.etag.unwrap_or_default(), error: String::new() })
            .collect();
        Ok(Response::new(pb::QueryStateResponse { results, token: page.token.unwrap_or_default(), metadata: Default::default() }))
    }

    pub(super) async fn do_delete_state(&self, req: Request<pb::DeleteStateRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        let d = DeleteRequest { concurrency: concurrency(r.options.as_ref()), key: r.key, etag: etag(r.etag), metadata: r.metadata };
        self.api.delete_state(&r.store_name, vec![d]).await?;
        Ok(Response::new(()))
    }

    pub(super) async fn do_delete_bulk_state(&self, req: Request<pb::DeleteBulkStateRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.api.delete_state(&r.store_name, r.states.into_iter().map(delete_request).collect()).await?;
        Ok(Response::new(()))
    }

    pub(super) async fn do_execute_state_transaction(&self, req: Request<pb::ExecuteStateTransactionRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        let mut ops = Vec::with_capacity(r.operations.len());
        for (i, op) in r.operations.into_iter().enumerate() {
            let Some(item) = op.request else {
                return Err(ApiError::malformed(format!("state store {:?}: operations[{i}]: request is missing", r.store_name)).into());
            };
            ops.push(match op.operation_type.as_str() {
                "upsert" => TransactionOp::Set(set_request(item)),
                "delete" => TransactionOp::Delete(delete_request(item)),
                other => {
                    return Err(ApiError::malformed(format!(
                        "state store {:?}: operations[{i}]: operationType {other:?} is not upsert or delete",
                        r.store_name
                    ))
                    .into());
                }
            });
        }
        self.api.transact_state(&r.store_name, ops).await?;
        Ok(Response::new(()))
    }
}
