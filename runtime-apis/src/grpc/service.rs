//! The `dapr.proto.runtime.v1.Dapr` service: every RPC either delegates to a building-block module
//! (with metrics) or answers UNIMPLEMENTED naming itself. Generated from the trait in the `dapr` crate,
//! then kept by hand.

use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use super::{BoxStream, GrpcApi, unimplemented};

#[tonic::async_trait]
impl pb::dapr_server::Dapr for GrpcApi {
    async fn invoke_service(&self, request: Request<pb::InvokeServiceRequest>,) -> Result<Response<common::InvokeResponse>, Status> {
        self.observe("invoke", "InvokeService", self.do_invoke_service(request)).await
    }
    async fn get_state(&self, request: Request<pb::GetStateRequest>,) -> Result<Response<pb::GetStateResponse>, Status> {
        self.observe_in("state", "GetState", self.component_of(&request), self.do_get_state(request)).await
    }
    async fn get_bulk_state(&self, request: Request<pb::GetBulkStateRequest>,) -> Result<Response<pb::GetBulkStateResponse>, Status> {
        self.observe_in("state", "GetBulkState", self.component_of(&request), self.do_get_bulk_state(request)).await
    }
    async fn save_state(&self, request: Request<pb::SaveStateRequest>,) -> Result<Response<()>, Status> {
        self.observe_in("state", "SaveState", self.component_of(&request), self.do_save_state(request)).await
    }
    async fn query_state_alpha1(&self, request: Request<pb::QueryStateRequest>,) -> Result<Response<pb::QueryStateResponse>, Status> {
        self.observe_in("state", "QueryStateAlpha1", self.component_of(&request), self.do_query_state_alpha1(request)).await
    }
    async fn delete_state(&self, request: Request<pb::DeleteStateRequest>,) -> Result<Response<()>, Status> {
        self.observe_in("state", "DeleteState", self.component_of(&request), self.do_delete_state(request)).await
    }
    async fn delete_bulk_state(&self, request: Request<pb::DeleteBulkStateRequest>,) -> Result<Response<()>, Status> {
        self.observe_in("state", "DeleteBulkState", self.component_of(&request), self.do_delete_bulk_state(request)).await
    }
    async fn execute_state_transaction(&self, request: Request<pb::ExecuteStateTransactionRequest>,) -> Result<Response<()>, Status> {
        self.observe_in("state", "ExecuteStateTransaction", self.component_of(&request), self.do_execute_state_transaction(request)).await
    }
    async fn publish_event(&self, request: Request<pb::PublishEventRequest>,) -> Result<Response<()>, Status> {
        self.observe_in("pubsub", "PublishEvent", self.component_of(&request), self.do_publish_event(request)).await
    }
    async fn bulk_publish_event_alpha1(&self, request: Request<pb::BulkPublishRequest>,) -> Result<Response<pb::BulkPublishResponse>, Status> {
        self.observe_in("pubsub", "BulkPublishEventAlpha1", self.component_of(&request), self.do_bulk_publish_event_alpha1(request)).await
    }
    async fn bulk_publish_event(&self, request: Request<pb::BulkPublishRequest>,) -> Result<Response<pb::BulkPublishResponse>, Status> {
        self.observe_in("pubsub", "BulkPublishEvent", self.component_of(&request), self.do_bulk_publish_event(request)).await
    }
    type SubscribeTopicEventsAlpha1Stream = BoxStream<pb::SubscribeTopicEventsResponseAlpha1>;
    async fn subscribe_topic_events_alpha1(&self, _request: Request<Streaming<pb::SubscribeTopicEventsRequestAlpha1>>,) -> Result<Response<Self::SubscribeTopicEventsAlpha1Stream>, Status> {
        Err(unimplemented("SubscribeTopicEventsAlpha1"))
    }
    async fn invoke_binding(&self, request: Request<pb::InvokeBindingRequest>,) -> Result<Response<pb::InvokeBindingResponse>, Status> {
        self.observe_in("bindings", "InvokeBinding", self.component_of(&request), self.do_invoke_binding(request)).await
    }
    async fn get_secret(&self, request: Request<pb::GetSecretRequest>,) -> Result<Response<pb::GetSecretResponse>, Status> {
        self.observe_in("secrets", "GetSecret", self.component_of(&request), self.do_get_secret(request)).await
    }
    async fn get_bulk_secret(&self, request: Request<pb::GetBulkSecretRequest>,) -> Result<Response<pb::GetBulkSecretResponse>, Status> {
        self.observe_in("secrets", "GetBulkSecret", self.component_of(&request), self.do_get_bulk_secret(request)).await
    }
    async fn register_actor_timer(&self, _request: Request<pb::RegisterActorTimerRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("RegisterActorTimer"))
    }
    async fn unregister_actor_timer(&self, _request: Request<pb::UnregisterActorTimerRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("UnregisterActorTimer"))
    }
    async fn register_actor_reminder(&self, _request: Request<pb::RegisterActorReminderRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("RegisterActorReminder"))
    }
    async fn unregister_actor_reminder(&self, _request: Request<pb::UnregisterActorReminderRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("UnregisterActorReminder"))
    }
    async fn unregister_actor_reminders_by_type(&self, _request: Request<pb::UnregisterActorRemindersByTypeRequest>,) -> Result<Response<pb::UnregisterActorRemindersByTypeResponse>, Status> {
        Err(unimplemented("UnregisterActorRemindersByType"))
    }
    async fn list_actor_reminders(&self, _request: Request<pb::ListActorRemindersRequest>,) -> Result<Response<pb::ListActorRemindersResponse>, Status> {
        Err(unimplemented("ListActorReminders"))
    }
    async fn get_actor_state(&self, _request: Request<pb::GetActorStateRequest>,) -> Result<Response<pb::GetActorStateResponse>, Status> {
        Err(unimplemented("GetActorState"))
    }
    async fn get_actor_reminder(&self, _request: Request<pb::GetActorReminderRequest>,) -> Result<Response<pb::GetActorReminderResponse>, Status> {
        Err(unimplemented("GetActorReminder"))
    }
    async fn execute_actor_state_transaction(&self, _request: Request<pb::ExecuteActorStateTransactionRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("ExecuteActorStateTransaction"))
    }
    async fn invoke_actor(&self, _request: Request<pb::InvokeActorRequest>,) -> Result<Response<pb::InvokeActorResponse>, Status> {
        Err(unimplemented("InvokeActor"))
    }
    async fn get_configuration_alpha1(&self, request: Request<pb::GetConfigurationRequest>,) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        self.observe_in("configuration", "GetConfigurationAlpha1", self.component_of(&request), self.do_get_configuration_alpha1(request)).await
    }
    async fn get_configuration(&self, request: Request<pb::GetConfigurationRequest>,) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        self.observe_in("configuration", "GetConfiguration", self.component_of(&request), self.do_get_configuration(request)).await
    }
    type SubscribeConfigurationAlpha1Stream = BoxStream<pb::SubscribeConfigurationResponse>;
    async fn subscribe_configuration_alpha1(&self, request: Request<pb::SubscribeConfigurationRequest>,) -> Result<Response<Self::SubscribeConfigurationAlpha1Stream>, Status> {
        self.observe_in("configuration", "SubscribeConfigurationAlpha1", self.component_of(&request), self.do_subscribe_configuration_alpha1(request)).await
    }
    type SubscribeConfigurationStream = BoxStream<pb::SubscribeConfigurationResponse>;
    async fn subscribe_configuration(&self, request: Request<pb::SubscribeConfigurationRequest>,) -> Result<Response<Self::SubscribeConfigurationStream>, Status> {
        self.observe_in("configuration", "SubscribeConfiguration", self.component_of(&request), self.do_subscribe_configuration(request)).await
    }
    async fn unsubscribe_configuration_alpha1(&self, request: Request<pb::UnsubscribeConfigurationRequest>,) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
        self.observe_in("configuration", "UnsubscribeConfigurationAlpha1", self.component_of(&request), self.do_unsubscribe_configuration_alpha1(request)).await
    }
    async fn unsubscribe_configuration(&self, request: Request<pb::UnsubscribeConfigurationRequest>,) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
        self.observe_in("configuration", "UnsubscribeConfiguration", self.component_of(&request), self.do_unsubscribe_configuration(request)).await
    }
    async fn try_lock_alpha1(&self, request: Request<pb::TryLockRequest>,) -> Result<Response<pb::TryLockResponse>, Status> {
        self.observe_in("lock", "TryLockAlpha1", self.component_of(&request), self.do_try_lock_alpha1(request)).await
    }
    async fn unlock_alpha1(&self, request: Request<pb::UnlockRequest>,) -> Result<Response<pb::UnlockResponse>, Status> {
        self.observe_in("lock", "UnlockAlpha1", self.component_of(&request), self.do_unlock_alpha1(request)).await
    }
    type EncryptAlpha1Stream = BoxStream<pb::EncryptResponse>;
    async fn encrypt_alpha1(&self, _request: Request<Streaming<pb::EncryptRequest>>,) -> Result<Response<Self::EncryptAlpha1Stream>, Status> {
        Err(unimplemented("EncryptAlpha1"))
    }
    type DecryptAlpha1Stream = BoxStream<pb::DecryptResponse>;
    async fn decrypt_alpha1(&self, _request: Request<Streaming<pb::DecryptRequest>>,) -> Result<Response<Self::DecryptAlpha1Stream>, Status> {
        Err(unimplemented("DecryptAlpha1"))
    }
    async fn get_metadata(&self, request: Request<pb::GetMetadataRequest>,) -> Result<Response<pb::GetMetadataResponse>, Status> {
        self.observe("metadata", "GetMetadata", self.do_get_metadata(request)).await
    }
    async fn set_metadata(&self, request: Request<pb::SetMetadataRequest>,) -> Result<Response<()>, Status> {
        self.observe("metadata", "SetMetadata", self.do_set_metadata(request)).await
    }
    async fn subtle_get_key_alpha1(&self, _request: Request<pb::SubtleGetKeyRequest>,) -> Result<Response<pb::SubtleGetKeyResponse>, Status> {
        Err(unimplemented("SubtleGetKeyAlpha1"))
    }
    async fn subtle_encrypt_alpha1(&self, _request: Request<pb::SubtleEncryptRequest>,) -> Result<Response<pb::SubtleEncryptResponse>, Status> {
        Err(unimplemented("SubtleEncryptAlpha1"))
    }
    async fn subtle_decrypt_alpha1(&self, _request: Request<pb::SubtleDecryptRequest>,) -> Result<Response<pb::SubtleDecryptResponse>, Status> {
        Err(unimplemented("SubtleDecryptAlpha1"))
    }
    async fn subtle_wrap_key_alpha1(&self, _request: Request<pb::SubtleWrapKeyRequest>,) -> Result<Response<pb::SubtleWrapKeyResponse>, Status> {
        Err(unimplemented("SubtleWrapKeyAlpha1"))
    }
    async fn subtle_unwrap_key_alpha1(&self, _request: Request<pb::SubtleUnwrapKeyRequest>,) -> Result<Response<pb::SubtleUnwrapKeyResponse>, Status> {
        Err(unimplemented("SubtleUnwrapKeyAlpha1"))
    }
    async fn subtle_sign_alpha1(&self, _request: Request<pb::SubtleSignRequest>,) -> Result<Response<pb::SubtleSignResponse>, Status> {
        Err(unimplemented("SubtleSignAlpha1"))
    }
    async fn subtle_verify_alpha1(&self, _request: Request<pb::SubtleVerifyRequest>,) -> Result<Response<pb::SubtleVerifyResponse>, Status> {
        Err(unimplemented("SubtleVerifyAlpha1"))
    }
    async fn start_workflow_alpha1(&self, _request: Request<pb::StartWorkflowRequest>,) -> Result<Response<pb::StartWorkflowResponse>, Status> {
        Err(unimplemented("StartWorkflowAlpha1"))
    }
    async fn get_workflow_alpha1(&self, _request: Request<pb::GetWorkflowRequest>,) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        Err(unimplemented("GetWorkflowAlpha1"))
    }
    async fn purge_workflow_alpha1(&self, _request: Request<pb::PurgeWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("PurgeWorkflowAlpha1"))
    }
    async fn terminate_workflow_alpha1(&self, _request: Request<pb::TerminateWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("TerminateWorkflowAlpha1"))
    }
    async fn pause_workflow_alpha1(&self, _request: Request<pb::PauseWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("PauseWorkflowAlpha1"))
    }
    async fn resume_workflow_alpha1(&self, _request: Request<pb::ResumeWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("ResumeWorkflowAlpha1"))
    }
    async fn raise_event_workflow_alpha1(&self, _request: Request<pb::RaiseEventWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("RaiseEventWorkflowAlpha1"))
    }
    async fn start_workflow_beta1(&self, _request: Request<pb::StartWorkflowRequest>,) -> Result<Response<pb::StartWorkflowResponse>, Status> {
        Err(unimplemented("StartWorkflowBeta1"))
    }
    async fn get_workflow_beta1(&self, _request: Request<pb::GetWorkflowRequest>,) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        Err(unimplemented("GetWorkflowBeta1"))
    }
    async fn purge_workflow_beta1(&self, _request: Request<pb::PurgeWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("PurgeWorkflowBeta1"))
    }
    async fn terminate_workflow_beta1(&self, _request: Request<pb::TerminateWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("TerminateWorkflowBeta1"))
    }
    async fn pause_workflow_beta1(&self, _request: Request<pb::PauseWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("PauseWorkflowBeta1"))
    }
    async fn resume_workflow_beta1(&self, _request: Request<pb::ResumeWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("ResumeWorkflowBeta1"))
    }
    async fn raise_event_workflow_beta1(&self, _request: Request<pb::RaiseEventWorkflowRequest>,) -> Result<Response<()>, Status> {
        Err(unimplemented("RaiseEventWorkflowBeta1"))
    }
    async fn shutdown(&self, request: Request<pb::ShutdownRequest>,) -> Result<Response<()>, Status> {
        self.observe("metadata", "Shutdown", self.do_shutdown(request)).await
    }
    async fn schedule_job_alpha1(&self, _request: Request<pb::ScheduleJobRequest>,) -> Result<Response<pb::ScheduleJobResponse>, Status> {
        Err(unimplemented("ScheduleJobAlpha1"))
    }
    async fn schedule_job(&self, _request: Request<pb::ScheduleJobRequest>,) -> Result<Response<pb::ScheduleJobResponse>, Status> {
        Err(unimplemented("ScheduleJob"))
    }
    async fn get_job_alpha1(&self, _request: Request<pb::GetJobRequest>,) -> Result<Response<pb::GetJobResponse>, Status> {
        Err(unimplemented("GetJobAlpha1"))
    }
    async fn get_job(&self, _request: Request<pb::GetJobRequest>,) -> Result<Response<pb::GetJobResponse>, Status> {
        Err(unimplemented("GetJob"))
    }
    async fn delete_job_alpha1(&self, _request: Request<pb::DeleteJobRequest>,) -> Result<Response<pb::DeleteJobResponse>, Status> {
        Err(unimplemented("DeleteJobAlpha1"))
    }
    async fn delete_job(&self, _request: Request<pb::DeleteJobRequest>,) -> Result<Response<pb::DeleteJobResponse>, Status> {
        Err(unimplemented("DeleteJob"))
    }
    async fn delete_jobs_by_prefix_alpha1(&self, _request: Request<pb::DeleteJobsByPrefixRequestAlpha1>,) -> Result<Response<pb::DeleteJobsByPrefixResponseAlpha1>, Status> {
        Err(unimplemented("DeleteJobsByPrefixAlpha1"))
    }
    async fn delete_jobs_by_prefix(&self, _request: Request<pb::DeleteJobsByPrefixRequest>,) -> Result<Response<pb::DeleteJobsByPrefixResponse>, Status> {
        Err(unimplemented("DeleteJobsByPrefix"))
    }
    async fn list_jobs_alpha1(&self, _request: Request<pb::ListJobsRequestAlpha1>,) -> Result<Response<pb::ListJobsResponseAlpha1>, Status> {
        Err(unimplemented("ListJobsAlpha1"))
    }
    async fn list_jobs(&self, _request: Request<pb::ListJobsRequest>,) -> Result<Response<pb::ListJobsResponse>, Status> {
        Err(unimplemented("ListJobs"))
    }
    async fn converse_alpha1(&self, _request: Request<pb::ConversationRequest>,) -> Result<Response<pb::ConversationResponse>, Status> {
        Err(unimplemented("ConverseAlpha1"))
    }
    async fn converse_alpha2(&self, _request: Request<pb::ConversationRequestAlpha2>,) -> Result<Response<pb::ConversationResponseAlpha2>, Status> {
        Err(unimplemented("ConverseAlpha2"))
    }
    async fn create_index_alpha1(&self, _request: Request<pb::CreateIndexRequestAlpha1>,) -> Result<Response<()>, Status> {
        Err(unimplemented("CreateIndexAlpha1"))
    }
    async fn get_index_alpha1(&self, _request: Request<pb::GetIndexRequestAlpha1>,) -> Result<Response<pb::GetIndexResponseAlpha1>, Status> {
        Err(unimplemented("GetIndexAlpha1"))
    }
    async fn list_indexes_alpha1(&self, _request: Request<pb::ListIndexesRequestAlpha1>,) -> Result<Response<pb::ListIndexesResponseAlpha1>, Status> {
        Err(unimplemented("ListIndexesAlpha1"))
    }
    async fn delete_index_alpha1(&self, _request: Request<pb::DeleteIndexRequestAlpha1>,) -> Result<Response<()>, Status> {
        Err(unimplemented("DeleteIndexAlpha1"))
    }
    async fn index_documents_alpha1(&self, _request: Request<pb::IndexDocumentsRequestAlpha1>,) -> Result<Response<pb::IndexDocumentsResponseAlpha1>, Status> {
        Err(unimplemented("IndexDocumentsAlpha1"))
    }
    async fn get_documents_alpha1(&self, _request: Request<pb::GetDocumentsRequestAlpha1>,) -> Result<Response<pb::GetDocumentsResponseAlpha1>, Status> {
        Err(unimplemented("GetDocumentsAlpha1"))
    }
    async fn delete_documents_alpha1(&self, _request: Request<pb::DeleteDocumentsRequestAlpha1>,) -> Result<Response<pb::DeleteDocumentsResponseAlpha1>, Status> {
        Err(unimplemented("DeleteDocumentsAlpha1"))
    }
    async fn search_alpha1(&self, _request: Request<pb::SearchRequestAlpha1>,) -> Result<Response<pb::SearchResponseAlpha1>, Status> {
        Err(unimplemented("SearchAlpha1"))
    }
    async fn create_collection_alpha1(&self, _request: Request<pb::CreateCollectionRequestAlpha1>,) -> Result<Response<()>, Status> {
        Err(unimplemented("CreateCollectionAlpha1"))
    }
    async fn get_collection_alpha1(&self, _request: Request<pb::GetCollectionRequestAlpha1>,) -> Result<Response<pb::GetCollectionResponseAlpha1>, Status> {
        Err(unimplemented("GetCollectionAlpha1"))
    }
    async fn list_collections_alpha1(&self, _request: Request<pb::ListCollectionsRequestAlpha1>,) -> Result<Response<pb::ListCollectionsResponseAlpha1>, Status> {
        Err(unimplemented("ListCollectionsAlpha1"))
    }
    async fn delete_collection_alpha1(&self, _request: Request<pb::DeleteCollectionRequestAlpha1>,) -> Result<Response<()>, Status> {
        Err(unimplemented("DeleteCollectionAlpha1"))
    }
    async fn upsert_vectors_alpha1(&self, _request: Request<pb::UpsertVectorsRequestAlpha1>,) -> Result<Response<pb::UpsertVectorsResponseAlpha1>, Status> {
        Err(unimplemented("UpsertVectorsAlpha1"))
    }
    async fn delete_vectors_alpha1(&self, _request: Request<pb::DeleteVectorsRequestAlpha1>,) -> Result<Response<pb::DeleteVectorsResponseAlpha1>, Status> {
        Err(unimplemented("DeleteVectorsAlpha1"))
    }
    async fn get_vectors_alpha1(&self, _request: Request<pb::GetVectorsRequestAlpha1>,) -> Result<Response<pb::GetVectorsResponseAlpha1>, Status> {
        Err(unimplemented("GetVectorsAlpha1"))
    }
    async fn query_vectors_alpha1(&self, _request: Request<pb::QueryVectorsRequestAlpha1>,) -> Result<Response<pb::QueryVectorsResponseAlpha1>, Status> {
        Err(unimplemented("QueryVectorsAlpha1"))
    }
    async fn batch_query_vectors_alpha1(&self, _request: Request<pb::BatchQueryVectorsRequestAlpha1>,) -> Result<Response<pb::BatchQueryVectorsResponseAlpha1>, Status> {
        Err(unimplemented("BatchQueryVectorsAlpha1"))
    }
}
