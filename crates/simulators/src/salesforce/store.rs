//! The simulated org's data: records per object, id generation, validated writes, query
//! cursors, injected write rejections, and the CDC change log.
//!
//! Every write goes through [`Org::create`], [`Org::update`] or [`Org::delete`], which
//! validate against the schema and queue a [`RecordChange`]; [`Org::commit`] ends the
//! transaction and publishes the queued changes to the CometD hub, in commit order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};

use super::cometd::{ChangeKind, CometdHub, RecordChange};
use super::query::RecordSource;
use super::schema::{
    cdc_datetime, default_schema, format_datetime, normalise_value, FieldType, ObjectDef,
};
use crate::wire::{id_checksum, RecordId};

/// Characters of the base-62 serial in generated ids, in ASCII order so that ids of one
/// object sort in creation order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Salesforce's default query batch size (REST API Developer Guide, "Query Options
/// Header": default 2,000).
pub const DEFAULT_BATCH_SIZE: usize = 2000;

/// A failed write in Salesforce's terms: HTTP status, error code, message, fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    /// HTTP status of a single-record answer (400, 404).
    pub status: u16,
    /// `errorCode` / `statusCode`.
    pub code: String,
    /// `message`.
    pub message: String,
    /// `fields` the error is about.
    pub fields: Vec<String>,
}

impl WriteError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> WriteError {
        WriteError {
            status,
            code: code.to_string(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    fn on_field(mut self, field: &str) -> WriteError {
        self.fields = vec![field.to_string()];
        self
    }

    /// `404 NOT_FOUND` as the REST API answers for an unknown object or record.
    pub fn not_found() -> WriteError {
        WriteError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// "The next `remaining` API updates of `object` fail with `code`."
#[derive(Debug, Clone)]
struct Rejection {
    object: String,
    remaining: usize,
    code: String,
    message: String,
}

/// A query result beyond its first batch, served through `nextRecordsUrl`.
#[derive(Debug, Clone)]
pub struct Cursor {
    /// Every row of the result, the first batch included (offsets index into it).
    pub rows: Vec<Map<String, Value>>,
    /// Rows per batch, fixed when the query ran (it may have asked for its own size).
    pub batch: usize,
}

/// The org: schema, records and everything that changes with them.
pub struct Org {
    hub: Arc<CometdHub>,
    objects: Vec<ObjectDef>,
    /// Rows per object API name, keyed by id (ids sort in creation order).
    records: HashMap<String, BTreeMap<String, Map<String, Value>>>,
    serials: HashMap<String, u64>,
    cursors: HashMap<String, Cursor>,
    next_cursor: u64,
    /// Records per query batch.
    pub batch_size: usize,
    rejections: Vec<Rejection>,
    /// Validation rules refusing every API write to one record: id → message.
    validation_rules: HashMap<String, String>,
    /// Changes of the open transaction, published by [`Org::commit`].
    pending: Vec<RecordChange>,
    /// Every change ever published, for tests.
    published: Vec<RecordChange>,
    /// `{Field}` templates of formula fields, per (object, field).
    formulas: HashMap<(String, String), String>,
}

impl Org {
    /// A fresh org with the default schema, the two simulated users, and no other records.
    pub fn new(hub: Arc<CometdHub>) -> Org {
        let mut org = Org {
            hub,
            objects: default_schema(),
            records: HashMap::new(),
            serials: HashMap::new(),
            cursors: HashMap::new(),
            next_cursor: 0,
            batch_size: DEFAULT_BATCH_SIZE,
            rejections: Vec::new(),
            validation_rules: HashMap::new(),
            pending: Vec::new(),
            published: Vec::new(),
            formulas: HashMap::new(),
        };
        org.set_formula(
            super::schema::TRAINER_OBJECT,
            "Lark_Connect_Link__c",
            "http://localhost:8080/oauth/lark/start?trainer={Id}",
        );
        for (id, name, username) in [
            (
                crate::SF_INTEGRATION_USER_ID,
                "Integration User",
                super::SF_USERNAME,
            ),
            (
                crate::SF_HUMAN_USER_ID,
                "Sam Scheduler",
                "sam.scheduler@lark-vc-bridge.sim",
            ),
        ] {
            let now = format_datetime(Utc::now());
            let mut row = Map::new();
            row.insert("Id".into(), id.into());
            row.insert("IsDeleted".into(), false.into());
            row.insert("Name".into(), name.into());
            row.insert("Username".into(), username.into());
            row.insert("Email".into(), username.into());
            for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
                row.insert(f.into(), now.clone().into());
            }
            for f in ["CreatedById", "LastModifiedById"] {
                row.insert(f.into(), crate::SF_INTEGRATION_USER_ID.into());
            }
            org.records
                .entry("User".into())
                .or_default()
                .insert(id.to_string(), row);
        }
        org
    }

    /// All object definitions.
    pub fn objects(&self) -> &[ObjectDef] {
        &self.objects
    }

    /// Adds or replaces an object definition (others extend the schema with this).
    pub fn define_object(&mut self, object: ObjectDef) {
        self.objects
            .retain(|o| !o.name.eq_ignore_ascii_case(&object.name));
        self.objects.push(object);
    }

    /// Removes a field from the schema and its values from every row.
    pub fn remove_field(&mut self, object: &str, field: &str) {
        let Some(def) = self
            .objects
            .iter_mut()
            .find(|o| o.name.eq_ignore_ascii_case(object))
        else {
            return;
        };
        let Some(canonical) = def.field(field).map(|f| f.name.clone()) else {
            return;
        };
        def.fields.retain(|f| f.name != canonical);
        let object = def.name.clone();
        for row in self.records.entry(object).or_default().values_mut() {
            row.remove(&canonical);
        }
    }

    /// Sets the template of a formula field (`{Field}` placeholders) and recomputes it.
    pub fn set_formula(&mut self, object: &str, field: &str, template: &str) {
        self.formulas.insert(
            (object.to_string(), field.to_string()),
            template.to_string(),
        );
        if let Some(rows) = self.records.get_mut(object) {
            for row in rows.values_mut() {
                let value = render_template(template, row);
                row.insert(field.to_string(), value);
            }
        }
    }

    /// The next `times` API updates of `object` fail with this error.
    pub fn reject_writes(&mut self, object: &str, times: usize, code: &str, message: &str) {
        self.rejections.push(Rejection {
            object: object.to_string(),
            remaining: times,
            code: code.to_string(),
            message: message.to_string(),
        });
    }

    /// Every API write to record `id` fails with `FIELD_CUSTOM_VALIDATION_EXCEPTION` and
    /// `message` (None lifts the rule), as an org validation rule would.
    pub fn set_validation_rule(&mut self, id: &str, message: Option<&str>) {
        match message {
            Some(m) => self.validation_rules.insert(id.to_string(), m.to_string()),
            None => self.validation_rules.remove(id),
        };
    }

    /// Every change published so far.
    pub fn published(&self) -> &[RecordChange] {
        &self.published
    }

    fn object_def(&self, name: &str) -> Option<&ObjectDef> {
        self.objects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// A live (not deleted) row.
    pub fn live(&self, object: &str, id: &str) -> Option<&Map<String, Value>> {
        let object = self.object_def(object)?.name.clone();
        let id = RecordId::parse(id).ok()?;
        self.records
            .get(&object)?
            .get(id.as_str())
            .filter(|r| !r.get("IsDeleted").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Live rows of an object, in creation order.
    pub fn live_rows(&self, object: &str) -> Vec<Map<String, Value>> {
        let Some(def) = self.object_def(object) else {
            return Vec::new();
        };
        self.records
            .get(&def.name)
            .map(|rows| {
                rows.values()
                    .filter(|r| !r.get("IsDeleted").and_then(Value::as_bool).unwrap_or(false))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Finds the row for a write: 404 `NOT_FOUND` for an unknown or malformed id,
    /// 404 `ENTITY_IS_DELETED` for a deleted one.
    fn row_for_write(&self, object: &str, id: &str) -> Result<(String, String), WriteError> {
        let def = self.object_def(object).ok_or_else(WriteError::not_found)?;
        let id = RecordId::parse(id).map_err(|_| {
            WriteError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {id}"),
            )
        })?;
        let row = self
            .records
            .get(&def.name)
            .and_then(|rows| rows.get(id.as_str()))
            .ok_or_else(WriteError::not_found)?;
        if row
            .get("IsDeleted")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(WriteError::new(
                404,
                "ENTITY_IS_DELETED",
                "entity is deleted",
            ));
        }
        Ok((def.name.clone(), id.to_string()))
    }

    /// Validates written fields against the schema; returns canonical names and stored
    /// values.
    fn prepare(
        &self,
        object: &ObjectDef,
        fields: &Map<String, Value>,
    ) -> Result<Vec<(String, Value)>, WriteError> {
        let mut out = Vec::with_capacity(fields.len());
        for (key, value) in fields {
            if key == "attributes" {
                continue;
            }
            let def = object.field(key).ok_or_else(|| {
                WriteError::new(
                    400,
                    "INVALID_FIELD",
                    format!("No such column '{key}' on sobject of type {}", object.name),
                )
            })?;
            if !def.updateable {
                return Err(WriteError::new(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        def.name
                    ),
                )
                .on_field(&def.name));
            }
            let stored = normalise_value(def, value).map_err(|e| WriteError {
                status: 400,
                code: e.code,
                message: e.message,
                fields: e.fields,
            })?;
            if def.field_type == FieldType::Reference {
                if let Value::String(target_id) = &stored {
                    self.check_reference(def, target_id)?;
                }
            }
            out.push((def.name.clone(), stored));
        }
        Ok(out)
    }

    fn check_reference(&self, field: &super::schema::FieldDef, id: &str) -> Result<(), WriteError> {
        let target = field
            .reference_to
            .as_deref()
            .and_then(|t| self.object_def(t));
        let Some(target) = target else {
            return Ok(());
        };
        if !id.starts_with(&target.key_prefix) {
            return Err(WriteError::new(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                format!("{}: id value of incorrect type: {id}", field.label),
            )
            .on_field(&field.name));
        }
        match self.records.get(&target.name).and_then(|rows| rows.get(id)) {
            None => Err(WriteError::new(
                400,
                "INVALID_CROSS_REFERENCE_KEY",
                format!("{}: invalid cross reference id", field.label),
            )
            .on_field(&field.name)),
            Some(row)
                if row
                    .get("IsDeleted")
                    .and_then(Value::as_bool)
                    .unwrap_or(false) =>
            {
                Err(
                    WriteError::new(400, "ENTITY_IS_DELETED", "entity is deleted")
                        .on_field(&field.name),
                )
            }
            Some(_) => Ok(()),
        }
    }

    /// A new 18-char id: key prefix, a fixed "pod" part with an uppercase letter (so the
    /// checksum is exercised from the first record), a base-62 serial, the checksum.
    fn new_id(&mut self, object: &ObjectDef) -> String {
        let serial = self.serials.entry(object.name.clone()).or_insert(0);
        *serial += 1;
        let mut n = *serial;
        let mut digits = [b'0'; 10];
        for d in digits.iter_mut().rev() {
            *d = BASE62[(n % 62) as usize];
            n /= 62;
        }
        let base = format!(
            "{}Dz{}",
            object.key_prefix,
            std::str::from_utf8(&digits).expect("ascii")
        );
        format!("{base}{}", id_checksum(&base))
    }

    /// Creates a record; returns its id. Queues a CREATE change.
    pub fn create(
        &mut self,
        object: &str,
        fields: &Map<String, Value>,
        user: &str,
    ) -> Result<String, WriteError> {
        let def = self
            .object_def(object)
            .ok_or_else(WriteError::not_found)?
            .clone();
        let values = self.prepare(&def, fields)?;
        let id = self.new_id(&def);
        let now = format_datetime(Utc::now());
        let mut row = Map::new();
        for f in &def.fields {
            let initial = match f.field_type {
                FieldType::Boolean => Value::Bool(false),
                _ => Value::Null,
            };
            row.insert(f.name.clone(), initial);
        }
        row.insert("Id".into(), id.clone().into());
        row.insert("IsDeleted".into(), false.into());
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            row.insert(f.into(), now.clone().into());
        }
        for f in ["CreatedById", "LastModifiedById"] {
            row.insert(f.into(), user.into());
        }
        for (name, value) in values {
            row.insert(name, value);
        }
        self.apply_formulas(&def, &mut row);

        // CREATE carries every non-empty field and the system fields (Change Data Capture
        // Developer Guide, "Change Event Body Fields"); the id travels in recordIds.
        let mut changed = Vec::new();
        let mut cdc_values = Map::new();
        for f in &def.fields {
            if matches!(f.name.as_str(), "Id" | "IsDeleted" | "SystemModstamp") || f.calculated {
                continue;
            }
            let value = &row[&f.name];
            if value.is_null() {
                continue;
            }
            changed.push(f.name.clone());
            cdc_values.insert(f.name.clone(), cdc_value(f.field_type, value));
        }
        self.records
            .entry(def.name.clone())
            .or_default()
            .insert(id.clone(), row);
        self.pending.push(RecordChange {
            entity: def.name.clone(),
            kind: ChangeKind::Create,
            record_id: id.clone(),
            changed_fields: changed,
            commit_user: user.to_string(),
            values: cdc_values,
        });
        Ok(id)
    }

    /// Updates a record. `through_api` makes injected rejections apply (they model the
    /// org's validation rules refusing the service's writes). Queues an UPDATE change.
    pub fn update(
        &mut self,
        object: &str,
        id: &str,
        fields: &Map<String, Value>,
        user: &str,
        through_api: bool,
    ) -> Result<(), WriteError> {
        let (object, id) = self.row_for_write(object, id)?;
        let def = self.object_def(&object).expect("checked").clone();
        let values = self.prepare(&def, fields)?;
        if through_api {
            if let Some(r) = self
                .rejections
                .iter_mut()
                .find(|r| r.remaining > 0 && r.object.eq_ignore_ascii_case(&object))
            {
                r.remaining -= 1;
                return Err(WriteError::new(400, &r.code.clone(), r.message.clone()));
            }
            if let Some(message) = self.validation_rules.get(&id) {
                return Err(WriteError::new(
                    400,
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    message.clone(),
                ));
            }
        }
        let now = format_datetime(Utc::now());
        let row = self
            .records
            .get_mut(&object)
            .and_then(|rows| rows.get_mut(&id))
            .expect("checked");
        let mut changed = Vec::new();
        let mut cdc_values = Map::new();
        for (name, value) in values {
            if row.get(&name) != Some(&value) {
                let ft = def
                    .field(&name)
                    .map(|f| f.field_type)
                    .unwrap_or(FieldType::String);
                cdc_values.insert(name.clone(), cdc_value(ft, &value));
                changed.push(name.clone());
                row.insert(name, value);
            }
        }
        // Salesforce saves the record even when no value changed: LastModifiedDate and
        // SystemModstamp move, and the change event lists LastModifiedDate in
        // changedFields ("A list of the fields that were changed in an update operation,
        // including the LastModifiedDate system field", ChangeEventHeader, Change Data
        // Capture Developer Guide). So a no-op update still publishes an UPDATE whose only
        // changed field is LastModifiedDate. LastModifiedById appears only when the writer
        // differs from the previous one ("Change Event Body Fields").
        row.insert("LastModifiedDate".into(), now.clone().into());
        row.insert("SystemModstamp".into(), now.clone().into());
        changed.push("LastModifiedDate".into());
        cdc_values.insert("LastModifiedDate".into(), cdc_datetime(&now).into());
        if row.get("LastModifiedById").and_then(Value::as_str) != Some(user) {
            row.insert("LastModifiedById".into(), user.into());
            changed.push("LastModifiedById".into());
            cdc_values.insert("LastModifiedById".into(), user.into());
        }
        let mut snapshot = row.clone();
        self.apply_formulas(&def, &mut snapshot);
        self.records
            .get_mut(&object)
            .expect("checked")
            .insert(id.clone(), snapshot);
        self.pending.push(RecordChange {
            entity: object,
            kind: ChangeKind::Update,
            record_id: id,
            changed_fields: changed,
            commit_user: user.to_string(),
            values: cdc_values,
        });
        Ok(())
    }

    /// Soft-deletes a record (it stays visible to queryAll with `IsDeleted = true`).
    /// Queues a DELETE change (no fields, per "Change Event Body Fields").
    pub fn delete(&mut self, object: &str, id: &str, user: &str) -> Result<(), WriteError> {
        let (object, id) = self.row_for_write(object, id)?;
        let now = format_datetime(Utc::now());
        let row = self
            .records
            .get_mut(&object)
            .and_then(|rows| rows.get_mut(&id))
            .expect("checked");
        row.insert("IsDeleted".into(), true.into());
        row.insert("LastModifiedDate".into(), now.clone().into());
        row.insert("SystemModstamp".into(), now.into());
        row.insert("LastModifiedById".into(), user.into());
        self.pending.push(RecordChange {
            entity: object,
            kind: ChangeKind::Delete,
            record_id: id,
            changed_fields: Vec::new(),
            commit_user: user.to_string(),
            values: Map::new(),
        });
        Ok(())
    }

    /// Ends a transaction: publishes its changes to the hub, in order.
    // Salesforce gives the changes of one transaction one transactionKey and may merge
    // identical changes to several records into one event with several recordIds
    // ("Merged Change Events"). RecordChange has no transaction key, so each record's
    // change is published as its own event; subscribers handle both shapes anyway.
    pub fn commit(&mut self) {
        for change in std::mem::take(&mut self.pending) {
            self.hub.publish(change.clone());
            self.published.push(change);
        }
    }

    /// A copy of the rows, to restore when an all-or-none transaction fails.
    pub fn savepoint(&self) -> HashMap<String, BTreeMap<String, Map<String, Value>>> {
        self.records.clone()
    }

    /// Undoes everything since `savepoint`, including queued changes.
    pub fn rollback(&mut self, savepoint: HashMap<String, BTreeMap<String, Map<String, Value>>>) {
        self.records = savepoint;
        self.pending.clear();
    }

    /// Keeps the rows beyond a query's first batch, served `batch` rows at a time;
    /// returns the cursor id.
    pub fn open_cursor(&mut self, rows: Vec<Map<String, Value>>, batch: usize) -> String {
        self.next_cursor += 1;
        let base = format!("01gDz{:0>10}", self.next_cursor);
        let id = format!("{base}{}", id_checksum(&base));
        let batch = batch.max(1);
        self.cursors.insert(id.clone(), Cursor { rows, batch });
        id
    }

    /// The rows of an open cursor.
    pub fn cursor(&self, id: &str) -> Option<&Cursor> {
        self.cursors.get(id)
    }

    /// Forgets a cursor whose last batch was served.
    pub fn close_cursor(&mut self, id: &str) {
        self.cursors.remove(id);
    }

    fn apply_formulas(&self, def: &ObjectDef, row: &mut Map<String, Value>) {
        for f in def.fields.iter().filter(|f| f.calculated) {
            if let Some(template) = self.formulas.get(&(def.name.clone(), f.name.clone())) {
                let value = render_template(template, row);
                row.insert(f.name.clone(), value);
            }
        }
    }
}

fn render_template(template: &str, row: &Map<String, Value>) -> Value {
    let mut out = template.to_string();
    for field in crate::wire::template_fields(template) {
        let value = row.get(&field).and_then(Value::as_str).unwrap_or_default();
        out = out.replace(&format!("{{{field}}}"), value);
    }
    Value::String(out)
}

/// A stored value as a CDC event carries it (DateTime as `…000Z`).
fn cdc_value(field_type: FieldType, value: &Value) -> Value {
    match (field_type, value) {
        (FieldType::DateTime, Value::String(s)) => Value::String(cdc_datetime(s)),
        _ => value.clone(),
    }
}

impl RecordSource for Org {
    fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.object_def(name)
    }

    fn rows(&self, object: &str) -> Vec<&Map<String, Value>> {
        self.records
            .get(object)
            .map(|rows| rows.values().collect())
            .unwrap_or_default()
    }

    fn row(&self, object: &str, id: &str) -> Option<&Map<String, Value>> {
        self.records.get(object)?.get(id)
    }
}
