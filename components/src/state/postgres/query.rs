//! QueryStateAlpha1 on `state.postgresql`: the query becomes one SQL statement over the `jsonb`
//! values, with the same semantics as the in-memory store (see `state::query`): comparisons only
//! within one JSON type, strings by code point (`COLLATE "C"`), one total sort order across types.

use tokio_postgres::types::ToSql;

use crate::state::query::{Cmp, Filter, Query};

/// SQL and its parameters, built up together so placeholders stay numbered right.
#[derive(Default)]
pub(super) struct Select {
    pub sql: String,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Select {
    fn bind(&mut self, p: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(p));
        format!("${}", self.params.len())
    }

    /// `value #> path` for a bound path.
    fn at(&mut self, path: &[String]) -> String {
        let p = self.bind(path.to_vec());
        format!("(value #> {p}::text[])")
    }

    fn filter(&mut self, f: &Filter) -> String {
        match f {
            Filter::Compare { op, path, value } => {
                let x = self.at(path);
                let v = self.bind(value.to_string());
                let v = format!("{v}::text::jsonb");
                match op {
                    Cmp::Eq => format!("{x} = {v}"),
                    Cmp::Neq => format!("{x} IS DISTINCT FROM {v}"),
                    _ => {
                        let sym = match op {
                            Cmp::Gt => ">",
                            Cmp::Gte => ">=",
                            Cmp::Lt => "<",
                            _ => "<=",
                        };
                        // Strings compare by code point; other scalars by jsonb's own order.
                        let cmp = if value.is_string() {
                            format!("({x} #>> '{{}}') COLLATE \"C\" {sym} ({v} #>> '{{}}') COLLATE \"C\"")
                        } else {
                            format!("{x} {sym} {v}")
                        };
                        format!("(jsonb_typeof({x}) = jsonb_typeof({v}) AND {cmp})")
                    }
                }
            }
            Filter::In { path, values } => {
                let x = self.at(path);
                let vs = self.bind(serde_json::Value::Array(values.clone()).to_string());
                format!("EXISTS (SELECT 1 FROM jsonb_array_elements({vs}::text::jsonb) AS e(v) WHERE e.v = {x})")
            }
            Filter::And(all) | Filter::Or(all) => {
                let join = if matches!(f, Filter::And(_)) { " AND " } else { " OR " };
                let parts: Vec<String> = all.iter().map(|g| self.filter(g)).collect();
                format!("({})", parts.join(join))
            }
        }
    }

    /// Sort terms giving the total order of `state::query`: type rank, then the value within its type.
    fn sort_terms(&mut self, path: &[String], descending: bool) -> Vec<String> {
        let x = self.at(path);
        let dir = if descending { "DESC" } else { "ASC" };
        vec![
            format!(
                "CASE jsonb_typeof({x}) WHEN 'null' THEN 1 WHEN 'string' THEN 2 WHEN 'number' THEN 3 \
                 WHEN 'boolean' THEN 4 WHEN 'array' THEN 5 WHEN 'object' THEN 6 ELSE 0 END {dir}"
            ),
            format!("CASE WHEN jsonb_typeof({x}) = 'string' THEN {x} #>> '{{}}' END COLLATE \"C\" {dir}"),
            format!("CASE WHEN jsonb_typeof({x}) = 'number' THEN ({x})::numeric END {dir}"),
            format!("CASE WHEN jsonb_typeof({x}) = 'boolean' THEN ({x})::boolean END {dir}"),
            format!("CASE WHEN jsonb_typeof({x}) IN ('array', 'object') THEN {x}::text END COLLATE \"C\" {dir}"),
        ]
    }
}

/// The statement for one page: keys under `prefix`, live, JSON (not binary), filtered, sorted, with
/// one row more than the page so the caller knows whether another page follows.
pub(super) fn select(table: &str, live: &str, prefix: &str, q: &Query) -> Select {
    let mut s = Select::default();
    let p = s.bind(prefix.to_string());
    let mut wher = format!("starts_with(key, {p}) AND NOT isbinary AND {live}");
    if let Some(f) = &q.filter {
        let cond = s.filter(f);
        wher.push_str(" AND ");
        wher.push_str(&cond);
    }
    let mut order: Vec<String> = Vec::new();
    for k in &q.sort {
        order.extend(s.sort_terms(&k.path, k.descending));
    }
    order.push("key COLLATE \"C\" ASC".to_string());
    let mut sql = format!(
        "SELECT key, value::text, isbinary, xmin::text, expiredate FROM {table} WHERE {wher} ORDER BY {}",
        order.join(", ")
    );
    if q.limit > 0 {
        let l = s.bind(q.limit as i64 + 1);
        sql.push_str(&format!(" LIMIT {l}"));
    }
    if q.offset > 0 {
        let o = s.bind(q.offset as i64);
        sql.push_str(&format!(" OFFSET {o}"));
    }
    s.sql = sql;
    s
}
