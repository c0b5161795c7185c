//! Dapr's state query language (QueryStateAlpha1): a JSON document with `filter`, `sort` and `page`.
//!
//! Values are JSON documents; a filter key is a dot path into them (`person.org`). Operators: EQ,
//! NEQ, GT, GTE, LT, LTE, IN, AND, OR. Comparisons only hold between values of the same JSON type
//! (numbers by value, strings by code point); sorting uses one total order over every value so that
//! stores agree on it: missing < null < strings < numbers < booleans < arrays < objects — the order
//! PostgreSQL's `jsonb` sorts in, with missing values first. The page token is the offset of the next
//! page, as a decimal string.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::ComponentError;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Option<Filter>,
    pub sort: Vec<SortKey>,
    /// Results per page; 0 means all.
    pub limit: usize,
    /// Results to skip (from the page token).
    pub offset: usize,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare { op: Cmp, path: Vec<String>, value: Value },
    In { path: Vec<String>, values: Vec<Value> },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub path: Vec<String>,
    pub descending: bool,
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryItem {
    pub key: String,
    pub value: bytes::Bytes,
    pub etag: Option<String>,
}

/// A page of results and the token for the next page (when there may be one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryPage {
    pub results: Vec<QueryItem>,
    pub token: Option<String>,
}

fn bad(what: impl std::fmt::Display) -> ComponentError {
    ComponentError::InvalidRequest(format!("invalid query: {what}"))
}

/// Splits a dot path, refusing empty segments.
fn path(key: &str, at: &str) -> Result<Vec<String>, ComponentError> {
    let parts: Vec<String> = key.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(bad(format!("{at}: key {key:?} is not a dot path")));
    }
    Ok(parts)
}

impl Query {
    /// Parses Dapr's query JSON; errors name the part of the query that is wrong.
    pub fn parse(text: &str) -> Result<Self, ComponentError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(mut top) = doc else { return Err(bad("the query is not a JSON object")) };
        let filter = match top.remove("filter") {
            None | Some(Value::Null) => None,
            Some(Value::Object(f)) if f.is_empty() => None,
            Some(f) => Some(Filter::parse(&f, "filter")?),
        };
        let sort = match top.remove("sort") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().enumerate().map(|(i, s)| SortKey::parse(s, &format!("sort[{i}]"))).collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("sort: not an array")),
        };
        let (mut limit, mut offset) = (0, 0);
        match top.remove("page") {
            None | Some(Value::Null) => {}
            Some(Value::Object(mut page)) => {
                if let Some(l) = page.remove("limit") {
                    limit = l.as_u64().and_then(|l| usize::try_from(l).ok()).ok_or_else(|| bad(format!("page.limit: {l} is not a non-negative integer")))?;
                }
                match page.remove("token") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(t)) if t.is_empty() => {}
                    Some(Value::String(t)) => offset = t.parse().map_err(|_| bad(format!("page.token: {t:?} is not a token this store issued")))?,
                    Some(t) => return Err(bad(format!("page.token: {t} is not a string"))),
                }
                if let Some(k) = page.keys().next() {
                    return Err(bad(format!("page: unknown field {k:?}")));
                }
            }
            Some(_) => return Err(bad("page: not an object")),
        }
        if let Some(k) = top.keys().next() {
            return Err(bad(format!("unknown field {k:?} (expected filter, sort, page)")));
        }
        Ok(Self { filter, sort, limit, offset })
    }

    /// Whether a stored value is selected.
    pub fn selects(&self, doc: &Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(doc))
    }

    /// Orders two documents by the sort keys (equal when there are none).
    pub fn order(&self, a: &Value, b: &Value) -> Ordering {
        for key in &self.sort {
            let o = total_order(lookup(a, &key.path), lookup(b, &key.path));
            let o = if key.descending { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Cuts one page out of rows that are already filtered and sorted, and sets the next token.
    pub fn paginate(&self, rows: Vec<QueryItem>) -> QueryPage {
        let total = rows.len();
        let results: Vec<QueryItem> = if self.limit == 0 {
            rows.into_iter().skip(self.offset).collect()
        } else {
            rows.into_iter().skip(self.offset).take(self.limit).collect()
        };
        let next = self.offset + results.len();
        let token = (self.limit > 0 && next < total).then(|| next.to_string());
        QueryPage { results, token }
    }
}

impl Filter {
    fn parse(v: &Value, at: &str) -> Result<Self, ComponentError> {
        let Value::Object(node) = v else { return Err(bad(format!("{at}: not an object"))) };
        let mut ops = node.iter();
        let (Some((op, operand)), None) = (ops.next(), ops.next()) else {
            return Err(bad(format!("{at}: must hold exactly one operator")));
        };
        let at = format!("{at}.{op}");
        let cmp = match op.as_str() {
            "EQ" => Cmp::Eq,
            "NEQ" => Cmp::Neq,
            "GT" => Cmp::Gt,
            "GTE" => Cmp::Gte,
            "LT" => Cmp::Lt,
            "LTE" => Cmp::Lte,
            "IN" => {
                let (key, values) = single(operand, &at)?;
                let Value::Array(values) = values else { return Err(bad(format!("{at}: the value of {key:?} is not an array"))) };
                return Ok(Self::In { path: path(key, &at)?, values: values.clone() });
            }
            "AND" | "OR" => {
                let Value::Array(items) = operand else { return Err(bad(format!("{at}: not an array of filters"))) };
                if items.is_empty() {
                    return Err(bad(format!("{at}: empty")));
                }
                let inner = items.iter().enumerate().map(|(i, f)| Self::parse(f, &format!("{at}[{i}]"))).collect::<Result<_, _>>()?;
                return Ok(if op == "AND" { Self::And(inner) } else { Self::Or(inner) });
            }
            other => return Err(bad(format!("{at}: unknown operator {other:?} (EQ, NEQ, GT, GTE, LT, LTE, IN, AND, OR)"))),
        };
        let (key, value) = single(operand, &at)?;
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            return Err(bad(format!("{at}: the value of {key:?} must be a string, number, boolean or null")));
        }
        Ok(Self::Compare { op: cmp, path: path(key, &at)?, value: value.clone() })
    }

    /// Whether the document satisfies the filter.
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Self::Compare { op, path, value } => {
                let Some(have) = lookup(doc, path) else { return *op == Cmp::Neq };
                match op {
                    Cmp::Eq => json_eq(have, value),
                    Cmp::Neq => !json_eq(have, value),
                    ordered => same_type_order(have, value).is_some_and(|o| match ordered {
                        Cmp::Gt => o == Ordering::Greater,
                        Cmp::Gte => o != Ordering::Less,
                        Cmp::Lt => o == Ordering::Less,
                        _ => o != Ordering::Greater,
                    }),
                }
            }
            Self::In { path, values } => lookup(doc, path).is_some_and(|have| values.iter().any(|v| json_eq(have, v))),
            Self::And(all) => all.iter().all(|f| f.matches(doc)),
            Self::Or(any) => any.iter().any(|f| f.matches(doc)),
        }
    }
}

impl SortKey {
    fn parse(v: &Value, at: &str) -> Result<Self, ComponentError> {
        let Value::Object(s) = v else { return Err(bad(format!("{at}: not an object"))) };
        let Some(Value::String(key)) = s.get("key") else { return Err(bad(format!("{at}: key is missing or not a string"))) };
        let descending = match s.get("order").and_then(Value::as_str) {
            None => false,
            Some(o) if o.eq_ignore_ascii_case("ASC") => false,
            Some(o) if o.eq_ignore_ascii_case("DESC") => true,
            Some(o) => return Err(bad(format!("{at}: order {o:?} is not ASC or DESC"))),
        };
        if let Some(k) = s.keys().find(|k| *k != "key" && *k != "order") {
            return Err(bad(format!("{at}: unknown field {k:?}")));
        }
        Ok(Self { path: path(key, at)?, descending })
    }
}

/// The one `{key: value}` pair of a comparison operand.
fn single<'a>(operand: &'a Value, at: &str) -> Result<(&'a String, &'a Value), ComponentError> {
    let pairs: Option<&Map<String, Value>> = operand.as_object();
    match pairs.map(|m| (m.len(), m.iter().next())) {
        Some((1, Some(pair))) => Ok(pair),
        _ => Err(bad(format!("{at}: must be an object with exactly one key"))),
    }
}

/// The value at a dot path, if every step exists.
pub fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, step| v.as_object()?.get(step))
}

/// Equality where 1 and 1.0 are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Ordering of two scalars of the same JSON type; `None` across types.
fn same_type_order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn rank(v: Option<&Value>) -> u8 {
    match v {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::String(_)) => 2,
        Some(Value::Number(_)) => 3,
        Some(Value::Bool(_)) => 4,
        Some(Value::Array(_)) => 5,
        Some(Value::Object(_)) => 6,
    }
}

/// A total order over optional JSON values (see the module docs).
fn total_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Some(x), Some(y)) => same_type_order(x, y).unwrap_or_else(|| x.to_string().cmp(&y.to_string())),
        _ => Ordering::Equal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: Value) -> Query {
        Query::parse(&s.to_string()).unwrap()
    }

    fn err(s: &str) -> String {
        Query::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn filters_follow_dapr_semantics() {
        let doc = json!({"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA"});
        assert!(q(json!({"filter": {"EQ": {"state": "WA"}}})).selects(&doc));
        assert!(!q(json!({"filter": {"EQ": {"state": "CA"}}})).selects(&doc));
        assert!(q(json!({"filter": {"IN": {"person.org": ["Finance", "Dev Ops"]}}})).selects(&doc));
        assert!(q(json!({"filter": {"AND": [{"EQ": {"person.org": "Dev Ops"}}, {"GTE": {"person.id": 1036}}]}})).selects(&doc));
        assert!(!q(json!({"filter": {"AND": [{"EQ": {"person.org": "Dev Ops"}}, {"GT": {"person.id": 1036}}]}})).selects(&doc));
        assert!(q(json!({"filter": {"OR": [{"EQ": {"state": "CA"}}, {"LT": {"person.id": 2000.0}}]}})).selects(&doc));
        assert!(q(json!({"filter": {"NEQ": {"missing.path": 3}}})).selects(&doc), "a missing key is not equal to anything");
        assert!(!q(json!({"filter": {"GT": {"city": 3}}})).selects(&doc), "no ordering across JSON types");
        assert!(q(json!({})).selects(&doc));
    }

    #[test]
    fn sorting_is_total_and_pages_carry_a_token() {
        let query = q(json!({"sort": [{"key": "n", "order": "DESC"}, {"key": "s"}], "page": {"limit": 2, "token": "1"}}));
        let mut docs = [json!({"n": 1, "s": "b"}), json!({"n": 2}), json!({"s": "a"}), json!({"n": 1, "s": "a"})];
        docs.sort_by(|a, b| query.order(a, b));
        assert_eq!(docs, [json!({"n": 2}), json!({"n": 1, "s": "a"}), json!({"n": 1, "s": "b"}), json!({"s": "a"})]);
        let rows = (0..4).map(|i| QueryItem { key: i.to_string(), value: bytes::Bytes::new(), etag: None }).collect();
        let page = query.paginate(rows);
        assert_eq!(page.results.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(page.token.as_deref(), Some("3"));
        let last = q(json!({"page": {"limit": 2, "token": "3"}}));
        let rows = (0..4).map(|i| QueryItem { key: i.to_string(), value: bytes::Bytes::new(), etag: None }).collect();
        assert_eq!(last.paginate(rows).token, None, "no token after the last page");
    }

    #[test]
    fn bad_queries_name_what_is_wrong() {
        assert!(err("{").contains("not JSON"));
        assert!(err(r#"{"filter": {"LIKE": {"a": 1}}}"#).contains(r#"filter.LIKE: unknown operator "LIKE""#));
        assert!(err(r#"{"filter": {"AND": [{"EQ": {"a": 1, "b": 2}}]}}"#).contains("filter.AND[0].EQ: must be an object with exactly one key"));
        assert!(err(r#"{"filter": {"IN": {"a": 1}}}"#).contains("is not an array"));
        assert!(err(r#"{"sort": [{"key": "a", "order": "UP"}]}"#).contains("sort[0]: order \"UP\""));
        assert!(err(r#"{"page": {"limit": -1}}"#).contains("page.limit"));
        assert!(err(r#"{"page": {"token": "x"}}"#).contains("page.token"));
        assert!(err(r#"{"filters": {}}"#).contains("unknown field \"filters\""));
        assert!(err(r#"{"filter": {"EQ": {"a..b": 1}}}"#).contains("not a dot path"));
    }
}
