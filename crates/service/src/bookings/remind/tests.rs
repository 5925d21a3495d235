use super::*;

fn trainer(n: u8, name: &str, reason: Option<&str>) -> RemindedTrainer {
    RemindedTrainer {
        id: TrainerId::parse(&format!("a0T00000000000{n}")).unwrap(),
        name: Some(name.into()),
        reason: reason.map(str::to_string),
    }
}

#[test]
fn every_trainer_is_named_with_what_became_of_their_reminder() {
    let summary = RemindSummary {
        reached: vec![trainer(1, "Ann", None)],
        already_reminded: vec![trainer(2, "Bo", None)],
        unreachable: vec![trainer(3, "Cy", Some("no Lark account"))],
        failed: vec![trainer(4, "Di", Some("Lark unavailable"))],
    };
    let text = summary.lines();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "reminded: 1  already reminded today: 1  not reachable: 1  failed: 1"
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[1].starts_with("reached: ") && lines[1].contains("Ann"));
    assert!(lines[3].contains("Cy") && lines[3].contains("no Lark account"));
    assert!(
        lines[4].starts_with("failed (run remind again later): ")
            && lines[4].contains("Lark unavailable"),
        "{text}"
    );
}
