//! By-id reads against the Salesforce simulator, which refuses a URI (with headers) longer
//! than Salesforce takes.

use std::sync::Arc;

use lvb_simulators::salesforce::schema::BOOKING_OBJECT;
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::SF_HUMAN_USER_ID;

use super::*;
use crate::ids::BookingId;
use crate::store::test_support::{b, t};

#[tokio::test]
async fn a_thousand_ids_are_read_in_the_fewest_queries_salesforce_takes() {
    let sf = SalesforceSim::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Arc::new(
        Settings::for_simulators(
            &sf.base_url(),
            "http://127.0.0.1:9",
            &dir.path().join("s.db"),
        )
        .unwrap(),
    );
    let salesforce = SalesforceClient::new(&settings.salesforce).unwrap();
    let reader = BookingReader::new(settings, salesforce);
    let ids: Vec<BookingId> = (0..1000)
        .map(|i| {
            let id = sf.insert(
                BOOKING_OBJECT,
                serde_json::json!({ "Merchant_Name__c": format!("M{i}") }),
                SF_HUMAN_USER_ID,
            );
            BookingId::parse(&id).unwrap()
        })
        .collect();
    assert_eq!(reader.ids_per_query().await.unwrap(), MAX_IDS_PER_QUERY);

    let bookings = reader.by_ids(&ids).await.unwrap();

    assert_eq!(bookings.len(), 1000);
    assert!(
        bookings.iter().all(|b| !b.is_deleted),
        "every one was found"
    );
    let reads = sf
        .requests()
        .matching(|r| r.path.contains("/queryAll") && r.query.contains("Id+IN"));
    assert_eq!(reads.len(), 1000_usize.div_ceil(MAX_IDS_PER_QUERY));
    assert!(
        reads.iter().all(|r| r.status == 200),
        "Salesforce took each one"
    );
}

#[test]
fn a_longer_select_list_leaves_room_for_fewer_ids_and_the_query_stays_in_budget() {
    let id = RecordId::parse("a0B000000000001EAA").unwrap();
    let mut fitting = Vec::new();
    for fields in [30, 400, 600] {
        let list: Vec<String> = (0..fields).map(|i| format!("Field_{i}__c")).collect();
        let soql =
            |n: usize| by_ids_soql(&list.join(","), "Training_Booking__c", &vec![id.clone(); n]);
        let n = ids_fitting(&soql(0));
        assert!(
            encoded_len(&soql(n)) <= QUERY_PARAM_BUDGET,
            "{fields} fields: {n} ids"
        );
        if n < MAX_IDS_PER_QUERY {
            assert!(
                encoded_len(&soql(n + 1)) > QUERY_PARAM_BUDGET,
                "{fields} fields: {n} is the most"
            );
        }
        fitting.push(n);
    }
    assert_eq!(
        fitting[0], MAX_IDS_PER_QUERY,
        "30 fields leave room for the most"
    );
    assert!(
        fitting[0] > fitting[1] && fitting[1] > fitting[2],
        "more fields, fewer ids: {fitting:?}"
    );
    let huge: Vec<String> = (0..2000).map(|i| format!("Field_{i}__c")).collect();
    assert_eq!(ids_fitting(&huge.join(",")), 1, "always at least one");
}

/// A connected trainer's record as a query row gives it, with `access` as its encrypted
/// access token.
fn trainer_record(n: u32, access: &str) -> TrainerRecord {
    TrainerRecord {
        id: t(n),
        name: Some(format!("Trainer {n}")),
        email: Some(format!("t{n}@example.com")),
        lark_user_id: Some(format!("ou_{n}")),
        access_enc: Some(access.to_string()),
        refresh_enc: Some(format!("refresh-{n}")),
        access_expires_at: None,
        refresh_expires_at: None,
        connected: true,
    }
}

fn booking_of(n: u32, trainer: TrainerRecord) -> Booking {
    let mut booking = Booking::purged(b(n));
    booking.trainer = Some(Arc::new(trainer));
    booking
}

#[test]
fn bookings_of_one_trainer_read_alike_share_one_record() {
    let mut bookings = vec![
        booking_of(1, trainer_record(1, "enc-a")),
        booking_of(2, trainer_record(2, "enc-b")),
        booking_of(3, trainer_record(1, "enc-a")),
        // The same trainer, read with other tokens (rotated between two pages, say):
        // kept as read.
        booking_of(4, trainer_record(1, "enc-c")),
    ];
    share_trainers(&mut bookings);
    let record = |i: usize| bookings[i].trainer.as_ref().unwrap();
    assert!(
        Arc::ptr_eq(record(0), record(2)),
        "one record for trainer 1"
    );
    assert!(!Arc::ptr_eq(record(0), record(1)));
    assert!(!Arc::ptr_eq(record(0), record(3)));
    assert_eq!(record(3).access_enc.as_deref(), Some("enc-c"));
    assert_eq!(record(2).access_enc.as_deref(), Some("enc-a"));
}
