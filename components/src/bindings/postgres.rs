//! `bindings.postgresql`: an output binding running SQL, with Dapr's operations and metadata:
//! `exec` and `query` take the request metadata `sql` and optional `params` (a JSON array bound to
//! `$1`, `$2`, ...); `query` answers the rows as a JSON array of arrays; `close` closes the pool.
//! Parameters are converted to the types the server expects for them; a type without a JSON form
//! here is an error that suggests a cast (`$1::text`).

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::{BindingRequest, BindingResponse, OutputBinding};
use crate::metadata::{Metadata, MetadataError};
use crate::pg_conn::{PgPool, PgSettings};
use crate::state::rfc3339;
use crate::{ComponentError, catalog};

/// The PostgreSQL output binding.
#[derive(Debug)]
pub struct PostgresBinding {
    pg: PgPool,
}

impl PostgresBinding {
    /// Builds the binding from `connectionString` and `timeoutInSeconds`; connects lazily.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::bindings::POSTGRESQL);
        let settings = PgSettings::take(&mut m)?;
        m.ignore("direction");
        m.finish()?;
        Ok(Self { pg: PgPool::new(&settings)? })
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// One JSON value as the parameter type the server inferred.
fn param(i: usize, ty: &Type, v: &Value) -> Result<Param, ComponentError> {
    let wrong = || ComponentError::InvalidRequest(format!("params[{i}]: {v} is not a valid {ty} (cast the parameter in SQL, e.g. ${}::text)", i + 1));
    let text = || match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    if v.is_null() {
        return Ok(match *ty {
            Type::BOOL => Box::new(None::<bool>),
            Type::INT2 => Box::new(None::<i16>),
            Type::INT4 => Box::new(None::<i32>),
            Type::INT8 => Box::new(None::<i64>),
            Type::FLOAT4 => Box::new(None::<f32>),
            Type::FLOAT8 => Box::new(None::<f64>),
            Type::JSON | Type::JSONB => Box::new(None::<Value>),
            _ => Box::new(None::<String>),
        });
    }
    let int = || v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    let float = || v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    Ok(match *ty {
        Type::BOOL => Box::new(v.as_bool().or_else(|| v.as_str().and_then(crate::catalog::parse_bool)).ok_or_else(wrong)?),
        Type::INT2 => Box::new(int().and_then(|n| i16::try_from(n).ok()).ok_or_else(wrong)?),
        Type::INT4 => Box::new(int().and_then(|n| i32::try_from(n).ok()).ok_or_else(wrong)?),
        Type::INT8 => Box::new(int().ok_or_else(wrong)?),
        Type::FLOAT4 => Box::new(float().ok_or_else(wrong)? as f32),
        Type::FLOAT8 => Box::new(float().ok_or_else(wrong)?),
        Type::JSON | Type::JSONB => Box::new(v.clone()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Box::new(text().ok_or_else(wrong)?),
        _ => return Err(wrong()),
    })
}

/// One column of a row as JSON.
fn column(row: &Row, i: usize) -> Result<Value, String> {
    let col = &row.columns()[i];
    let e = |e: tokio_postgres::Error| format!("column {:?}: {e}", col.name());
    Ok(match *col.type_() {
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null),
        Type::OID => row.try_get::<_, Option<u32>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            row.try_get::<_, Option<String>>(i).map_err(e)?.map(Value::from).unwrap_or(Value::Null)
        }
        Type::JSON | Type::JSONB => row.try_get::<_, Option<Value>>(i).map_err(e)?.unwrap_or(Value::Null),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(e)?.map(|b| Value::from(BASE64.encode(b))).unwrap_or(Value::Null),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            row.try_get::<_, Option<SystemTime>>(i).map_err(e)?.map(|t| Value::from(rfc3339(t))).unwrap_or(Value::Null)
        }
        ref other => return Err(format!("column {:?} has type {other}, which has no JSON form here (select it as {}::text)", col.name(), col.name())),
    })
}

fn sql_of(req: &BindingRequest) -> Result<&str, ComponentError> {
    req.metadata
        .get("sql")
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ComponentError::InvalidRequest(format!("operation {}: request metadata sql is required", req.operation)))
}

fn params_of(req: &BindingRequest) -> Result<Vec<Value>, ComponentError> {
    match req.metadata.get("params").filter(|p| !p.trim().is_empty()) {
        None => Ok(Vec::new()),
        Some(p) => match serde_json::from_str::<Value>(p) {
            Ok(Value::Array(items)) => Ok(items),
            _ => Err(ComponentError::InvalidRequest(format!("request metadata params must be a JSON array, got {p:?}"))),
        },
    }
}

impl PostgresBinding {
    /// Prepares `sql`, binds `params` and runs it: rows for `query`, the count for `exec`.
    async fn run(&self, op: &str, sql: &str, params: &[Value]) -> Result<(Vec<Row>, u64), ComponentError> {
        let client = self.pg.get(op).await?;
        let c: &tokio_postgres::Client = &client;
        let work = async move {
            let stmt = c.prepare(sql).await.map_err(Err)?;
            if stmt.params().len() != params.len() {
                return Err(Ok(ComponentError::InvalidRequest(format!("sql takes {} parameters, params has {}", stmt.params().len(), params.len()))));
            }
            let bound = params.iter().zip(stmt.params()).enumerate().map(|(i, (v, ty))| param(i, ty, v)).collect::<Result<Vec<_>, _>>().map_err(Ok)?;
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
            if op == "query" {
                c.query(&stmt, &refs).await.map(|rows| (rows, 0)).map_err(Err)
            } else {
                c.execute(&stmt, &refs).await.map(|n| (Vec::new(), n)).map_err(Err)
            }
        };
        // Request errors found before the server ran anything are the caller's, not the connection's.
        match tokio::time::timeout(self.pg.timeout, work).await {
            Ok(Err(Ok(request_error))) => Err(request_error),
            Ok(Err(Err(e))) => self.pg.judge(op, client, Ok(Err(e))),
            Ok(Ok(v)) => Ok(v),
            Err(elapsed) => self.pg.judge::<(Vec<Row>, u64)>(op, client, Err(elapsed)),
        }
    }
}

#[async_trait::async_trait]
impl OutputBinding for PostgresBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["exec", "query", "close"]
    }

    async fn invoke(&self, req: BindingRequest) -> Result<BindingResponse, ComponentError> {
        let op = req.operation.as_str();
        if op == "close" {
            self.pg.close();
            return Ok(BindingResponse::default());
        }
        if op != "exec" && op != "query" {
            return Err(ComponentError::Unsupported { operation: op.to_string() });
        }
        let sql = sql_of(&req)?;
        let params = params_of(&req)?;
        let (start_wall, start) = (SystemTime::now(), Instant::now());
        let (rows, affected) = self.run(op, sql, &params).await?;
        let mut metadata = HashMap::from([
            ("operation".to_string(), op.to_string()),
            ("sql".to_string(), sql.to_string()),
            ("start-time".to_string(), rfc3339(start_wall)),
            ("end-time".to_string(), rfc3339(SystemTime::now())),
            ("duration".to_string(), format!("{:?}", start.elapsed())),
        ]);
        if op == "exec" {
            metadata.insert("rows-affected".to_string(), affected.to_string());
            return Ok(BindingResponse { data: Bytes::new(), metadata });
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let values = (0..row.len()).map(|i| column(row, i)).collect::<Result<Vec<_>, _>>().map_err(ComponentError::InvalidRequest)?;
            out.push(Value::Array(values));
        }
        let data = serde_json::to_vec(&out).map_err(|e| ComponentError::Failed(format!("query result: {e}")))?;
        Ok(BindingResponse { data: Bytes::from(data), metadata })
    }

    async fn close(&self) {
        self.pg.close();
    }
}
