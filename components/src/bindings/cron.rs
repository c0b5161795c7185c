//! `bindings.cron`: an input binding that fires on a fixed interval (`@every <duration>` schedules).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{BindingEvent, BindingHandler, InputBinding};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError, parse_duration};

/// Fires an empty event every `schedule` interval.
#[derive(Debug)]
pub struct CronBinding {
    every: Duration,
    route: Option<String>,
}

impl CronBinding {
    /// Reads `schedule` (required; `@every 10s` form), Dapr's `route` (the app's HTTP path for
    /// events) and `direction`.
    pub fn from_config(mut metadata: Metadata) -> Result<Self, MetadataError> {
        let schedule = metadata.require("schedule")?;
        let route = metadata.take("route").filter(|r| !r.is_empty());
        metadata.ignore("direction");
        metadata.finish()?;
        let every = schedule
            .strip_prefix("@every ")
            .and_then(parse_duration)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| MetadataError::BadValue {
                key: "schedule".to_string(),
                value: schedule.clone(),
                reason: "is not supported (use \"@every <duration>\", e.g. \"@every 10s\")".to_string(),
            })?;
        Ok(Self { every, route })
    }
}

#[async_trait::async_trait]
impl InputBinding for CronBinding {
    fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    async fn read(&self, handler: BindingHandler, cancel: CancellationToken) -> Result<(), ComponentError> {
        let mut ticker = tokio::time::interval(self.every);
        ticker.tick().await; // the first tick is immediate; cron fires after one interval
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = ticker.tick() => {
                    let event = BindingEvent { data: Bytes::new(), metadata: HashMap::new() };
                    if let Err(e) = handler(event).await {
                        tracing::debug!(error = %e, "cron event not accepted by the app");
                    }
                }
            }
        }
    }
}
