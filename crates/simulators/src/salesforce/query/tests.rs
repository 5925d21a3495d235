use serde_json::{json, Map, Value};

use crate::salesforce::schema::ObjectDef;

use super::super::schema::default_schema;
use super::eval::*;
use super::*;
use std::collections::BTreeMap;

struct Fixture {
    objects: Vec<ObjectDef>,
    rows: BTreeMap<String, Vec<Map<String, Value>>>,
}

impl RecordSource for Fixture {
    fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.objects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }
    fn rows(&self, object: &str) -> Vec<&Map<String, Value>> {
        self.rows
            .get(object)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }
    fn row(&self, object: &str, id: &str) -> Option<&Map<String, Value>> {
        self.rows
            .get(object)?
            .iter()
            .find(|r| r.get("Id").and_then(Value::as_str) == Some(id))
    }
}

const T1: &str = "a0T000000000001EAA";
const T2: &str = "a0T000000000002EAA";
const B1: &str = "a0B000000000001EAA";
const B2: &str = "a0B000000000002EAA";
const B3: &str = "a0B000000000003EAA";

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn fixture() -> Fixture {
    let mut rows = BTreeMap::new();
    rows.insert(
        "Onboarding_Trainer__c".to_string(),
        vec![
            obj(json!({"Id": T1, "IsDeleted": false, "Name": "Ann", "Email__c": "ann@example.com"})),
            obj(json!({"Id": T2, "IsDeleted": true, "Name": "Gone", "Email__c": "gone@example.com"})),
        ],
    );
    rows.insert(
        "Training_Booking__c".to_string(),
        vec![
            obj(
                json!({"Id": B1, "IsDeleted": false, "Name": "O'Brien", "Trainer__c": T1,
                "Service_Type__c": "Remote", "Training_Start__c": "2026-11-26T10:00:00.000+0000"}),
            ),
            obj(
                json!({"Id": B2, "IsDeleted": false, "Name": "b2", "Trainer__c": null,
                "Service_Type__c": "Onsite", "Training_Start__c": "2026-11-27T10:00:00.000+0000"}),
            ),
            obj(
                json!({"Id": B3, "IsDeleted": true, "Name": "b3", "Trainer__c": T2,
                "Service_Type__c": "Remote", "Training_Start__c": null}),
            ),
        ],
    );
    Fixture {
        objects: default_schema(),
        rows,
    }
}

fn run(soql: &str, all: bool) -> Result<Vec<Map<String, Value>>, SoqlError> {
    let now = "2026-11-26T08:00:00Z".parse().unwrap();
    execute(&parse(soql)?, &fixture(), all, "62.0", now)
}

fn ids(rows: &[Map<String, Value>]) -> Vec<&str> {
    rows.iter().map(|r| r["Id"].as_str().unwrap()).collect()
}

#[test]
fn where_conditions_filter_rows() {
    for (soql, expected) in [
        ("SELECT Id FROM Training_Booking__c", vec![B1, B2]),
        ("select id from training_booking__c where service_type__c = 'remote'", vec![B1]),
        ("SELECT Id FROM Training_Booking__c WHERE Service_Type__c != 'Remote'", vec![B2]),
        (
            "SELECT Id FROM Training_Booking__c WHERE Id IN ('a0B000000000001','a0B000000000002EAA')",
            vec![B1, B2],
        ),
        ("SELECT Id FROM Training_Booking__c WHERE Id NOT IN ('a0B000000000001EAA')", vec![B2]),
        ("SELECT Id FROM Training_Booking__c WHERE Trainer__c = null", vec![B2]),
        ("SELECT Id FROM Training_Booking__c WHERE Trainer__c != null", vec![B1]),
        ("SELECT Id FROM Training_Booking__c WHERE Name = 'O\\'Brien'", vec![B1]),
        (
            "SELECT Id FROM Training_Booking__c WHERE Training_Start__c > 2026-11-26T10:00:00Z",
            vec![B2],
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE Training_Start__c >= 2026-11-26T10:00:00.000+0000",
            vec![B1, B2],
        ),
        ("SELECT Id FROM Training_Booking__c WHERE Training_Start__c = TODAY", vec![B1]),
        ("SELECT Id FROM Training_Booking__c WHERE Training_Start__c = NEXT_N_DAYS:1", vec![B2]),
        (
            "SELECT Id FROM Training_Booking__c WHERE (Service_Type__c = 'Onsite' OR Trainer__r.Email__c = 'ANN@example.com') AND NOT Name LIKE 'b%'",
            vec![B1],
        ),
        ("SELECT Id FROM Training_Booking__c WHERE IsDeleted = false", vec![B1, B2]),
        // Text sorts case-insensitively: "b2" < "O'Brien".
        ("SELECT Id FROM Training_Booking__c ORDER BY Name DESC", vec![B1, B2]),
        ("SELECT Id FROM Training_Booking__c ORDER BY Trainer__c ASC NULLS LAST LIMIT 1", vec![B1]),
        ("SELECT Id FROM Training_Booking__c ORDER BY Name LIMIT 5 OFFSET 1", vec![B1]),
    ] {
        let rows = run(soql, false).unwrap_or_else(|e| panic!("{soql}: {e:?}"));
        assert_eq!(ids(&rows), expected, "{soql}");
    }
}

#[test]
fn query_all_includes_deleted_rows_and_parents_that_are_gone_read_null() {
    let rows = run(
        "SELECT Id, IsDeleted, Trainer__r.Name FROM Training_Booking__c",
        true,
    )
    .unwrap();
    assert_eq!(ids(&rows), vec![B1, B2, B3]);
    assert_eq!(rows[2]["IsDeleted"], json!(true));
    assert_eq!(
        rows[2]["Trainer__r"],
        Value::Null,
        "deleted parent reads null"
    );
}

#[test]
fn relationship_fields_are_nested_with_attributes() {
    let rows = run(
        "SELECT Id, Name, Trainer__r.Email__c, Trainer__r.Name FROM Training_Booking__c",
        false,
    )
    .unwrap();
    assert_eq!(
        Value::Object(rows[0].clone()),
        json!({
            "attributes": {"type": "Training_Booking__c",
                           "url": format!("/services/data/v62.0/sobjects/Training_Booking__c/{B1}")},
            "Id": B1,
            "Name": "O'Brien",
            "Trainer__r": {
                "attributes": {"type": "Onboarding_Trainer__c",
                               "url": format!("/services/data/v62.0/sobjects/Onboarding_Trainer__c/{T1}")},
                "Email__c": "ann@example.com",
                "Name": "Ann"
            }
        })
    );
    assert_eq!(rows[1]["Trainer__r"], Value::Null);
}

#[test]
fn errors_have_salesforce_codes_and_locators() {
    for (soql, code, needle) in [
        (
            "SELECT Id FRM Training_Booking__c",
            "MALFORMED_QUERY",
            "unexpected token: FRM",
        ),
        (
            "SELECT Id FROM",
            "MALFORMED_QUERY",
            "unexpected token: <EOF>",
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE Name = 'x' AND Name = 'y' OR Name = 'z'",
            "MALFORMED_QUERY",
            "unexpected token: OR",
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE Name = 'unterminated",
            "MALFORMED_QUERY",
            "unterminated",
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE Name = 'bad \\q'",
            "MALFORMED_QUERY",
            "Illegal character sequence '\\q'",
        ),
        (
            "SELECT Id, Id FROM Training_Booking__c",
            "MALFORMED_QUERY",
            "duplicate field selected: Id",
        ),
        (
            "SELECT Id, Nope__c FROM Training_Booking__c",
            "INVALID_FIELD",
            "No such column 'Nope__c' on entity 'Training_Booking__c'",
        ),
        (
            "SELECT Coach__r.Name FROM Training_Booking__c",
            "INVALID_FIELD",
            "Didn't understand relationship 'Coach__r'",
        ),
        (
            "SELECT Id FROM Booking",
            "INVALID_TYPE",
            "sObject type 'Booking' is not supported",
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE Id = 'a0B' OR Id != ''",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: a0B",
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE Training_Start__c > '2026-01-01'",
            "INVALID_FIELD",
            "must be of type dateTime",
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE IsDeleted = 'false'",
            "INVALID_FIELD",
            "must be of type boolean",
        ),
        (
            "SELECT Id FROM Training_Booking__c WHERE Name = 5",
            "INVALID_FIELD",
            "must be of type string and should be enclosed in quotes",
        ),
    ] {
        let err = run(soql, false).unwrap_err();
        assert_eq!(err.code, code, "{soql}: {}", err.message);
        assert!(err.message.contains(needle), "{soql}: {}", err.message);
        assert!(
            err.message.contains("ERROR at Row:1:Column:"),
            "{}",
            err.message
        );
    }
    let err = run("SELECT Id FRM Training_Booking__c", false).unwrap_err();
    assert!(
        err.message.contains("ERROR at Row:1:Column:11"),
        "{}",
        err.message
    );
}

#[test]
fn string_escapes_decode() {
    let q = parse(r"SELECT Id FROM X WHERE Name = 'a\nb\\c\'d\u00e9'").unwrap();
    match q.filter.unwrap() {
        Expr::Cmp { value, .. } => assert_eq!(value, Lit::Str("a\nb\\c'dé".into())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn like_wildcards() {
    assert!(like("Remote Training", "remote%"));
    assert!(like("abc", "a_c"));
    assert!(!like("abc", "a_"));
    assert!(like("50%", "50\\%"));
    assert!(!like("500", "50\\%"));
}
