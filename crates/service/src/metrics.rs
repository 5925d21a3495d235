//! Counters and gauges for `/metrics`, rendered in the Prometheus text format.
//! Names are fixed here so dashboards can rely on them; labels carry kinds, never ids.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A metric name plus its sorted labels.
type Key = (&'static str, Vec<(&'static str, String)>);

/// The process-wide metrics registry; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    counters: Arc<Mutex<BTreeMap<Key, u64>>>,
    gauges: Arc<Mutex<BTreeMap<Key, f64>>>,
}

/// Help text for each metric name we emit.
const HELP: &[(&str, &str)] = &[
    ("lvb_events_received_total", "Streaming events received"),
    (
        "lvb_events_processed_total",
        "Streaming events whose work is done",
    ),
    (
        "lvb_events_skipped_total",
        "Streaming events skipped, by reason",
    ),
    ("lvb_meetings_total", "Lark reservations changed, by action"),
    ("lvb_failures_total", "Failures, by kind"),
    (
        "lvb_token_refreshes_total",
        "Trainer token refreshes, by outcome",
    ),
    ("lvb_oauth_connections_total", "OAuth callbacks, by outcome"),
    (
        "lvb_streaming_lag_seconds",
        "Seconds between an event's commit and its processing",
    ),
];

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        let key = key(name, labels);
        *self
            .counters
            .lock()
            .expect("metrics")
            .entry(key)
            .or_default() += n;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.gauges
            .lock()
            .expect("metrics")
            .insert(key(name, labels), value);
    }

    /// Current value of a counter (tests, summaries).
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        self.counters
            .lock()
            .expect("metrics")
            .get(&key(name, labels))
            .copied()
            .unwrap_or(0)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics").clone();
        let gauges = self.gauges.lock().expect("metrics").clone();
        for (name, help) in HELP {
            let is_gauge = name.ends_with("_seconds");
            out.push_str(&format!("# HELP {name} {help}\n"));
            out.push_str(&format!(
                "# TYPE {name} {}\n",
                if is_gauge { "gauge" } else { "counter" }
            ));
            let mut any = false;
            if is_gauge {
                for ((n, labels), v) in gauges.iter().filter(|((n, _), _)| n == name) {
                    out.push_str(&format!("{n}{} {v}\n", render_labels(labels)));
                    any = true;
                }
            } else {
                for ((n, labels), v) in counters.iter().filter(|((n, _), _)| n == name) {
                    out.push_str(&format!("{n}{} {v}\n", render_labels(labels)));
                    any = true;
                }
            }
            if !any && labels_free(name) {
                out.push_str(&format!("{name} 0\n"));
            }
        }
        out
    }
}

fn labels_free(name: &str) -> bool {
    matches!(
        name,
        "lvb_events_received_total" | "lvb_events_processed_total" | "lvb_streaming_lag_seconds"
    )
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let mut l: Vec<(&'static str, String)> =
        labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    l.sort();
    (name, l)
}

fn render_labels(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.inc("lvb_meetings_total", &[("action", "created")]);
        m.inc("lvb_meetings_total", &[("action", "created")]);
        m.set("lvb_streaming_lag_seconds", &[], 1.5);
        let text = m.render();
        assert!(
            text.contains("lvb_meetings_total{action=\"created\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("lvb_streaming_lag_seconds 1.5\n"));
        assert!(text.contains("lvb_events_received_total 0\n"));
        assert_eq!(m.get("lvb_meetings_total", &[("action", "created")]), 2);
    }
}
