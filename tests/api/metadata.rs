//! The Salesforce metadata project (`salesforce-metadata/`) agrees with the service.
//!
//! An admin deploys `salesforce-metadata/` and runs the service on `config/default.toml`;
//! every field the service then reads or writes must exist, every meeting status it writes
//! must be a value of the restricted picklist, and the permission sets, the Change Data
//! Capture selection and the reports must match. A field renamed on one side only (in the
//! metadata or in the configuration) fails `default_configuration_only_uses_fields_that_exist`;
//! `a_field_renamed_on_either_side_is_caught` proves that on every run.
//!
//! Fields that already exist in the org, and are deliberately not shipped, are listed in
//! `salesforce-metadata/existing-fields.json`. Standard fields (no `__c`) always exist.
//!
//! The XML files are our own, so they are read by plain string scanning, not an XML parser.

use lark_vc_bridge::bookings::MeetingStatus;
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
        ] {
            fields.push(FieldUse {
                source: key.to_string(),
                object: booking.clone(),
                field: get(key),
                written,
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
    length: Option<u32>,
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
                let definition = FieldDef {
                    kind: element(&xml, "type").unwrap_or_default(),
                    length: element(&xml, "length").and_then(|l| l.parse().ok()),
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
    let mut problems = Vec::new();
    let (object, field) = (&service.booking_object, &service.meeting_status_field);
    match md.shipped_field(object, field) {
        None => problems.push(format!("{object}.{field} (meeting status) is not shipped")),
        Some(definition) => {
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
            let written: BTreeSet<&str> = meeting_status_values().into_iter().collect();
            for value in written.difference(&shipped) {
                problems.push(format!(
                    "the service writes meeting status {value:?}, which is not a value of {object}.{field}"
                ));
            }
            for value in shipped.difference(&written) {
                problems.push(format!(
                    "{object}.{field} offers {value:?}, which the service never writes (design §2.5)"
                ));
            }
        }
    }
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
fn meeting_status_picklist_holds_exactly_the_values_the_service_writes() {
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
/// bookings by meeting status.
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
