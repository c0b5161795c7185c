//! Dapr Resiliency policies on runtime API calls: service invocation runs under the target app's
//! policies, component operations under the component's `outbound` policies. The policy logic is
//! `oxidecar_components::resiliency`; this module decides what counts as a failure and how a cut
//! call looks to the app.

use std::future::Future;

use oxidecar_components::resiliency::breaker::Refused;
use oxidecar_components::resiliency::retry::RetryPolicy;
use oxidecar_components::resiliency::{Stop, Verdict, run};
use tonic::Code;

use super::Api;
use crate::error::ApiError;
use crate::invoke::{InvokeError, InvokeRequest, InvokeResponse};

/// Codes that say the component or app failed (rather than the request being wrong).
fn transient(code: Code) -> bool {
    matches!(code, Code::Unknown | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Internal | Code::Unavailable | Code::DataLoss)
}

fn grpc_verdict(code: Code, retry: Option<&RetryPolicy>) -> Verdict {
    let retriable = retry.is_some_and(|r| r.retries_grpc(code as u16, transient(code)));
    if transient(code) || retriable { Verdict::Failed { retriable } } else { Verdict::Fine }
}

fn invoke_verdict(r: &Result<InvokeResponse, InvokeError>, retry: Option<&RetryPolicy>) -> Verdict {
    match r {
        Ok(resp) => {
            let status = resp.status.as_u16();
            let retriable = retry.is_some_and(|p| p.retries_http(status));
            if status >= 500 || retriable { Verdict::Failed { retriable } } else { Verdict::Fine }
        }
        Err(InvokeError::NoAppPort { .. }) => Verdict::Fine,
        Err(InvokeError::Unreachable { .. }) => grpc_verdict(Code::Unavailable, retry),
        Err(InvokeError::Failed { .. }) => grpc_verdict(Code::Internal, retry),
    }
}

/// The error a call cut by a policy returns; `what` names the call.
fn cut<E>(stop: Stop<E>, what: &str, error_code: &'static str) -> Result<E, ApiError> {
    match stop {
        Stop::Failed(e) => Ok(e),
        Stop::TimedOut { policy, after } => Err(ApiError::new(
            Code::DeadlineExceeded,
            error_code,
            format!("{what}: deadline exceeded: timeout policy {policy:?} ({after:?}) cut the call"),
        )),
        Stop::Open { breaker, reason } => {
            let state = match reason {
                Refused::Open => "is open",
                Refused::TooManyRequests => "is half-open and its trial calls are under way",
            };
            Err(ApiError::new(Code::Unavailable, error_code, format!("{what}: circuit breaker {breaker:?} {state}: call not attempted")))
        }
    }
}

impl Api {
    /// Invokes `call` through the `ServiceInvoker`, under the target app's policies when it has any.
    pub async fn invoke_app(&self, call: InvokeRequest) -> Result<InvokeResponse, ApiError> {
        let Some(policy) = self.resiliency.app(&call.app_id) else {
            return Ok(self.invoker.invoke(call).await?);
        };
        let what = format!("invoking {:?} on app {:?}", call.method, call.app_id);
        match run(policy, || self.invoker.invoke(call.clone()), invoke_verdict).await {
            Ok(resp) => Ok(resp),
            Err(stop) => Err(cut(stop, &what, "ERR_DIRECT_INVOKE")?.into()),
        }
    }

    /// Runs one operation on component `name` under its `outbound` policies, if it has any.
    /// `input` is handed to `op` as it is without a policy, or cloned for each attempt with one.
    /// `error_code` is Dapr's code for the operation, used when a policy cuts it.
    pub(crate) async fn on_component<V, T, F, Fut>(&self, name: &str, error_code: &'static str, what: impl FnOnce() -> String, input: V, op: F) -> Result<T, ApiError>
    where
        V: Clone,
        F: Fn(V) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let Some(policy) = self.resiliency.component(name) else {
            return op(input).await;
        };
        let verdict = |r: &Result<T, ApiError>, retry: Option<&RetryPolicy>| match r {
            Ok(_) => Verdict::Fine,
            Err(e) => grpc_verdict(e.code, retry),
        };
        match run(policy, || op(input.clone()), verdict).await {
            Ok(v) => Ok(v),
            Err(stop) => Err(cut(stop, &what(), error_code)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, StatusCode};

    fn answer(status: u16) -> Result<InvokeResponse, InvokeError> {
        Ok(InvokeResponse { status: StatusCode::from_u16(status).expect("status"), headers: HeaderMap::new(), body: Default::default(), content_type: String::new() })
    }

    #[test]
    fn what_counts_as_a_failure() {
        assert_eq!(invoke_verdict(&answer(200), None), Verdict::Fine);
        assert_eq!(invoke_verdict(&answer(404), None), Verdict::Fine, "the app answered");
        assert_eq!(invoke_verdict(&answer(503), None), Verdict::Failed { retriable: false }, "no retry policy");
        let unreachable = Err(InvokeError::Unreachable { app_id: "a".into(), reason: "down".into() });
        assert!(matches!(invoke_verdict(&unreachable, None), Verdict::Failed { .. }));
        assert_eq!(grpc_verdict(Code::InvalidArgument, None), Verdict::Fine);
        assert_eq!(grpc_verdict(Code::Aborted, None), Verdict::Fine, "etag mismatch is the caller's");
        assert_eq!(grpc_verdict(Code::Unavailable, None), Verdict::Failed { retriable: false });
    }
}
