//! Tests of [`super`] (the events module root): which errors end the connection for good.

use super::*;
use crate::retry::{RetryHint, Retryable};

#[test]
fn only_refusals_and_spent_reconnects_are_permanent() {
    let permanent = [
        EventsError::Refused {
            code: 10003,
            msg: "app not found".into(),
        },
        EventsError::GaveUp { attempts: 3 },
        EventsError::Handshake {
            status: 403,
            auth_code: None,
            msg: "forbidden".into(),
            permanent: true,
        },
    ];
    for e in permanent {
        assert!(e.is_permanent(), "{e}");
        assert_eq!(e.retry_hint(), RetryHint::Never);
    }
    let passing = [
        EventsError::Busy {
            code: 1,
            msg: "system busy".into(),
        },
        EventsError::Status { status: 500 },
        EventsError::Unexpected("x".into()),
        EventsError::Transport("reset".into()),
        EventsError::Timeout,
        EventsError::Handshake {
            status: 514,
            auth_code: Some(1),
            msg: "auth failed".into(),
            permanent: false,
        },
    ];
    for e in passing {
        assert!(!e.is_permanent(), "{e}");
        assert_eq!(e.retry_hint(), RetryHint::Backoff);
    }
}
