//! `sequencer.postgresql`: one row per sequence key; `INSERT ... ON CONFLICT DO UPDATE SET value =
//! value + n RETURNING value` takes the row lock, so concurrent callers (in any sidecar) get
//! disjoint, strictly increasing ranges.

use tokio::sync::OnceCell;

use super::{Segment, Sequencer, check, ending_at};
use crate::metadata::{Metadata, MetadataError};
use crate::pg_conn::{PgPool, PgSettings, quote_ident};
use crate::{ComponentError, catalog};

/// The PostgreSQL sequencer.
#[derive(Debug)]
pub struct PostgresSequencer {
    pg: PgPool,
    setup: String,
    next: String,
    ready: OnceCell<()>,
}

impl PostgresSequencer {
    /// Builds the sequencer from `connectionString`, `timeoutInSeconds` and `tableName`; connects
    /// lazily and creates the table on first use.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::sequencer::POSTGRESQL);
        let settings = PgSettings::take(&mut m)?;
        let name = m.take("tableName").unwrap_or_else(|| "oxidecar_sequencer".to_string());
        m.finish()?;
        let table = quote_ident(&name).map_err(|reason| MetadataError::BadValue { key: "tableName".to_string(), value: name.clone(), reason })?;
        Ok(Self {
            pg: PgPool::new(&settings)?,
            setup: format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('oxidecar-sequencer-{name}'));
                 CREATE TABLE IF NOT EXISTS {table} (key text NOT NULL PRIMARY KEY, value bigint NOT NULL); COMMIT;"
            ),
            next: format!(
                "INSERT INTO {table} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = {table}.value + EXCLUDED.value RETURNING value"
            ),
            ready: OnceCell::new(),
        })
    }
}

#[async_trait::async_trait]
impl Sequencer for PostgresSequencer {
    async fn segment(&self, key: &str, size: u32) -> Result<Segment, ComponentError> {
        check(key, size)?;
        self.ready.get_or_try_init(|| self.pg.batch("create table", &self.setup)).await?;
        let n = i64::from(size);
        let rows = self.pg.query("next id", &self.next, &[&key, &n]).await?;
        let last: i64 = rows
            .first()
            .and_then(|r| r.try_get(0).ok())
            .ok_or_else(|| ComponentError::Unavailable(format!("postgresql {}: next id: no row returned", self.pg.addr)))?;
        Ok(ending_at(last, size))
    }

    async fn close(&self) {
        self.pg.close();
    }
}
