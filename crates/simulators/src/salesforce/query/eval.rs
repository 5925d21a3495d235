//! Evaluation over a [`RecordSource`]: field paths resolved against the schema (with
//! relationship hops), literals typed by their field, filters, ordering and paging.

use std::cmp::Ordering;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use crate::salesforce::schema::{parse_datetime, FieldDef, FieldType, ObjectDef};
use crate::wire::RecordId;

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Hop {
    /// The reference field holding the parent id (`Trainer__c`).
    pub(super) reference_field: String,
    /// Its relationship name, as it appears in results (`Trainer__r`).
    pub(super) relationship: String,
    /// The parent object.
    pub(super) target: String,
}

#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub(super) hops: Vec<Hop>,
    pub(super) field: FieldDef,
}

pub(super) fn resolve<S: RecordSource>(
    src: &Source,
    store: &S,
    root: &ObjectDef,
    field: &FieldRef,
) -> Result<Resolved, SoqlError> {
    let parts: Vec<&str> = field.path.split('.').collect();
    let mut object = root.clone();
    let mut hops = Vec::new();
    for relationship in &parts[..parts.len() - 1] {
        let reference = object.relationship(relationship).ok_or_else(|| {
            src.error(
                "INVALID_FIELD",
                field.pos,
                &format!(
                    "Didn't understand relationship '{relationship}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            )
        })?;
        let target_name = reference.reference_to.clone().unwrap_or_default();
        let target = store.object(&target_name).ok_or_else(|| {
            src.error(
                "INVALID_FIELD",
                field.pos,
                &format!("Didn't understand relationship '{relationship}' in field path."),
            )
        })?;
        hops.push(Hop {
            reference_field: reference.name.clone(),
            relationship: reference.relationship_name.clone().unwrap_or_default(),
            target: target.name.clone(),
        });
        object = target.clone();
    }
    let name = parts[parts.len() - 1];
    let def = object.field(name).ok_or_else(|| {
        src.error(
            "INVALID_FIELD",
            field.pos,
            &format!(
                "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                object.name
            ),
        )
    })?;
    Ok(Resolved {
        hops,
        field: def.clone(),
    })
}

/// A literal checked against the field it is compared with.
#[derive(Debug, Clone)]
pub(super) enum Typed {
    Null,
    Text(String),
    Id(String),
    Bool(bool),
    Num(f64),
    Instant(DateTime<Utc>),
    Range(DateTime<Utc>, DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub(super) enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp(Resolved, CmpOp, Typed),
    In(Resolved, bool, Vec<Typed>),
    Like(Resolved, String),
}

pub(super) fn type_literal(
    src: &Source,
    field: &FieldDef,
    lit: &Lit,
    pos: usize,
    now: DateTime<Utc>,
) -> Result<Typed, SoqlError> {
    let mismatch = |expected: &str, quoted: bool| {
        src.error(
            "INVALID_FIELD",
            pos,
            &format!(
                "value of filter criterion for field '{}' must be of type {expected} and should {}be enclosed in quotes",
                field.name,
                if quoted { "" } else { "not " }
            ),
        )
    };
    if *lit == Lit::Null {
        return Ok(Typed::Null);
    }
    let ft = field.field_type;
    match (ft, lit) {
        (t, Lit::Str(s)) if t.is_id() => match RecordId::parse(s) {
            Ok(id) => Ok(Typed::Id(id.to_string())),
            Err(_) => Err(src.error(
                "INVALID_QUERY_FILTER_OPERATOR",
                pos,
                &format!("invalid ID field: {s}"),
            )),
        },
        (t, _) if t.is_id() => Err(mismatch("id", true)),
        (t, Lit::Str(s)) if t.is_text() => Ok(Typed::Text(s.clone())),
        (t, _) if t.is_text() => Err(mismatch("string", true)),
        (FieldType::Boolean, Lit::Bool(b)) => Ok(Typed::Bool(*b)),
        (FieldType::Boolean, _) => Err(mismatch("boolean", false)),
        (FieldType::Double, Lit::Num(n)) => Ok(Typed::Num(*n)),
        (FieldType::Double, _) => Err(mismatch("double", false)),
        (FieldType::DateTime, Lit::DateTime(d)) => Ok(Typed::Instant(*d)),
        (FieldType::DateTime, Lit::Relative(r)) => {
            let (start, end) = relative_range(*r, now);
            Ok(Typed::Range(start, end))
        }
        (FieldType::DateTime, _) => Err(mismatch("dateTime", false)),
        _ => Err(mismatch(ft.wire_name(), false)),
    }
}

/// `[start, end)` of a relative date literal, in UTC (the simulated org's time zone).
// Ranges per the SOQL and SOSL Reference, "Date Formats and Date Literals": TODAY is
// today from 00:00:00 for 24 h; NEXT_N_DAYS:n starts 00:00:00 of the next day and lasts
// n days; LAST_N_DAYS:n includes today and the n days before it.
pub(super) fn relative_range(
    r: RelativeDate,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let day = Duration::days(1);
    match r {
        RelativeDate::Today => (today, today + day),
        RelativeDate::Yesterday => (today - day, today),
        RelativeDate::Tomorrow => (today + day, today + day * 2),
        RelativeDate::NextNDays(n) => (today + day, today + day * (n as i32 + 1)),
        RelativeDate::LastNDays(n) => (today - day * n as i32, today + day),
    }
}

pub(super) fn compile<S: RecordSource>(
    src: &Source,
    store: &S,
    root: &ObjectDef,
    expr: &Expr,
    now: DateTime<Utc>,
) -> Result<Cond, SoqlError> {
    Ok(match expr {
        Expr::And(terms) => Cond::And(
            terms
                .iter()
                .map(|t| compile(src, store, root, t, now))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(terms) => Cond::Or(
            terms
                .iter()
                .map(|t| compile(src, store, root, t, now))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(inner) => Cond::Not(Box::new(compile(src, store, root, inner, now)?)),
        Expr::Cmp {
            field,
            op,
            value,
            value_pos,
        } => {
            let r = resolve(src, store, root, field)?;
            let typed = type_literal(src, &r.field, value, *value_pos, now)?;
            Cond::Cmp(r, *op, typed)
        }
        Expr::In {
            field,
            negated,
            values,
        } => {
            let r = resolve(src, store, root, field)?;
            let typed = values
                .iter()
                .map(|(v, pos)| type_literal(src, &r.field, v, *pos, now))
                .collect::<Result<_, _>>()?;
            Cond::In(r, *negated, typed)
        }
        Expr::Like { field, pattern } => {
            let r = resolve(src, store, root, field)?;
            if !r.field.field_type.is_text() {
                return Err(src.error(
                    "INVALID_FIELD",
                    field.pos,
                    &format!(
                        "invalid operator on {} field: LIKE",
                        r.field.field_type.wire_name()
                    ),
                ));
            }
            Cond::Like(r, pattern.to_lowercase())
        }
    })
}

/// The value of a (possibly relationship) field for a row; a missing or deleted parent
/// reads as null.
pub(super) fn value_of<S: RecordSource>(
    store: &S,
    row: &Map<String, Value>,
    r: &Resolved,
) -> Value {
    let mut current = row;
    for hop in &r.hops {
        match current
            .get(&hop.reference_field)
            .and_then(Value::as_str)
            .and_then(|id| store.row(&hop.target, id))
            .filter(|parent| !is_deleted(parent))
        {
            Some(parent) => current = parent,
            None => return Value::Null,
        }
    }
    current.get(&r.field.name).cloned().unwrap_or(Value::Null)
}

pub(super) fn is_deleted(row: &Map<String, Value>) -> bool {
    row.get("IsDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A stored value converted for comparison with a typed literal.
pub(super) fn as_typed(field: &FieldDef, value: &Value) -> Typed {
    match value {
        Value::Null => Typed::Null,
        Value::Bool(b) => Typed::Bool(*b),
        Value::Number(n) => Typed::Num(n.as_f64().unwrap_or_default()),
        Value::String(s) if field.field_type == FieldType::DateTime => {
            parse_datetime(s).map(Typed::Instant).unwrap_or(Typed::Null)
        }
        Value::String(s) if field.field_type.is_id() => Typed::Id(s.clone()),
        Value::String(s) => Typed::Text(s.clone()),
        _ => Typed::Null,
    }
}

pub(super) fn compare(a: &Typed, b: &Typed) -> Option<Ordering> {
    match (a, b) {
        // SOQL text comparison is case-insensitive.
        (Typed::Text(x), Typed::Text(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Typed::Id(x), Typed::Id(y)) => Some(x.cmp(y)),
        (Typed::Bool(x), Typed::Bool(y)) => Some(x.cmp(y)),
        (Typed::Num(x), Typed::Num(y)) => x.partial_cmp(y),
        (Typed::Instant(x), Typed::Instant(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

pub(super) fn matches_cmp(value: &Typed, op: CmpOp, lit: &Typed) -> bool {
    match (value, lit) {
        (Typed::Null, Typed::Null) => op == CmpOp::Eq,
        // SOQL's != and NOT IN keep rows whose field is null.
        (Typed::Null, _) | (_, Typed::Null) => op == CmpOp::Ne,
        (Typed::Instant(v), Typed::Range(start, end)) => match op {
            CmpOp::Eq => v >= start && v < end,
            CmpOp::Ne => !(v >= start && v < end),
            CmpOp::Lt => v < start,
            CmpOp::Le => v < end,
            CmpOp::Gt => v >= end,
            CmpOp::Ge => v >= start,
        },
        _ => match compare(value, lit) {
            None => op == CmpOp::Ne,
            Some(ord) => match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            },
        },
    }
}

/// SOQL LIKE: `%` any run, `_` one character, case-insensitive; `\%` and `\_` are literal
/// (the lexer has already turned other escapes into characters).
pub(super) fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some(('\\', rest)) if matches!(rest.first(), Some('%' | '_')) => {
                t.first() == rest.first() && go(&t[1..], &rest[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

pub(super) fn eval<S: RecordSource>(store: &S, row: &Map<String, Value>, cond: &Cond) -> bool {
    match cond {
        Cond::And(terms) => terms.iter().all(|t| eval(store, row, t)),
        Cond::Or(terms) => terms.iter().any(|t| eval(store, row, t)),
        Cond::Not(inner) => !eval(store, row, inner),
        Cond::Cmp(r, op, lit) => {
            matches_cmp(&as_typed(&r.field, &value_of(store, row, r)), *op, lit)
        }
        Cond::In(r, negated, lits) => {
            let v = as_typed(&r.field, &value_of(store, row, r));
            if matches!(v, Typed::Null) {
                return *negated;
            }
            lits.iter().any(|l| matches_cmp(&v, CmpOp::Eq, l)) != *negated
        }
        Cond::Like(r, pattern) => match value_of(store, row, r) {
            Value::String(s) => like(&s, pattern),
            _ => false,
        },
    }
}

/// `{"type": …, "url": "/services/data/vXX.X/sobjects/Obj/Id"}`.
pub fn attributes(object: &str, id: &str, api_version: &str) -> Value {
    json!({
        "type": object,
        "url": format!("/services/data/v{api_version}/sobjects/{object}/{id}"),
    })
}

/// Writes one selected field into an output record, nesting relationship fields as
/// `"Trainer__r": {"attributes": …, "Email__c": …}` (or `null` without a parent).
pub(super) fn put_field<S: RecordSource>(
    store: &S,
    out: &mut Map<String, Value>,
    row: &Map<String, Value>,
    hops: &[Hop],
    field: &FieldDef,
    api_version: &str,
) {
    let Some((hop, rest)) = hops.split_first() else {
        out.insert(
            field.name.clone(),
            row.get(&field.name).cloned().unwrap_or(Value::Null),
        );
        return;
    };
    let parent = row
        .get(&hop.reference_field)
        .and_then(Value::as_str)
        .and_then(|id| store.row(&hop.target, id))
        .filter(|p| !is_deleted(p));
    match parent {
        None => {
            out.entry(hop.relationship.clone()).or_insert(Value::Null);
        }
        Some(parent) => {
            let id = parent.get("Id").and_then(Value::as_str).unwrap_or_default();
            let entry = out.entry(hop.relationship.clone()).or_insert_with(|| {
                let mut m = Map::new();
                m.insert(
                    "attributes".into(),
                    attributes(&hop.target, id, api_version),
                );
                Value::Object(m)
            });
            if let Value::Object(nested) = entry {
                put_field(store, nested, parent, rest, field, api_version);
            }
        }
    }
}

/// Sort key of one value.
pub(super) fn sort_cmp(a: &Typed, b: &Typed) -> Ordering {
    match (a, b) {
        (Typed::Null, Typed::Null) => Ordering::Equal,
        _ => compare(a, b).unwrap_or(Ordering::Equal),
    }
}

/// Runs a parsed query. `include_deleted` is true for `queryAll`.
pub fn execute<S: RecordSource>(
    query: &Query,
    store: &S,
    include_deleted: bool,
    api_version: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Map<String, Value>>, SoqlError> {
    let src = Source { soql: &query.soql };
    let root = store.object(&query.from.path).ok_or_else(|| {
        src.error(
            "INVALID_TYPE",
            query.from.pos,
            &format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                query.from.path
            ),
        )
    })?;
    let mut selected: Vec<Resolved> = Vec::new();
    for field in &query.select {
        let r = resolve(&src, store, root, field)?;
        if selected.iter().any(|s| {
            s.field.name == r.field.name
                && s.hops.len() == r.hops.len()
                && s.hops
                    .iter()
                    .zip(&r.hops)
                    .all(|(a, b)| a.relationship == b.relationship)
        }) {
            return Err(src.error(
                "MALFORMED_QUERY",
                field.pos,
                &format!("duplicate field selected: {}", field.path),
            ));
        }
        selected.push(r);
    }
    let cond = query
        .filter
        .as_ref()
        .map(|f| compile(&src, store, root, f, now))
        .transpose()?;
    let order: Vec<(Resolved, &OrderKey)> = query
        .order
        .iter()
        .map(|k| resolve(&src, store, root, &k.field).map(|r| (r, k)))
        .collect::<Result<_, _>>()?;

    let mut rows: Vec<&Map<String, Value>> = store
        .rows(&root.name)
        .into_iter()
        .filter(|row| include_deleted || !is_deleted(row))
        .filter(|row| cond.as_ref().is_none_or(|c| eval(store, row, c)))
        .collect();
    if !order.is_empty() {
        rows.sort_by(|a, b| {
            for (r, key) in &order {
                let va = as_typed(&r.field, &value_of(store, a, r));
                let vb = as_typed(&r.field, &value_of(store, b, r));
                let ord = match (matches!(va, Typed::Null), matches!(vb, Typed::Null)) {
                    (true, true) => Ordering::Equal,
                    (true, false) if key.nulls_last => Ordering::Greater,
                    (true, false) => Ordering::Less,
                    (false, true) if key.nulls_last => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) if key.descending => sort_cmp(&vb, &va),
                    (false, false) => sort_cmp(&va, &vb),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(usize::MAX);
    Ok(rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|row| {
            let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
            let mut out = Map::new();
            out.insert("attributes".into(), attributes(&root.name, id, api_version));
            for r in &selected {
                put_field(store, &mut out, row, &r.hops, &r.field, api_version);
            }
            out
        })
        .collect())
}
