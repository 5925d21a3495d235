//! Change events as Salesforce formats them: the `ChangeEventHeader`, schema ids,
//! transaction keys and commit numbers.

use base64::Engine as _;
use rand::Rng as _;
use serde_json::{json, Map, Value};
use sha2::Digest as _;

use super::*;

/// The `data` of a CDC event, shaped like the recordings in the emp-connector README
/// (forcedotcom/EMP-Connector, "Console Example"): CREATE/UNDELETE carry every non-null
/// field plus system fields and `changedFields: []`; UPDATE carries only the changed
/// fields, with `LastModifiedDate` added to `changedFields`; DELETE carries the header
/// only. `nulledFields`/`diffFields` follow the newer API versions' header.
pub(super) fn change_event_data(
    change: &RecordChange,
    change_origin: &str,
    commit_number: i64,
    replay_id: i64,
) -> Value {
    let now = iso_now();
    let mut body = Map::new();
    let mut changed_fields: Vec<String> = Vec::new();
    let mut nulled_fields: Vec<String> = Vec::new();
    let keep = |name: &str| !FIELDS_NOT_IN_EVENTS.contains(&name);
    match change.kind {
        ChangeKind::Create | ChangeKind::Undelete => {
            for (name, value) in &change.values {
                if keep(name) && !value.is_null() {
                    body.insert(name.clone(), value.clone());
                }
            }
            for (name, default) in [
                ("CreatedDate", json!(now)),
                ("LastModifiedDate", json!(now)),
                ("CreatedById", json!(change.commit_user)),
                ("LastModifiedById", json!(change.commit_user)),
            ] {
                body.entry(name).or_insert(default);
            }
        }
        ChangeKind::Update => {
            for name in change.changed_fields.iter().filter(|n| keep(n)) {
                let value = change.values.get(name).cloned().unwrap_or(Value::Null);
                if value.is_null() {
                    nulled_fields.push(name.clone());
                }
                body.insert(name.clone(), value);
                changed_fields.push(name.clone());
            }
            if !changed_fields.iter().any(|f| f == "LastModifiedDate") {
                changed_fields.push("LastModifiedDate".into());
            }
            let modified = change
                .values
                .get("LastModifiedDate")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| json!(now));
            body.insert("LastModifiedDate".into(), modified);
        }
        ChangeKind::Delete => {}
    }
    let header = json!({
        "entityName": change.entity,
        "recordIds": [change.record_id],
        "changeType": change.kind.as_str(),
        "changeOrigin": change_origin,
        "transactionKey": transaction_key(),
        "sequenceNumber": 1,
        "commitTimestamp": now_millis(),
        "commitNumber": commit_number,
        "commitUser": change.commit_user,
        "nulledFields": nulled_fields,
        "diffFields": [],
        "changedFields": changed_fields,
    });
    body.insert("ChangeEventHeader".into(), header);
    json!({
        "schema": schema_id(&change.entity),
        "payload": body,
        "event": {"replayId": replay_id},
    })
}

/// A stable 22-character schema id per event type, like `-pszPCNGMHqUPU1ftkjxEA`.
pub(super) fn schema_id(event_type: &str) -> String {
    let digest = sha2::Sha256::digest(event_type.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Shaped like `00039547-b906-1e54-d709-ebbf7a6f2777`.
pub(super) fn transaction_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// CDC JSON renders DateTime fields as `2020-08-06T06:22:19.000Z`.
pub(super) fn iso_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Lower-case base-36 ids like the recorded client id `1cyu4thyxh3fgv1nqwcvebt3o9x`.
pub(super) fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}
