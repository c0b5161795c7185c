//! Pub/sub subscriptions (declarative `Subscription` resources and the app's own) and their routing
//! rules. Rules use the subset of CEL Dapr users write most: `event.<path> == <literal>`, `!=`,
//! joined with `&&` and `||`.

use std::collections::HashMap;

use serde_json::Value;

/// A subscription of the app to one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub pubsub_name: String,
    pub topic: String,
    pub routes: Routes,
    pub dead_letter_topic: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// Where an event goes: the first matching rule, else the default path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routes {
    pub rules: Vec<Rule>,
    pub default: String,
}

impl Routes {
    /// The path for an event (a CloudEvent as JSON); `None` when nothing matches and there is no default.
    pub fn path_for(&self, event: &Value) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(event))
            .map(|r| r.path.as_str())
            .or((!self.default.is_empty()).then_some(self.default.as_str()))
    }
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub matcher: Match,
    pub path: String,
}

/// A parsed match expression: OR of ANDs of comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    any: Vec<Vec<Cond>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Cond {
    path: Vec<String>,
    equal: bool,
    value: Value,
}

impl Match {
    /// Parses an expression; the error says what is unsupported.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let mut any = Vec::new();
        for alt in expr.split("||") {
            let mut all = Vec::new();
            for part in alt.split("&&") {
                all.push(parse_cond(part.trim().trim_start_matches('(').trim_end_matches(')').trim())?);
            }
            any.push(all);
        }
        Ok(Self { any })
    }

    /// Evaluates against a CloudEvent.
    pub fn matches(&self, event: &Value) -> bool {
        self.any.iter().any(|all| {
            all.iter().all(|c| {
                let found = c.path.iter().try_fold(event, |v, seg| v.get(seg));
                (found == Some(&c.value)) == c.equal
            })
        })
    }
}

fn parse_cond(s: &str) -> Result<Cond, String> {
    let (lhs, rhs, equal) = if let Some((l, r)) = s.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = s.split_once("!=") {
        (l, r, false)
    } else {
        return Err(format!("match {s:?}: only `event.<field> == <literal>` and `!=` are supported"));
    };
    let path = lhs
        .trim()
        .strip_prefix("event.")
        .ok_or_else(|| format!("match {s:?}: the left side must start with `event.`"))?;
    let rhs = rhs.trim();
    let value = if let Some(q) = rhs.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        Value::String(q.to_string())
    } else {
        serde_json::from_str(rhs).map_err(|_| format!("match {s:?}: {rhs} is not a string, number or boolean literal"))?
    };
    Ok(Cond { path: path.split('.').map(str::to_string).collect(), equal, value })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_route_events() {
        let routes = Routes {
            rules: vec![
                Rule { matcher: Match::parse(r#"event.type == "widget""#).unwrap(), path: "/widgets".into() },
                Rule { matcher: Match::parse("event.data.n == 2 && event.type != 'x'").unwrap(), path: "/two".into() },
            ],
            default: "/orders".into(),
        };
        assert_eq!(routes.path_for(&json!({"type": "widget"})), Some("/widgets"));
        assert_eq!(routes.path_for(&json!({"type": "y", "data": {"n": 2}})), Some("/two"));
        assert_eq!(routes.path_for(&json!({"type": "x", "data": {"n": 2}})), Some("/orders"));
        assert!(Match::parse("size(event.data) > 1").unwrap_err().contains("size(event.data) > 1"));
    }
}
