//! Which component a gRPC call addresses, for the `component` label of the runtime API metrics.
//! Only names of loaded components become label values (anything else is ""), so a caller cannot
//! grow the metric's series by inventing store names.

use dapr::dapr::proto::runtime::v1 as pb;
use tonic::Request;

use super::GrpcApi;

/// A request naming the component it is for.
pub(super) trait NamesComponent {
    fn component(&self) -> &str;
}

macro_rules! names_component {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(impl NamesComponent for $ty {
            fn component(&self) -> &str {
                &self.$field
            }
        })*
    };
}

names_component!(
    pb::GetStateRequest => store_name,
    pb::GetBulkStateRequest => store_name,
    pb::SaveStateRequest => store_name,
    pb::QueryStateRequest => store_name,
    pb::DeleteStateRequest => store_name,
    pb::DeleteBulkStateRequest => store_name,
    pb::ExecuteStateTransactionRequest => store_name,
    pb::PublishEventRequest => pubsub_name,
    pb::BulkPublishRequest => pubsub_name,
    pb::InvokeBindingRequest => name,
    pb::GetSecretRequest => store_name,
    pb::GetBulkSecretRequest => store_name,
    pb::GetConfigurationRequest => store_name,
    pb::SubscribeConfigurationRequest => store_name,
    pb::UnsubscribeConfigurationRequest => store_name,
    pb::TryLockRequest => store_name,
    pb::UnlockRequest => store_name,
);

impl GrpcApi {
    /// The loaded component `req` names, or "" when it names none that is loaded.
    pub(super) fn component_of<T: NamesComponent>(&self, req: &Request<T>) -> &str {
        let name = req.get_ref().component();
        self.api.infos.iter().find(|i| i.name == name).map_or("", |i| i.name.as_str())
    }
}
