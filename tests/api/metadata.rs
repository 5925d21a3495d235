//! The Salesforce metadata project (`salesforce-metadata/`) agrees with the service.
//!
//! An admin deploys `salesforce-metadata/` and runs the service on `config/default.toml`;
//! every field the service then reads or writes must exist, every meeting status it writes
//! must be a value of the restricted picklist, and the permission sets, the Change Data
//! Capture selection and the reports must match. The attendance fields (design §2.4, rule 29)
//! must have the types the design gives them, and the simulated org (`lvb_simulators`) must
//! describe every shipped field as the deploy creates it, so tests against the simulator see
//! the org an admin gets. A field renamed on one side only (in the
//! metadata or in the configuration) fails `default_configuration_only_uses_fields_that_exist`;
//! `a_field_renamed_on_either_side_is_caught` proves that on every run.
//!
//! Fields that already exist in the org, and are deliberately not shipped, are listed in
//! `salesforce-metadata/existing-fields.json`. Standard fields (no `__c`) always exist.
//!
//! The XML files are our own, so they are read by plain string scanning, not an XML parser.

use lark_vc_bridge::bookings::MeetingStatus;
use lvb_simulators::salesforce::schema::{default_schema, FieldType, ObjectDef};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The meeting-status values the service writes to the booking (design §2.5).
fn meeting_status_values() -> Vec<&'static str> {
    MeetingStatus::ALL.iter().map(|s| s.as_str()).collect()
}

/// Trainer fields the service writes. Design §2.4 fixes their names; they are not configurable.
const TRAINER_WRITTEN_FIELDS: [&str; 9] = lark_vc_bridge::tokens::trainer::WRITTEN_FIELDS;

/// Trainer fields of design §2.4 that the service does not write: shipped for admins and trainers.
const TRAINER_DISPLAY_FIELDS: [&str; 1] = ["Lark_Connect_Link__c"];

/// Trainer fields holding encrypted Lark tokens: only the integration permission set may see them.
const TRAINER_TOKEN_FIELDS: [&str; 2] = ["Lark_Access_Token__c", "Lark_Refresh_Token__c"];

/// Room for one encrypted token (`ivhex:taghex:cipherhex` doubles the token's length).
/// A `Text` field caps at 255 characters, which is why the original 500-character plan failed.
/// Lark documents user tokens as up to ~2 KB, so hex at rest needs more than design §2.4's 4096.
const TOKEN_FIELD_MIN_LENGTH: u32 = 8192;

/// Booking fields the service writes from a meeting's Lark events (design §2.4, rule 29), with
/// the metadata type the design gives each. Their names are fixed by the design, like the
/// trainer's; the session status, whose name is configurable, is checked through
/// `salesforce.booking.session_status_field`.
const BOOKING_ATTENDANCE_FIELDS: [(&str, &str); 6] = [
    ("Lark_Session_Started_At__c", "DateTime"),
    ("Lark_Session_Ended_At__c", "DateTime"),
    ("Lark_Trainer_Joined_At__c", "DateTime"),
    ("Lark_Participants__c", "Number"),
    ("Lark_Guest_Joined__c", "Checkbox"),
    ("Lark_Recording_Url__c", "Url"),
];

/// `Lark_Participants__c` is Number(4,0) (design §2.4): precision and scale.
const PARTICIPANTS_PRECISION_SCALE: (u32, u32) = (4, 0);

/// The session statuses the service writes (design §2.4, rule 29).
const SESSION_STATUS_VALUES: [&str; 3] = ["In Progress", "Completed", "No Show"];

/// The default of `salesforce.booking.session_status_field` (design §2.2). It stands in while
/// `config/default.toml` does not have the key yet (the attendance work of issue 23 adds it);
/// once it does, the configured name is the one checked.
const DEFAULT_SESSION_STATUS_FIELD: &str = "Lark_Session_Status__c";

/// The permission set the integration user gets.
const INTEGRATION_PERMISSION_SET: &str = "Lark_VC_Bridge_Integration";

/// The permission set for admins: status fields, never tokens.
const ADMIN_PERMISSION_SET: &str = "Lark_VC_Bridge_Admin";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn default_config() -> toml::Value {
    let path = repo_root().join("config/default.toml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()))
}

fn shipped_metadata() -> Metadata {
    Metadata::load(&repo_root().join("salesforce-metadata"))
}

// ---------------------------------------------------------------------------------------------
// What the service touches, according to its configuration
// ---------------------------------------------------------------------------------------------

/// One Salesforce field the service reads or writes, and why.
#[derive(Debug, Clone)]
struct FieldUse {
    /// The configuration key (or constant of this test) that names the field.
    source: String,
    object: String,
    field: String,
    written: bool,
}

/// Everything the service touches in Salesforce with a given configuration.
#[derive(Debug, Clone)]
struct ServiceUse {
    booking_object: String,
    trainer_object: String,
    fields: Vec<FieldUse>,
    meeting_status_field: String,
    session_status_field: String,
    trainer_field: String,
    start_field: String,
    service_type_field: String,
    remote_values: Vec<String>,
    status_field: String,
    cancelled_values: Vec<String>,
    streaming_channel: String,
    /// Keys missing from or malformed in the configuration.
    problems: Vec<String>,
}

impl ServiceUse {
    fn from_config(config: &toml::Value) -> Self {
        let mut missing = Vec::new();
        let mut get = |key: &str| -> String {
            match lookup(config, key).and_then(|v| v.as_str()) {
                Some(s) => s.to_string(),
                None => {
                    missing.push(format!("config key {key} is missing or not a string"));
                    String::new()
                }
            }
        };
        let booking = get("salesforce.booking.object");
        let trainer = get("salesforce.trainer.object");
        let mut fields = Vec::new();
        for (key, written) in [
            ("salesforce.booking.trainer_field", false),
            ("salesforce.booking.start_field", false),
            ("salesforce.booking.end_field", false),
            ("salesforce.booking.service_type_field", false),
            ("salesforce.booking.status_field", false),
            ("salesforce.booking.link_field", true),
            ("salesforce.booking.reservation_field", true),
            ("salesforce.booking.meeting_status_field", true),
            ("salesforce.booking.meeting_error_field", true),
            ("salesforce.booking.calendar_event_field", true),
        ] {
            fields.push(FieldUse {
                source: key.to_string(),
                object: booking.clone(),
                field: get(key),
                written,
            });
        }
        let session_status_field = lookup(config, "salesforce.booking.session_status_field")
            .and_then(|v| v.as_str())
            .unwrap_or(DEFAULT_SESSION_STATUS_FIELD)
            .to_string();
        fields.push(FieldUse {
            source: "salesforce.booking.session_status_field".to_string(),
            object: booking.clone(),
            field: session_status_field.clone(),
            written: true,
        });
        for (field, _) in BOOKING_ATTENDANCE_FIELDS {
            fields.push(FieldUse {
                source: "BOOKING_ATTENDANCE_FIELDS (design §2.4)".to_string(),
                object: booking.clone(),
                field: field.to_string(),
                written: true,
            });
        }
        let template = get("salesforce.booking.topic_template");
        for placeholder in placeholders(&template) {
            fields.push(FieldUse {
                source: "salesforce.booking.topic_template".to_string(),
                object: booking.clone(),
                field: placeholder,
                written: false,
            });
        }
        for key in [
            "salesforce.trainer.email_field",
            "salesforce.trainer.name_field",
        ] {
            fields.push(FieldUse {
                source: key.to_string(),
                object: trainer.clone(),
                field: get(key),
                written: false,
            });
        }
        for field in TRAINER_WRITTEN_FIELDS {
            fields.push(FieldUse {
                source: "TRAINER_WRITTEN_FIELDS (design §2.4)".to_string(),
                object: trainer.clone(),
                field: field.to_string(),
                written: true,
            });
        }
        let meeting_status_field = get("salesforce.booking.meeting_status_field");
        let trainer_field = get("salesforce.booking.trainer_field");
        let start_field = get("salesforce.booking.start_field");
        let service_type_field = get("salesforce.booking.service_type_field");
        let status_field = get("salesforce.booking.status_field");
        let streaming_channel = get("salesforce.streaming.channel");

        let mut strings = |key: &str| -> Vec<String> {
            match lookup(config, key).and_then(|v| v.as_array()) {
                Some(items) if items.iter().all(toml::Value::is_str) => items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .map(str::to_string)
                    .collect(),
                _ => {
                    missing.push(format!(
                        "config key {key} is missing or not a list of strings"
                    ));
                    Vec::new()
                }
            }
        };
        let remote_values = strings("salesforce.booking.remote_values");
        let cancelled_values = strings("salesforce.booking.cancelled_values");

        ServiceUse {
            booking_object: booking,
            trainer_object: trainer,
            fields,
            meeting_status_field,
            session_status_field,
            trainer_field,
            start_field,
            service_type_field,
            remote_values,
            status_field,
            cancelled_values,
            streaming_channel,
            problems: missing,
        }
    }
}

/// `a.b.c` in a TOML document.
fn lookup<'a>(config: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted
        .split('.')
        .try_fold(config, |value, key| value.get(key))
}

/// The field names in `{Field__c}` placeholders of a topic template.
fn placeholders(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        found.push(after[..close].trim().to_string());
        rest = &after[close + 1..];
    }
    found
}

// ---------------------------------------------------------------------------------------------
// What the metadata project ships
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct FieldDef {
    kind: String,
    label: String,
    length: Option<u32>,
    precision: Option<u32>,
    scale: Option<u32>,
    default_value: Option<String>,
    /// A formula field: computed by Salesforce, never written.
    formula: bool,
    restricted: bool,
    picklist_values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Access {
    read: bool,
    edit: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct ObjectAccess {
    read: bool,
    edit: bool,
    view_all: bool,
}

#[derive(Debug, Clone, Default)]
struct PermissionSet {
    /// `Object.Field` → access.
    fields: BTreeMap<String, Access>,
    objects: BTreeMap<String, ObjectAccess>,
}

/// One `<criteriaItems>` of a report's filter.
#[derive(Debug, Clone)]
struct ReportFilter {
    file: String,
    object: String,
    field: String,
    operator: String,
    value: String,
}

/// A field named by a report type or a report.
#[derive(Debug, Clone)]
struct ReportReference {
    file: String,
    object: String,
    field: String,
}

#[derive(Debug, Clone, Default)]
struct Metadata {
    /// Object → field → definition, from `force-app/main/default/objects/*/fields/`.
    shipped: BTreeMap<String, BTreeMap<String, FieldDef>>,
    /// Object → field → picklist values relied on, from `existing-fields.json`.
    existing: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// `(eventChannel, selectedEntity)` of every `PlatformEventChannelMember`.
    channel_members: Vec<(String, String)>,
    permission_sets: BTreeMap<String, PermissionSet>,
    /// Names of the shipped custom report types.
    report_types: BTreeSet<String>,
    /// `(report file, <reportType>)` of every report.
    reports: Vec<(String, String)>,
    report_references: Vec<ReportReference>,
    /// Every report filter criterion.
    report_filters: Vec<ReportFilter>,
    /// Files that could not be read or contradict their own names.
    problems: Vec<String>,
}

impl Metadata {
    fn load(project: &Path) -> Self {
        let mut md = Metadata::default();
        let source = project.join("force-app/main/default");
        md.load_fields(&source.join("objects"));
        md.load_existing(&project.join("existing-fields.json"));
        for (name, xml) in md.read_dir(
            &source.join("platformEventChannelMembers"),
            ".platformEventChannelMember-meta.xml",
        ) {
            let channel = element(&xml, "eventChannel").unwrap_or_default();
            let entity = element(&xml, "selectedEntity").unwrap_or_default();
            if name != format!("{channel}_{}", entity.replace("__", "_")) {
                md.problems.push(format!(
                    "platformEventChannelMembers/{name}: file name should be {channel}_{}",
                    entity.replace("__", "_")
                ));
            }
            md.channel_members.push((channel, entity));
        }
        for (name, xml) in md.read_dir(&source.join("permissionsets"), ".permissionset-meta.xml") {
            md.permission_sets.insert(name, parse_permission_set(&xml));
        }
        for (name, xml) in md.read_dir(&source.join("reportTypes"), ".reportType-meta.xml") {
            md.report_types.insert(name.clone());
            for column in elements(&xml, "columns") {
                md.report_references.push(ReportReference {
                    file: format!("reportTypes/{name}"),
                    object: element(column, "table").unwrap_or_default(),
                    field: element(column, "field").unwrap_or_default(),
                });
            }
        }
        let reports = source.join("reports");
        for folder in subdirectories(&reports) {
            for (name, xml) in md.read_dir(&reports.join(&folder), ".report-meta.xml") {
                let report_type = element(&xml, "reportType").unwrap_or_default();
                md.reports
                    .push((format!("reports/{folder}/{name}"), report_type));
                for item in elements(&xml, "criteriaItems") {
                    let column = element(item, "column").unwrap_or_default();
                    let (object, field) = column.split_once('$').unwrap_or(("", &column));
                    md.report_filters.push(ReportFilter {
                        file: format!("reports/{folder}/{name}"),
                        object: object.to_string(),
                        field: field.to_string(),
                        operator: element(item, "operator").unwrap_or_default(),
                        value: element(item, "value").unwrap_or_default(),
                    });
                }
                for tag in ["field", "column", "sortColumn"] {
                    for reference in elements(&xml, tag) {
                        let reference = unescape(reference.trim());
                        if let Some((object, field)) = reference.split_once('$') {
                            md.report_references.push(ReportReference {
                                file: format!("reports/{folder}/{name}"),
                                object: object.to_string(),
                                field: field.to_string(),
                            });
                        }
                    }
                }
            }
        }
        md
    }

    fn load_fields(&mut self, objects: &Path) {
        for object in subdirectories(objects) {
            for (name, xml) in
                self.read_dir(&objects.join(&object).join("fields"), ".field-meta.xml")
            {
                if element(&xml, "fullName").as_deref() != Some(name.as_str()) {
                    self.problems.push(format!(
                        "objects/{object}/fields/{name}.field-meta.xml: <fullName> does not match the file name"
                    ));
                }
                // A picklist value carries its own <label> and <default>: read the field's own
                // elements from the text before <valueSet>.
                let own = xml.split("<valueSet>").next().unwrap_or_default();
                let number = |tag: &str| element(own, tag).and_then(|n| n.parse().ok());
                let definition = FieldDef {
                    kind: element(own, "type").unwrap_or_default(),
                    label: element(own, "label").unwrap_or_default(),
                    length: number("length"),
                    precision: number("precision"),
                    scale: number("scale"),
                    default_value: element(own, "defaultValue"),
                    formula: element(own, "formula").is_some(),
                    restricted: element(&xml, "restricted").as_deref() == Some("true"),
                    picklist_values: elements(&xml, "value")
                        .into_iter()
                        .filter_map(|value| element(value, "fullName"))
                        .collect(),
                };
                self.shipped
                    .entry(object.clone())
                    .or_default()
                    .insert(name, definition);
            }
        }
    }

    fn load_existing(&mut self, path: &Path) {
        let manifest: serde_json::Value = match fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        {
            Ok(manifest) => manifest,
            Err(e) => return self.problems.push(format!("{}: {e}", path.display())),
        };
        let Some(objects) = manifest.get("objects").and_then(|o| o.as_object()) else {
            return self
                .problems
                .push(format!("{}: no \"objects\" map", path.display()));
        };
        for (object, fields) in objects {
            let entry = self.existing.entry(object.clone()).or_default();
            for (field, details) in fields.as_object().into_iter().flatten() {
                let values = details
                    .get("values_relied_on")
                    .and_then(|v| v.as_array())
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                entry.insert(field.clone(), values);
            }
        }
    }

    /// `(name without suffix, text without comments)` of every file in `dir` ending in `suffix`.
    fn read_dir(&mut self, dir: &Path, suffix: &str) -> Vec<(String, String)> {
        let mut files = Vec::new();
        let Ok(entries) = fs::read_dir(dir) else {
            return files;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file_name.strip_suffix(suffix) else {
                continue;
            };
            match fs::read_to_string(entry.path()) {
                Ok(text) => files.push((name.to_string(), strip_comments(&text))),
                Err(e) => self
                    .problems
                    .push(format!("{}: {e}", entry.path().display())),
            }
        }
        files.sort();
        files
    }

    fn shipped_field(&self, object: &str, field: &str) -> Option<&FieldDef> {
        self.shipped.get(object)?.get(field)
    }

    fn pre_existing_field(&self, object: &str, field: &str) -> Option<&Vec<String>> {
        self.existing.get(object)?.get(field)
    }

    /// A standard field, a shipped field, or a documented pre-existing field.
    fn knows(&self, object: &str, field: &str) -> bool {
        is_standard(field)
            || self.shipped_field(object, field).is_some()
            || self.pre_existing_field(object, field).is_some()
    }

    /// The picklist values known for a field: shipped values, or those the manifest relies on.
    fn picklist_values(&self, object: &str, field: &str) -> Vec<String> {
        match self.shipped_field(object, field) {
            Some(definition) => definition.picklist_values.clone(),
            None => self
                .pre_existing_field(object, field)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

fn parse_permission_set(xml: &str) -> PermissionSet {
    let flag = |block: &str, tag: &str| element(block, tag).as_deref() == Some("true");
    let mut set = PermissionSet::default();
    for block in elements(xml, "fieldPermissions") {
        let field = element(block, "field").unwrap_or_default();
        let access = Access {
            read: flag(block, "readable"),
            edit: flag(block, "editable"),
        };
        set.fields.insert(field, access);
    }
    for block in elements(xml, "objectPermissions") {
        let object = element(block, "object").unwrap_or_default();
        let access = ObjectAccess {
            read: flag(block, "allowRead"),
            edit: flag(block, "allowEdit"),
            view_all: flag(block, "viewAllRecords"),
        };
        set.objects.insert(object, access);
    }
    set
}

fn is_standard(field: &str) -> bool {
    !field.ends_with("__c")
}

fn subdirectories(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// String scanning of our own XML
// ---------------------------------------------------------------------------------------------

fn strip_comments(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The raw content of every `<tag>…</tag>` (our files never nest a tag inside itself).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// The trimmed, unescaped text of the first `<tag>…</tag>`.
fn element(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|text| unescape(text.trim()))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------------
// Checks: each returns the problems it found, one line each
// ---------------------------------------------------------------------------------------------

fn missing_fields(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let mut problems = service.problems.clone();
    problems.extend(md.problems.iter().cloned());
    for use_ in &service.fields {
        if !md.knows(&use_.object, &use_.field) {
            problems.push(format!(
                "{}.{} ({}, {}) is neither shipped in salesforce-metadata/force-app nor listed in \
                 salesforce-metadata/existing-fields.json",
                use_.object,
                use_.field,
                use_.source,
                if use_.written { "written" } else { "read" },
            ));
        }
    }
    for field in TRAINER_DISPLAY_FIELDS {
        if md.shipped_field(&service.trainer_object, field).is_none() {
            problems.push(format!(
                "{}.{field} (design §2.4) is not shipped",
                service.trainer_object
            ));
        }
    }
    problems
}

fn picklist_problems(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let object = &service.booking_object;
    let mut problems = restricted_picklist_problems(
        md,
        object,
        &service.meeting_status_field,
        "meeting status",
        &meeting_status_values(),
        "design §2.5",
    );
    problems.extend(restricted_picklist_problems(
        md,
        object,
        &service.session_status_field,
        "session status",
        &SESSION_STATUS_VALUES,
        "design §2.4, rule 29",
    ));
    for (key, field, values) in [
        (
            "salesforce.booking.remote_values",
            &service.service_type_field,
            &service.remote_values,
        ),
        (
            "salesforce.booking.cancelled_values",
            &service.status_field,
            &service.cancelled_values,
        ),
    ] {
        let known = md.picklist_values(object, field);
        for value in values.iter().filter(|v| !known.contains(v)) {
            problems.push(format!(
                "{key} has {value:?}, which is not a known value of {object}.{field} \
                 (values_relied_on in existing-fields.json)"
            ));
        }
    }
    problems
}

/// `object.field` is a shipped restricted picklist offering exactly the values the service
/// writes: a value it lacks would be refused (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST), a value
/// it has extra would never appear.
fn restricted_picklist_problems(
    md: &Metadata,
    object: &str,
    field: &str,
    what: &str,
    written: &[&str],
    source: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(definition) = md.shipped_field(object, field) else {
        return vec![format!("{object}.{field} ({what}) is not shipped")];
    };
    if definition.kind != "Picklist" || !definition.restricted {
        problems.push(format!(
            "{object}.{field} must be a restricted Picklist, is {} (restricted: {})",
            definition.kind, definition.restricted
        ));
    }
    let shipped: BTreeSet<&str> = definition
        .picklist_values
        .iter()
        .map(String::as_str)
        .collect();
    let written: BTreeSet<&str> = written.iter().copied().collect();
    for value in written.difference(&shipped) {
        problems.push(format!(
            "the service writes {what} {value:?}, which is not a value of {object}.{field}"
        ));
    }
    for value in shipped.difference(&written) {
        problems.push(format!(
            "{object}.{field} offers {value:?}, which the service never writes ({source})"
        ));
    }
    problems
}

/// The attendance fields have the types design §2.4 gives them.
fn attendance_field_problems(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let object = &service.booking_object;
    let mut problems = Vec::new();
    for (field, kind) in BOOKING_ATTENDANCE_FIELDS {
        let Some(definition) = md.shipped_field(object, field) else {
            problems.push(format!(
                "{object}.{field} (attendance, design §2.4) is not shipped"
            ));
            continue;
        };
        if definition.kind != kind {
            problems.push(format!(
                "{object}.{field} must be a {kind} field (design §2.4), is {}",
                definition.kind
            ));
        }
        let shape = (definition.precision, definition.scale);
        match kind {
            "Number"
                if shape
                    != (
                        Some(PARTICIPANTS_PRECISION_SCALE.0),
                        Some(PARTICIPANTS_PRECISION_SCALE.1),
                    ) =>
            {
                problems.push(format!(
                    "{object}.{field} must be Number{PARTICIPANTS_PRECISION_SCALE:?}, \
                     has (precision, scale) {shape:?}"
                ));
            }
            // Salesforce requires a Checkbox's default; the service writes the real value later.
            "Checkbox" if definition.default_value.as_deref() != Some("false") => {
                problems.push(format!(
                    "{object}.{field} must default to false, defaults to {:?}",
                    definition.default_value
                ));
            }
            _ => {}
        }
    }
    problems
}

fn token_field_problems(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let object = &service.trainer_object;
    let mut problems = Vec::new();
    for field in TRAINER_TOKEN_FIELDS {
        match md.shipped_field(object, field) {
            None => problems.push(format!("{object}.{field} is not shipped")),
            Some(d)
                if d.kind != "LongTextArea" || d.length.unwrap_or(0) < TOKEN_FIELD_MIN_LENGTH =>
            {
                problems.push(format!(
                    "{object}.{field} must be a LongTextArea of at least {TOKEN_FIELD_MIN_LENGTH} \
                     characters for an encrypted Lark token, is {} of {:?}",
                    d.kind, d.length
                ));
            }
            Some(_) => {}
        }
    }
    problems
}

fn permission_problems(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(integration) = md.permission_sets.get(INTEGRATION_PERMISSION_SET) else {
        return vec![format!(
            "permission set {INTEGRATION_PERMISSION_SET} is not shipped"
        )];
    };
    for use_ in service.fields.iter().filter(|u| !is_standard(&u.field)) {
        let name = format!("{}.{}", use_.object, use_.field);
        let access = integration.fields.get(&name).copied().unwrap_or_default();
        if !access.read || (use_.written && !access.edit) {
            problems.push(format!(
                "{INTEGRATION_PERMISSION_SET} must grant {} on {name} ({})",
                if use_.written {
                    "read and edit"
                } else {
                    "read"
                },
                use_.source
            ));
        }
    }
    for object in [&service.booking_object, &service.trainer_object] {
        let access = integration
            .objects
            .get(object.as_str())
            .copied()
            .unwrap_or_default();
        if !(access.read && access.edit && access.view_all) {
            problems.push(format!(
                "{INTEGRATION_PERMISSION_SET} must grant Read, Edit and View All on {object}"
            ));
        }
    }
    for (set_name, set) in &md.permission_sets {
        for name in set.fields.keys() {
            let known = name
                .split_once('.')
                .is_some_and(|(object, field)| md.knows(object, field));
            if !known {
                problems.push(format!(
                    "permission set {set_name} names {name}, which does not exist"
                ));
            }
        }
        if set_name == INTEGRATION_PERMISSION_SET {
            continue;
        }
        for field in TRAINER_TOKEN_FIELDS {
            let name = format!("{}.{field}", service.trainer_object);
            if set.fields.get(&name).is_some_and(|a| a.read || a.edit) {
                problems.push(format!(
                    "permission set {set_name} must not grant access to {name}"
                ));
            }
        }
    }
    if !md.permission_sets.contains_key(ADMIN_PERMISSION_SET) {
        problems.push(format!(
            "permission set {ADMIN_PERMISSION_SET} is not shipped"
        ));
    }
    problems
}

fn change_data_capture_problems(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let channel = &service.streaming_channel;
    let Some(entity) = channel.strip_prefix("/data/") else {
        // A platform-event channel (/event/X__e) needs no Change Data Capture selection.
        return Vec::new();
    };
    let mut problems = Vec::new();
    let expected = match service.booking_object.strip_suffix("__c") {
        Some(custom) => format!("{custom}__ChangeEvent"),
        None => format!("{}ChangeEvent", service.booking_object),
    };
    if entity != expected {
        problems.push(format!(
            "salesforce.streaming.channel {channel} is not the change-event channel of \
             salesforce.booking.object {} (/data/{expected})",
            service.booking_object
        ));
    }
    let selected = md
        .channel_members
        .iter()
        .any(|(channel, selected)| channel == "ChangeEvents" && selected == entity);
    if !selected {
        problems.push(format!(
            "no PlatformEventChannelMember selects {entity} on ChangeEvents, so {channel} stays silent"
        ));
    }
    problems
}

fn report_problems(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let mut problems = Vec::new();
    if md.reports.is_empty() || md.report_types.is_empty() {
        problems.push("no report type or report found".to_string());
    }
    for (file, report_type) in &md.reports {
        // A report on a custom report type names it with a `__c` suffix.
        let shipped = report_type
            .strip_suffix("__c")
            .is_some_and(|name| md.report_types.contains(name));
        if !shipped {
            problems.push(format!(
                "{file} uses report type {report_type:?}, which is not in reportTypes/"
            ));
        }
    }
    for r in &md.report_references {
        if !md.knows(&r.object, &r.field) {
            problems.push(format!(
                "{} uses {}.{}, which does not exist",
                r.file, r.object, r.field
            ));
        }
        if r.object == service.trainer_object && TRAINER_TOKEN_FIELDS.contains(&r.field.as_str()) {
            problems.push(format!("{} shows the token field {}", r.file, r.field));
        }
    }
    problems
}

/// The admin permission set reads every shipped field of the trainer and booking objects but
/// the tokens (its reports show them) and edits none: the service owns these values.
fn admin_permission_problems(service: &ServiceUse, md: &Metadata) -> Vec<String> {
    let Some(admin) = md.permission_sets.get(ADMIN_PERMISSION_SET) else {
        return vec![format!(
            "permission set {ADMIN_PERMISSION_SET} is not shipped"
        )];
    };
    let mut problems = Vec::new();
    for object in [&service.booking_object, &service.trainer_object] {
        for field in md
            .shipped
            .get(object.as_str())
            .into_iter()
            .flatten()
            .map(|(f, _)| f)
        {
            if *object == service.trainer_object && TRAINER_TOKEN_FIELDS.contains(&field.as_str()) {
                continue; // permission_problems: no one but the integration user sees tokens.
            }
            let name = format!("{object}.{field}");
            let access = admin.fields.get(&name).copied().unwrap_or_default();
            if !access.read {
                problems.push(format!("{ADMIN_PERMISSION_SET} must grant read on {name}"));
            }
            if access.edit {
                problems.push(format!(
                    "{ADMIN_PERMISSION_SET} must not grant edit on {name}: the service writes it"
                ));
            }
        }
    }
    problems
}

/// A report criterion on a picklist names only values the picklist has (shipped values, or the
/// pre-existing values relied on); several values are comma-separated and match any of them.
fn report_filter_problems(md: &Metadata) -> Vec<String> {
    let mut problems = Vec::new();
    for filter in &md.report_filters {
        let picklist = md
            .shipped_field(&filter.object, &filter.field)
            .is_some_and(|d| d.kind == "Picklist")
            || md
                .pre_existing_field(&filter.object, &filter.field)
                .is_some_and(|values| !values.is_empty());
        if !picklist {
            continue;
        }
        let known = md.picklist_values(&filter.object, &filter.field);
        for value in filter.value.split(',').map(str::trim) {
            if !known.iter().any(|k| k == value) {
                problems.push(format!(
                    "{} filters {}.{} on {value:?}, which is not one of its values {known:?}",
                    filter.file, filter.object, filter.field
                ));
            }
        }
    }
    problems
}

/// Lengths a real deploy refuses but neither the schema check nor the converter sees, as
/// `(file suffix, element, limit)`; the first such element of a file is the component's own.
/// A custom field's label: 40 (help.salesforce.com, article 000381913); a permission set's
/// description: 255 (Metadata API, PermissionSet: "Limit: 255 characters"); a report's name
/// and description: 40 and 255, a dashboard's description: 255 (Object Reference, Report and
/// Dashboard: Name string(40), Description "Limit: 255 characters").
const TEXT_LIMITS: [(&str, &str, usize); 5] = [
    (".field-meta.xml", "label", 40),
    (".permissionset-meta.xml", "description", 255),
    (".report-meta.xml", "name", 40),
    (".report-meta.xml", "description", 255),
    (".dashboard-meta.xml", "description", 255),
];

/// `(path, text without comments)` of every `*-meta.xml` under `dir`, sorted.
fn metadata_files(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with("-meta.xml") {
                let text = fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let relative = path.strip_prefix(dir).unwrap_or(&path);
                files.push((relative.display().to_string(), strip_comments(&text)));
            }
        }
    }
    files.sort();
    files
}

fn text_limit_problems(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, xml) in files {
        for (suffix, tag, limit) in TEXT_LIMITS {
            if !path.ends_with(suffix) {
                continue;
            }
            if let Some(text) = element(xml, tag) {
                let length = text.chars().count();
                if length > limit {
                    problems.push(format!(
                        "{path}: <{tag}> has {length} characters, Salesforce allows {limit}"
                    ));
                }
            }
        }
    }
    problems
}

/// The simulated org (`lvb_simulators`) has every shipped field of the trainer and booking
/// objects as the deploy creates it — label, type, length, Number precision and scale,
/// picklist values — and every pre-existing field the service reads, so the tests that run
/// against the simulator see the org an admin gets.
fn simulator_problems(service: &ServiceUse, md: &Metadata, schema: &[ObjectDef]) -> Vec<String> {
    let mut problems = Vec::new();
    for object in [&service.booking_object, &service.trainer_object] {
        let Some(simulated) = schema.iter().find(|o| o.name == *object) else {
            problems.push(format!("the simulator has no object {object}"));
            continue;
        };
        for (field, shipped) in md.shipped.get(object.as_str()).into_iter().flatten() {
            let Some(sim) = simulated.field(field) else {
                problems.push(format!("the simulator's {object} has no field {field}"));
                continue;
            };
            let name = format!("{object}.{field}");
            if sim.label != shipped.label {
                problems.push(format!(
                    "{name}: the simulator labels it {:?}, the metadata {:?}",
                    sim.label, shipped.label
                ));
            }
            if shipped.formula {
                // Only computed-ness is compared: the simulator computes the connect link as
                // the plain URL, not the HTML of the formula's HYPERLINK().
                if !sim.calculated || sim.updateable {
                    problems.push(format!("{name}: a formula, but writable in the simulator"));
                }
                continue;
            }
            let expected = match shipped.kind.as_str() {
                "Text" => FieldType::String,
                "LongTextArea" => FieldType::TextArea,
                "Url" => FieldType::Url,
                "Email" => FieldType::Email,
                "Picklist" => FieldType::Picklist,
                "DateTime" => FieldType::DateTime,
                "Checkbox" => FieldType::Boolean,
                "Number" => FieldType::Double,
                other => {
                    problems.push(format!("{name}: no simulator type known for {other}"));
                    continue;
                }
            };
            if sim.field_type != expected {
                problems.push(format!(
                    "{name}: the simulator types it {:?}, the metadata {}",
                    sim.field_type, shipped.kind
                ));
            }
            if let Some(length) = shipped.length {
                if sim.length != length {
                    problems.push(format!(
                        "{name}: length {} in the simulator, {length} in the metadata",
                        sim.length
                    ));
                }
            }
            if expected == FieldType::Double
                && (Some(sim.precision), Some(sim.scale)) != (shipped.precision, shipped.scale)
            {
                problems.push(format!(
                    "{name}: Number({}, {}) in the simulator, ({:?}, {:?}) in the metadata",
                    sim.precision, sim.scale, shipped.precision, shipped.scale
                ));
            }
            if expected == FieldType::Picklist
                && (sim.picklist != shipped.picklist_values || sim.restricted != shipped.restricted)
            {
                problems.push(format!(
                    "{name}: the simulator offers {:?} (restricted: {}), the metadata {:?} \
                     (restricted: {})",
                    sim.picklist, sim.restricted, shipped.picklist_values, shipped.restricted
                ));
            }
        }
        for field in md
            .existing
            .get(object.as_str())
            .into_iter()
            .flatten()
            .map(|(f, _)| f)
        {
            if simulated.field(field).is_none() {
                problems.push(format!(
                    "the simulator's {object} lacks the pre-existing field {field}"
                ));
            }
        }
    }
    problems
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn default_configuration_only_uses_fields_that_exist() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(missing_fields(&service, &shipped_metadata()));
}

#[test]
fn status_picklists_hold_exactly_the_values_the_service_writes() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(picklist_problems(&service, &shipped_metadata()));
}

#[test]
fn token_fields_are_long_text_areas_big_enough_for_encrypted_tokens() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(token_field_problems(&service, &shipped_metadata()));
}

#[test]
fn only_the_integration_permission_set_sees_tokens_and_it_covers_every_field_used() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(permission_problems(&service, &shipped_metadata()));
}

#[test]
fn change_data_capture_is_selected_for_the_configured_channel() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(change_data_capture_problems(&service, &shipped_metadata()));
}

#[test]
fn reports_use_existing_fields_and_never_tokens() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(report_problems(&service, &shipped_metadata()));
}

#[test]
fn attendance_fields_have_the_designed_types() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(attendance_field_problems(&service, &shipped_metadata()));
}

#[test]
fn the_admin_permission_set_reads_every_status_field_and_edits_none() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(admin_permission_problems(&service, &shipped_metadata()));
}

#[test]
fn report_filters_name_only_values_their_picklists_have() {
    assert_none(report_filter_problems(&shipped_metadata()));
}

#[test]
fn names_and_descriptions_fit_salesforce_limits() {
    let files = metadata_files(&repo_root().join("salesforce-metadata/force-app"));
    assert!(files.len() > 30, "found {} metadata files", files.len());
    assert_none(text_limit_problems(&files));
}

#[test]
fn the_simulator_describes_every_shipped_field_as_deployed() {
    let service = ServiceUse::from_config(&default_config());
    assert_none(simulator_problems(
        &service,
        &shipped_metadata(),
        &default_schema(),
    ));
}

/// Design §2.4: a report "Training attendance" (sessions by session status, by trainer) and a
/// dashboard component showing completed vs no-show over the last 30 days.
#[test]
fn attendance_report_and_dashboard_component_follow_the_design() {
    let service = ServiceUse::from_config(&default_config());
    let md = shipped_metadata();
    let root = repo_root().join("salesforce-metadata/force-app/main/default");
    let read = |relative: &str| {
        let path = root.join(relative);
        strip_comments(
            &fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
        )
    };
    let column = |field: &str| format!("{}${field}", service.booking_object);
    let groupings = |xml: &str| -> Vec<String> {
        elements(xml, "groupingsDown")
            .into_iter()
            .filter_map(|g| element(g, "field"))
            .collect()
    };
    let status_column = column(&service.session_status_field);

    let report = read("reports/Lark_VC_Bridge/Training_Attendance.report-meta.xml");
    assert_eq!(
        element(&report, "name").as_deref(),
        Some("Training attendance")
    );
    assert_eq!(element(&report, "format").as_deref(), Some("Summary"));
    assert_eq!(
        groupings(&report),
        [status_column.clone(), column(&service.trainer_field)],
        "by session status, then by trainer"
    );

    // The dashboard component whose report is grouped by session status alone.
    let dashboards = root.join("dashboards");
    let mut sources = Vec::new();
    for (path, xml) in metadata_files(&dashboards) {
        if !path.ends_with(".dashboard-meta.xml") {
            continue;
        }
        for component in elements(&xml, "components") {
            let name = element(component, "report").unwrap_or_default();
            let source = read(&format!("reports/{name}.report-meta.xml"));
            if groupings(&source) == [status_column.clone()] {
                sources.push(name);
            }
        }
    }
    assert_eq!(sources.len(), 1, "one attendance component: {sources:?}");
    let file = format!("reports/{}", sources[0]);
    let criteria: Vec<&ReportFilter> = md
        .report_filters
        .iter()
        .filter(|f| f.file == file)
        .collect();
    let statuses: BTreeSet<&str> = criteria
        .iter()
        .filter(|f| f.field == service.session_status_field && f.operator == "equals")
        .flat_map(|f| f.value.split(','))
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["Completed", "No Show"]),
        "completed vs no-show"
    );
    assert!(
        criteria.iter().any(|f| f.field == service.start_field
            && f.operator == "equals"
            && f.value == "LAST_N_DAYS:30"),
        "the last 30 days of scheduled starts: {criteria:?}"
    );
}

/// The attendance checks fail when they should: a missing session status, a mistyped field,
/// an admin set that cannot read a status, a misspelt filter value, an overlong name and a
/// field the simulator lacks are each reported.
#[test]
fn the_attendance_checks_catch_what_they_guard() {
    let service = ServiceUse::from_config(&default_config());
    let metadata = shipped_metadata();
    let mentions = |problems: &[String], needle: &str| problems.iter().any(|p| p.contains(needle));
    let booking = service.booking_object.clone();

    let mut changed = metadata.clone();
    let fields = changed.shipped.get_mut(&booking).expect("booking fields");
    fields
        .get_mut(&service.session_status_field)
        .expect("session status is shipped")
        .picklist_values
        .retain(|v| v != "No Show");
    fields
        .get_mut("Lark_Participants__c")
        .expect("participants are shipped")
        .scale = Some(2);
    fields
        .get_mut("Lark_Guest_Joined__c")
        .expect("guest joined is shipped")
        .default_value = None;
    let problems = picklist_problems(&service, &changed);
    assert!(
        mentions(&problems, "session status \"No Show\""),
        "{problems:?}"
    );
    let problems = attendance_field_problems(&service, &changed);
    assert!(
        mentions(&problems, "Lark_Participants__c must be Number"),
        "{problems:?}"
    );
    assert!(
        mentions(&problems, "Lark_Guest_Joined__c must default to false"),
        "{problems:?}"
    );
    let problems = simulator_problems(&service, &changed, &default_schema());
    assert!(
        mentions(&problems, "Number(4, 0) in the simulator"),
        "{problems:?}"
    );
    assert!(
        mentions(&problems, "Lark_Session_Status__c: the simulator offers"),
        "{problems:?}"
    );

    let mut changed = metadata.clone();
    changed
        .permission_sets
        .get_mut(ADMIN_PERMISSION_SET)
        .expect("admin set")
        .fields
        .remove(&format!("{booking}.Lark_Trainer_Joined_At__c"));
    let problems = admin_permission_problems(&service, &changed);
    assert!(
        mentions(
            &problems,
            "read on Training_Booking__c.Lark_Trainer_Joined_At__c"
        ),
        "{problems:?}"
    );

    let mut changed = metadata.clone();
    for filter in &mut changed.report_filters {
        filter.value = filter.value.replace("No Show", "No-Show");
    }
    let problems = report_filter_problems(&changed);
    assert!(mentions(&problems, "\"No-Show\""), "{problems:?}");

    let files = [(
        "reports/X/Y.report-meta.xml".to_string(),
        format!("<Report><name>{}</name></Report>", "n".repeat(41)),
    )];
    let problems = text_limit_problems(&files);
    assert!(
        mentions(&problems, "<name> has 41 characters, Salesforce allows 40"),
        "{problems:?}"
    );

    let schema: Vec<ObjectDef> = default_schema()
        .into_iter()
        .map(|mut object| {
            object.fields.retain(|f| f.name != "Lark_Recording_Url__c");
            object
        })
        .collect();
    let problems = simulator_problems(&service, &metadata, &schema);
    assert!(
        mentions(&problems, "has no field Lark_Recording_Url__c"),
        "{problems:?}"
    );
}

/// The checks above are only worth something if they fail; rename a field on each side.
#[test]
fn a_field_renamed_on_either_side_is_caught() {
    let config = default_config();
    let metadata = shipped_metadata();
    let mentions = |problems: &[String], needle: &str| problems.iter().any(|p| p.contains(needle));

    // Configuration side: the link field renamed in config only.
    let mut renamed_config = config.clone();
    let booking = renamed_config
        .get_mut("salesforce")
        .and_then(|s| s.get_mut("booking"))
        .and_then(|b| b.as_table_mut())
        .expect("[salesforce.booking] in config/default.toml");
    booking.insert(
        "link_field".into(),
        toml::Value::String("Remote_Meeting_URL__c".into()),
    );
    booking.insert(
        "topic_template".into(),
        toml::Value::String("Training: {Merchant__c}".into()),
    );
    let problems = missing_fields(&ServiceUse::from_config(&renamed_config), &metadata);
    assert!(mentions(&problems, "Remote_Meeting_URL__c"), "{problems:?}");
    assert!(mentions(&problems, "Merchant__c"), "{problems:?}");

    // Metadata side: a booking field and a trainer token field renamed in the metadata only.
    let service = ServiceUse::from_config(&config);
    let mut renamed_metadata = metadata.clone();
    let booking_fields = renamed_metadata
        .shipped
        .get_mut(&service.booking_object)
        .expect("booking fields are shipped");
    let definition = booking_fields
        .remove("Lark_Reservation_Id__c")
        .expect("Lark_Reservation_Id__c is shipped");
    booking_fields.insert("Lark_Reservation__c".into(), definition);
    let trainer_fields = renamed_metadata
        .shipped
        .get_mut(&service.trainer_object)
        .expect("trainer fields are shipped");
    let definition = trainer_fields
        .remove("Lark_Refresh_Token__c")
        .expect("Lark_Refresh_Token__c is shipped");
    trainer_fields.insert("Lark_Refresh_Tok__c".into(), definition);
    let problems = missing_fields(&service, &renamed_metadata);
    assert!(
        mentions(&problems, "Lark_Reservation_Id__c"),
        "{problems:?}"
    );
    assert!(mentions(&problems, "Lark_Refresh_Token__c"), "{problems:?}");
    // ...and the permission set still granting the old name would fail the deploy.
    let problems = permission_problems(&service, &renamed_metadata);
    assert!(
        mentions(&problems, "Lark_Reservation_Id__c, which does not exist"),
        "{problems:?}"
    );

    // A pre-existing field dropped from the manifest.
    let mut forgotten = metadata.clone();
    forgotten
        .existing
        .get_mut(&service.booking_object)
        .expect("booking fields are listed in existing-fields.json")
        .remove("Training_Start__c");
    assert!(mentions(
        &missing_fields(&service, &forgotten),
        "Training_Start__c"
    ));

    // A meeting status the service writes, missing from the picklist.
    let mut fewer_values = metadata.clone();
    let status = fewer_values
        .shipped
        .get_mut(&service.booking_object)
        .and_then(|fields| fields.get_mut(&service.meeting_status_field))
        .expect("meeting status field is shipped");
    status
        .picklist_values
        .retain(|v| v != "Pending Trainer Connection");
    let problems = picklist_problems(&service, &fewer_values);
    assert!(
        mentions(&problems, "Pending Trainer Connection"),
        "{problems:?}"
    );
}

#[test]
fn xml_scanning_ignores_comments_and_unescapes() {
    let xml = strip_comments("<a><!-- <b>no</b> --><b>x &amp; y</b><b>z</b></a>");
    assert_eq!(element(&xml, "b").as_deref(), Some("x & y"));
    assert_eq!(elements(&xml, "b").len(), 2);
    assert_eq!(
        placeholders("A {One__c} and {Two__c}"),
        ["One__c", "Two__c"]
    );
}

/// The dashboards (issue 14) sit in a shipped dashboard folder, run as the viewer (no user
/// name baked in), and show shipped reports that can feed a dashboard: summary or matrix
/// (a tabular report without a row limit cannot). One shows the connection rate, one the
/// bookings by meeting status; `attendance_report_and_dashboard_component_follow_the_design`
/// checks the attendance one.
#[test]
fn dashboards_show_shipped_summary_reports_and_name_no_user() {
    let root = repo_root().join("salesforce-metadata/force-app/main/default");
    let mut problems = Vec::new();
    let mut shown = Vec::new();
    for folder in subdirectories(&root.join("dashboards")) {
        let folder_meta = root.join(format!("dashboards/{folder}.dashboardFolder-meta.xml"));
        if !folder_meta.is_file() {
            problems.push(format!("dashboard folder {folder} has no folder file"));
        }
        for entry in fs::read_dir(root.join("dashboards").join(&folder)).unwrap() {
            let path = entry.unwrap().path();
            let xml = strip_comments(&fs::read_to_string(&path).unwrap());
            let file = path.display().to_string();
            if element(&xml, "dashboardType").as_deref() != Some("LoggedInUser") {
                problems.push(format!("{file}: dashboardType is not LoggedInUser"));
            }
            if element(&xml, "runningUser").is_some() {
                problems.push(format!("{file} names a running user"));
            }
            for report in elements(&xml, "report") {
                let report_file = root.join(format!("reports/{}.report-meta.xml", report.trim()));
                match fs::read_to_string(&report_file) {
                    Ok(r) => {
                        let format = element(&strip_comments(&r), "format");
                        if !matches!(format.as_deref(), Some("Summary" | "Matrix")) {
                            problems.push(format!("{file}: {report} is {format:?}"));
                        }
                        shown.push(report.trim().to_string());
                    }
                    Err(_) => problems.push(format!("{file}: no shipped report {report}")),
                }
            }
        }
    }
    assert_none(problems);
    for wanted in [
        "Lark_VC_Bridge/Lark_Connections",
        "Lark_VC_Bridge/Remote_Bookings_by_Meeting_Status",
    ] {
        assert!(shown.iter().any(|s| s == wanted), "{wanted} on a dashboard");
    }
}
