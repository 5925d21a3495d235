//! The simulated org's metadata: objects, fields and their types, as a table others can
//! extend ([`default_schema`], [`ObjectDef::with_field`]). It drives `describe`, SOQL field
//! resolution, and the validation and normalisation of every written value.
//!
//! Value formats follow the REST API: DateTime as `2026-11-26T10:00:00.000+0000` (UTC),
//! Checkbox as JSON booleans, Number as doubles (`2.0`), ids in their 18-character form.

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use crate::wire::RecordId;

/// Salesforce's REST DateTime format.
pub const SF_DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f%z";

/// Field types the simulator knows, named as `describe` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// The record id.
    Id,
    /// Text.
    String,
    /// Long text area.
    TextArea,
    /// URL.
    Url,
    /// Email.
    Email,
    /// Picklist.
    Picklist,
    /// DateTime (stored as `2026-11-26T10:00:00.000+0000`).
    DateTime,
    /// Checkbox.
    Boolean,
    /// Lookup or master-detail.
    Reference,
    /// Number.
    Double,
}

impl FieldType {
    /// The `type` of the field in a describe result.
    pub fn wire_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Url => "url",
            FieldType::Email => "email",
            FieldType::Picklist => "picklist",
            FieldType::DateTime => "datetime",
            FieldType::Boolean => "boolean",
            FieldType::Reference => "reference",
            FieldType::Double => "double",
        }
    }

    /// Text-like types compared as strings in SOQL.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::TextArea
                | FieldType::Url
                | FieldType::Email
                | FieldType::Picklist
        )
    }

    /// Types that hold record ids.
    pub fn is_id(self) -> bool {
        matches!(self, FieldType::Id | FieldType::Reference)
    }
}

/// One field of an object.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// API name, e.g. `Trainer__c`.
    pub name: String,
    /// Label, used in Salesforce's validation messages ("Merchant Name: data value too large").
    pub label: String,
    /// Type of the field.
    pub field_type: FieldType,
    /// Maximum length of text fields (0 for others).
    pub length: u32,
    /// Total digits of a Number field (0 for others); with [`FieldDef::scale`] it bounds the
    /// value: at most `precision - scale` digits left of the decimal point.
    pub precision: u32,
    /// Digits right of the decimal point of a Number field (0 for others).
    pub scale: u32,
    /// Picklist values, in order.
    pub picklist: Vec<String>,
    /// A restricted picklist rejects values not in [`FieldDef::picklist`].
    pub restricted: bool,
    /// Target object of a reference field.
    pub reference_to: Option<String>,
    /// `Trainer__r` for `Trainer__c`.
    pub relationship_name: Option<String>,
    /// Writable through the API (false for system and formula fields).
    pub updateable: bool,
    /// A formula (calculated) field: computed, never written.
    pub calculated: bool,
    /// `__c` fields.
    pub custom: bool,
}

impl FieldDef {
    fn base(name: &str, label: &str, field_type: FieldType) -> FieldDef {
        FieldDef {
            name: name.to_string(),
            label: label.to_string(),
            field_type,
            length: 0,
            precision: 0,
            scale: 0,
            picklist: Vec::new(),
            restricted: false,
            reference_to: None,
            relationship_name: None,
            updateable: true,
            calculated: false,
            custom: name.ends_with("__c"),
        }
    }

    /// Text (`string`) of at most `length` characters.
    pub fn text(name: &str, label: &str, length: u32) -> FieldDef {
        FieldDef {
            length,
            ..FieldDef::base(name, label, FieldType::String)
        }
    }

    /// Long text area.
    pub fn textarea(name: &str, label: &str, length: u32) -> FieldDef {
        FieldDef {
            length,
            ..FieldDef::base(name, label, FieldType::TextArea)
        }
    }

    /// URL (255).
    pub fn url(name: &str, label: &str) -> FieldDef {
        FieldDef {
            length: 255,
            ..FieldDef::base(name, label, FieldType::Url)
        }
    }

    /// Email (80).
    pub fn email(name: &str, label: &str) -> FieldDef {
        FieldDef {
            length: 80,
            ..FieldDef::base(name, label, FieldType::Email)
        }
    }

    /// DateTime.
    pub fn datetime(name: &str, label: &str) -> FieldDef {
        FieldDef::base(name, label, FieldType::DateTime)
    }

    /// Checkbox.
    pub fn checkbox(name: &str, label: &str) -> FieldDef {
        FieldDef::base(name, label, FieldType::Boolean)
    }

    /// Number(`precision`, `scale`): `precision` digits in all, `scale` of them decimals, as
    /// the field's metadata declares them (`Lark_Participants__c` is Number(4,0)).
    pub fn number(name: &str, label: &str, precision: u32, scale: u32) -> FieldDef {
        FieldDef {
            precision,
            scale,
            ..FieldDef::base(name, label, FieldType::Double)
        }
    }

    /// Picklist; `restricted` rejects other values.
    pub fn picklist(name: &str, label: &str, values: &[&str], restricted: bool) -> FieldDef {
        FieldDef {
            length: 255,
            picklist: values.iter().map(|v| v.to_string()).collect(),
            restricted,
            ..FieldDef::base(name, label, FieldType::Picklist)
        }
    }

    /// Lookup to `target`, traversed in SOQL as `relationship`.
    pub fn lookup(name: &str, label: &str, target: &str, relationship: &str) -> FieldDef {
        FieldDef {
            length: 18,
            reference_to: Some(target.to_string()),
            relationship_name: Some(relationship.to_string()),
            ..FieldDef::base(name, label, FieldType::Reference)
        }
    }

    /// A read-only formula field of type `field_type`; its value is computed by the
    /// simulator (see `formula_value` in the store).
    pub fn formula(name: &str, label: &str, field_type: FieldType) -> FieldDef {
        FieldDef {
            length: 1300,
            updateable: false,
            calculated: true,
            ..FieldDef::base(name, label, field_type)
        }
    }

    fn read_only(mut self) -> FieldDef {
        self.updateable = false;
        self
    }

    /// The describe entry of this field (the keys clients read, with Salesforce's names).
    pub fn describe(&self) -> Value {
        let checkbox_default = match self.field_type {
            FieldType::Boolean => json!(false),
            _ => Value::Null,
        };
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.field_type.wire_name(),
            "length": self.length,
            "custom": self.custom,
            "calculated": self.calculated,
            "createable": self.updateable,
            "updateable": self.updateable,
            "nillable": !matches!(self.field_type, FieldType::Boolean | FieldType::Id),
            // A Checkbox is never blank: Salesforce fills in its default (false) on create.
            "defaultedOnCreate": self.field_type == FieldType::Boolean,
            "defaultValue": checkbox_default,
            "precision": self.precision,
            "scale": self.scale,
            "digits": 0,
            "restrictedPicklist": self.restricted,
            "picklistValues": self.picklist.iter().map(|v| json!({
                "active": true,
                "defaultValue": false,
                "label": v,
                "validFor": null,
                "value": v,
            })).collect::<Vec<_>>(),
            "referenceTo": self.reference_to.iter().collect::<Vec<_>>(),
            "relationshipName": self.relationship_name,
            "soapType": match self.field_type {
                FieldType::Id | FieldType::Reference => "tns:ID",
                FieldType::DateTime => "xsd:dateTime",
                FieldType::Boolean => "xsd:boolean",
                FieldType::Double => "xsd:double",
                _ => "xsd:string",
            },
        })
    }
}

/// One object (sObject type).
#[derive(Debug, Clone)]
pub struct ObjectDef {
    /// API name, e.g. `Training_Booking__c`.
    pub name: String,
    /// Label.
    pub label: String,
    /// First three characters of its record ids.
    pub key_prefix: String,
    /// Fields, system fields first.
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    /// A custom object with the standard system fields (`Id`, `IsDeleted`, `Name`,
    /// `CreatedDate`, `CreatedById`, `LastModifiedDate`, `LastModifiedById`,
    /// `SystemModstamp`).
    pub fn custom(name: &str, label: &str, key_prefix: &str) -> ObjectDef {
        ObjectDef {
            name: name.to_string(),
            label: label.to_string(),
            key_prefix: key_prefix.to_string(),
            fields: system_fields(),
        }
    }

    /// Adds (or replaces) a field.
    pub fn with_field(mut self, field: FieldDef) -> ObjectDef {
        self.fields
            .retain(|f| !f.name.eq_ignore_ascii_case(&field.name));
        self.fields.push(field);
        self
    }

    /// The field with this name (case-insensitive, as in Salesforce).
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The reference field whose relationship name is `relationship` (case-insensitive).
    pub fn relationship(&self, relationship: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(relationship))
        })
    }

    /// The describe result.
    /// The describe answer, with URLs in the API version the client asked for.
    pub fn describe(&self, version: &str) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label,
            "keyPrefix": self.key_prefix,
            "custom": self.name.ends_with("__c"),
            "createable": true,
            "updateable": true,
            "deletable": true,
            "queryable": true,
            "fields": self.fields.iter().map(FieldDef::describe).collect::<Vec<_>>(),
            "urls": {
                "sobject": format!("/services/data/v{version}/sobjects/{}", self.name),
                "describe": format!("/services/data/v{version}/sobjects/{}/describe", self.name),
            },
        })
    }
}

fn system_fields() -> Vec<FieldDef> {
    vec![
        FieldDef {
            length: 18,
            ..FieldDef::base("Id", "Record ID", FieldType::Id)
        }
        .read_only(),
        FieldDef::checkbox("IsDeleted", "Deleted").read_only(),
        FieldDef::text("Name", "Name", 80),
        FieldDef::datetime("CreatedDate", "Created Date").read_only(),
        FieldDef::lookup("CreatedById", "Created By ID", "User", "CreatedBy").read_only(),
        FieldDef::datetime("LastModifiedDate", "Last Modified Date").read_only(),
        FieldDef::lookup(
            "LastModifiedById",
            "Last Modified By ID",
            "User",
            "LastModifiedBy",
        )
        .read_only(),
        FieldDef::datetime("SystemModstamp", "System Modstamp").read_only(),
    ]
}

/// The booking object of design §2.4.
pub const BOOKING_OBJECT: &str = "Training_Booking__c";
/// The trainer object of design §2.4.
pub const TRAINER_OBJECT: &str = "Onboarding_Trainer__c";

/// The schema a fresh simulator starts with: the booking and trainer objects of design
/// §2.4 (as shipped in `salesforce-metadata/`), and a minimal `User`.
pub fn default_schema() -> Vec<ObjectDef> {
    let booking = ObjectDef::custom(BOOKING_OBJECT, "Training Booking", "a0B")
        .with_field(FieldDef::lookup(
            "Trainer__c",
            "Trainer",
            TRAINER_OBJECT,
            "Trainer__r",
        ))
        .with_field(FieldDef::datetime("Training_Start__c", "Training Start"))
        .with_field(FieldDef::datetime("Training_End__c", "Training End"))
        .with_field(FieldDef::picklist(
            "Service_Type__c",
            "Service Type",
            &["Remote", "Onsite"],
            false,
        ))
        .with_field(FieldDef::picklist(
            "Status__c",
            "Status",
            &["Scheduled", "Confirmed", "Completed", "Cancelled"],
            false,
        ))
        .with_field(FieldDef::text("Merchant_Name__c", "Merchant Name", 255))
        .with_field(FieldDef::url(
            "Remote_Training_Meeting_Link__c",
            "Remote Training Meeting Link",
        ))
        .with_field(FieldDef::text(
            "Lark_Reservation_Id__c",
            "Lark Reservation ID",
            64,
        ))
        .with_field(FieldDef::picklist(
            "Lark_Meeting_Status__c",
            "Lark Meeting Status",
            &[
                "Created",
                "Created by App",
                "Pending Trainer Connection",
                "Failed",
                "Cancelled",
            ],
            true,
        ))
        .with_field(FieldDef::text(
            "Lark_Meeting_Error__c",
            "Lark Meeting Error",
            255,
        ))
        .with_field(FieldDef::text(
            "Lark_Calendar_Event_Id__c",
            "Lark Calendar Event ID",
            255,
        ))
        // Attendance (design §2.4, rule 29), as salesforce-metadata/ ships them.
        .with_field(FieldDef::picklist(
            "Lark_Session_Status__c",
            "Lark Session Status",
            &["In Progress", "Completed", "No Show"],
            true,
        ))
        .with_field(FieldDef::datetime(
            "Lark_Session_Started_At__c",
            "Lark Session Started At",
        ))
        .with_field(FieldDef::datetime(
            "Lark_Session_Ended_At__c",
            "Lark Session Ended At",
        ))
        .with_field(FieldDef::datetime(
            "Lark_Trainer_Joined_At__c",
            "Lark Trainer Joined At",
        ))
        .with_field(FieldDef::number(
            "Lark_Participants__c",
            "Lark Participants",
            4,
            0,
        ))
        .with_field(FieldDef::checkbox(
            "Lark_Guest_Joined__c",
            "Lark Guest Joined",
        ))
        .with_field(FieldDef::url("Lark_Recording_Url__c", "Lark Recording URL"))
        // The guest a test can invite (`salesforce.booking.attendee_email_field`).
        .with_field(FieldDef::email("Merchant_Email__c", "Merchant Email"));
    let trainer = ObjectDef::custom(TRAINER_OBJECT, "Onboarding Trainer", "a0T")
        .with_field(FieldDef::email("Email__c", "Email"))
        .with_field(FieldDef::text("Lark_User_ID__c", "Lark User ID", 64))
        .with_field(FieldDef::textarea(
            "Lark_Access_Token__c",
            "Lark Access Token",
            // As salesforce-metadata/ ships it: hex-encrypted ~2 KB tokens need > 4096.
            8192,
        ))
        .with_field(FieldDef::textarea(
            "Lark_Refresh_Token__c",
            "Lark Refresh Token",
            8192,
        ))
        .with_field(FieldDef::datetime(
            "Lark_Token_Expires_At__c",
            "Lark Access Token Expires At",
        ))
        .with_field(FieldDef::datetime(
            "Lark_Refresh_Expires_At__c",
            "Lark Refresh Token Expires At",
        ))
        .with_field(FieldDef::datetime(
            "Lark_Connected_At__c",
            "Lark Connected At",
        ))
        .with_field(FieldDef::datetime(
            "Lark_Last_Token_Refresh__c",
            "Lark Last Token Refresh",
        ))
        .with_field(FieldDef::checkbox("Lark_Connected__c", "Lark Connected"))
        .with_field(FieldDef::text(
            "Lark_Connection_Error__c",
            "Lark Connection Error",
            255,
        ))
        .with_field(FieldDef::formula(
            "Lark_Connect_Link__c",
            "Lark Connect Link",
            FieldType::Url,
        ));
    let user = ObjectDef::custom("User", "User", "005")
        .with_field(FieldDef::text("Username", "Username", 80))
        .with_field(FieldDef::email("Email", "Email"));
    vec![booking, trainer, user]
}

/// A validation failure of one written value, in Salesforce's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `STRING_TOO_LONG`, `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`, …
    pub code: String,
    /// Salesforce's message, e.g. `Merchant Name: data value too large: … (max length=255)`.
    pub message: String,
    /// The field concerned.
    pub fields: Vec<String>,
}

impl FieldError {
    fn new(code: &str, message: String, field: &str) -> FieldError {
        FieldError {
            code: code.to_string(),
            message,
            fields: vec![field.to_string()],
        }
    }
}

/// Parses an ISO-8601 DateTime as the REST API accepts it (`Z`, `+01:00` or `+0100`,
/// with or without fractional seconds).
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::<FixedOffset>::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// A UTC instant in Salesforce's REST format.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.format(SF_DATETIME_FORMAT).to_string()
}

/// A stored REST-format DateTime in the format CDC events carry
/// (`2026-11-26T10:00:00.000Z`, as in the Change Data Capture Developer Guide examples).
pub fn cdc_datetime(stored: &str) -> String {
    parse_datetime(stored)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| stored.to_string())
}

/// Validates and normalises one written value for `field`. Returns the value to store.
// Error codes and message shapes as Salesforce returns them: STRING_TOO_LONG
// ("Label: data value too large: … (max length=n)"), INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST
// ("Label: bad value for restricted picklist field: v"), INVALID_EMAIL_ADDRESS,
// NUMBER_OUTSIDE_VALID_RANGE (see `check_number_range`), JSON_PARSER_ERROR for a value of the
// wrong JSON type.
pub fn normalise_value(field: &FieldDef, value: &Value) -> Result<Value, FieldError> {
    let wrong_type = |expected: &str| {
        FieldError::new(
            "JSON_PARSER_ERROR",
            format!(
                "Cannot deserialize instance of {expected} from {} value {} or request may be missing a required field",
                json_kind(value),
                value
            ),
            &field.name,
        )
    };
    if value.is_null() {
        // Null clears a field; a cleared Checkbox reads false.
        return Ok(match field.field_type {
            FieldType::Boolean => Value::Bool(false),
            _ => Value::Null,
        });
    }
    match field.field_type {
        FieldType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => Err(wrong_type("boolean")),
        },
        FieldType::Double => match value.as_f64() {
            Some(number) => check_number_range(field, number, value),
            None => Err(wrong_type("double")),
        },
        FieldType::DateTime => match value.as_str().and_then(parse_datetime) {
            Some(t) => Ok(Value::String(format_datetime(t))),
            None => Err(wrong_type("datetime")),
        },
        FieldType::Id | FieldType::Reference => {
            let text = value.as_str().ok_or_else(|| wrong_type("reference"))?;
            if text.is_empty() {
                return Ok(Value::Null);
            }
            match RecordId::parse(text) {
                Ok(id) => Ok(Value::String(id.to_string())),
                Err(_) => Err(FieldError::new(
                    "MALFORMED_ID",
                    format!("{}: id value of incorrect type: {text}", field.label),
                    &field.name,
                )),
            }
        }
        _ => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(wrong_type("string")),
            };
            if text.is_empty() {
                // Salesforce stores an empty text value as null.
                return Ok(Value::Null);
            }
            let len = text.chars().count() as u32;
            if field.length > 0 && len > field.length {
                return Err(FieldError::new(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {} (max length={})",
                        field.label,
                        text.chars().take(80).collect::<String>(),
                        field.length
                    ),
                    &field.name,
                ));
            }
            if field.field_type == FieldType::Picklist
                && field.restricted
                && !field.picklist.iter().any(|v| v == &text)
            {
                return Err(FieldError::new(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!(
                        "{}: bad value for restricted picklist field: {text}",
                        field.label
                    ),
                    &field.name,
                ));
            }
            if field.field_type == FieldType::Email && !looks_like_email(&text) {
                return Err(FieldError::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {text}", field.label),
                    &field.name,
                ));
            }
            Ok(Value::String(text))
        }
    }
}

/// A Number field's value: stored as a double, so it reads back as `2.0` (Salesforce keeps
/// custom Number fields as doubles and the REST API answers `1234567.0` for `1234567`:
/// help.salesforce.com article 000221617). Only digits left of the decimal point are bounded,
/// by `precision - scale`; extra decimals are kept as sent, since the API does not round them
/// (article 000387302, "Number Field Stores More Decimal Places Than Defined When Set via API").
/// Beyond the bound: NUMBER_OUTSIDE_VALID_RANGE, "Label: value outside of valid range on numeric
/// field: 100.0".
fn check_number_range(field: &FieldDef, number: f64, sent: &Value) -> Result<Value, FieldError> {
    let integer_digits = field.precision.saturating_sub(field.scale);
    if field.precision > 0 && number.abs().trunc() >= 10f64.powi(integer_digits as i32) {
        return Err(FieldError::new(
            "NUMBER_OUTSIDE_VALID_RANGE",
            format!(
                "{}: value outside of valid range on numeric field: {sent}",
                field.label
            ),
            &field.name,
        ));
    }
    Ok(json!(number))
}

fn looks_like_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !text.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "VALUE_NULL",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

#[cfg(test)]
mod tests;
