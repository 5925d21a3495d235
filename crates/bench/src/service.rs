//! The service under test — in this process like `demo`, or a child `lark-vc-bridge run`
//! — the simulators' own runtime, and readings from `/proc`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use lark_vc_bridge::app::{App, ShutdownHandle};
use lark_vc_bridge::config::Settings;
use lvb_simulators::lark::LarkSim;
use lvb_simulators::launch::Simulators;
use lvb_simulators::salesforce::SalesforceSim;

use super::*;

/// The service, in this process (like `demo`) or as a child `lark-vc-bridge run`.
pub(super) enum Service {
    InProcess {
        url: String,
        shutdown: ShutdownHandle,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
    Child {
        url: String,
        child: tokio::process::Child,
        log: PathBuf,
    },
}

/// `server.rate_limit_per_minute` for the benchmark's service: its largest valid value.
const SEEDING_RATE_LIMIT: u32 = 100_000;

impl Service {
    /// Starts the service in this process, or as `service_bin run` when given.
    pub(super) async fn start(
        service_bin: Option<PathBuf>,
        sf: &SalesforceSim,
        lark: &LarkSim,
        dir: &Path,
    ) -> anyhow::Result<Service> {
        let store = dir.join("store.db");
        let mut env = lvb_simulators::service_env(&sf.base_url(), &lark.base_url(), &store);
        // Every trainer connects from this one loopback address while seeding: the
        // per-address limit of the OAuth routes (rule 18) is for the public, not this.
        env.push((
            "LVB__SERVER__RATE_LIMIT_PER_MINUTE".into(),
            SEEDING_RATE_LIMIT.to_string(),
        ));
        // `LVB__CALENDAR__…` of the bench's own environment reach the service, so a run
        // with `LVB__CALENDAR__ENABLED=false` measures the pipeline without calendar events.
        env.extend(std::env::vars().filter(|(k, _)| k.starts_with("LVB__CALENDAR__")));
        let Some(service_bin) = service_bin else {
            let settings = Settings::load_from(None, env)?;
            let app = App::build(settings).await?;
            let url = app.local_url();
            let shutdown = app.shutdown_handle();
            let task = tokio::spawn(app.run_until_stopped(std::future::pending()));
            return Ok(Service::InProcess {
                url,
                shutdown,
                task,
            });
        };
        // The port must be known before start: it is part of the OAuth redirect URI.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.join("service.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = tokio::process::Command::new(service_bin);
        cmd.arg("run");
        for (key, _) in std::env::vars() {
            if key.starts_with("LVB__") || key == "LVB_CONFIG" {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env);
        cmd.envs([
            ("LVB__SERVER__BIND", format!("127.0.0.1:{port}")),
            (
                "LVB__SERVER__PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            ),
        ]);
        // Its own process group: a wrapper given as the service binary (heaptrack, perf,
        // a shell script) is stopped together with the service it started, instead of
        // leaving that service running behind it into the next run.
        cmd.stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().context("starting `lark-vc-bridge run`")?;
        Ok(Service::Child {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
        })
    }

    pub(super) fn url(&self) -> &str {
        match self {
            Service::InProcess { url, .. } | Service::Child { url, .. } => url,
        }
    }

    /// Fails when the service has stopped on its own.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Service::InProcess { task, .. } => {
                if task.is_finished() {
                    bail!("the service stopped during the bench");
                }
            }
            Service::Child { child, log, .. } => {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the service exited ({status}); last log lines:\n{}",
                        log_tail(log)
                    );
                }
            }
        }
        Ok(())
    }

    /// Current and peak memory of the service's process (in-process: this process).
    pub(super) fn memory(&self) -> Option<Memory> {
        match self {
            Service::InProcess { .. } => read_memory("self"),
            Service::Child { child, .. } => read_memory(&child.id()?.to_string()),
        }
    }

    /// CPU seconds the service has used so far.
    pub(super) fn cpu_secs(&self) -> f64 {
        match self {
            Service::InProcess { .. } => CpuSplit::read_self().service(),
            Service::Child { child, .. } => child
                .id()
                .and_then(|pid| cpu_secs_of(&format!("/proc/{pid}/stat")))
                .unwrap_or_default(),
        }
    }

    /// Stops the service gracefully (SIGTERM for the child, which it handles like ctrl-c).
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        match self {
            Service::InProcess { shutdown, task, .. } => {
                shutdown.trigger();
                match tokio::time::timeout(Duration::from_secs(40), task).await {
                    Ok(joined) => joined
                        .context("service task")?
                        .context("service stopped with an error"),
                    Err(_) => bail!("the service did not stop within 40 s"),
                }
            }
            Service::Child { mut child, .. } => {
                if let Some(pid) = child.id() {
                    // Our own child's process group (see `start`), by its id.
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", "--", &format!("-{pid}")])
                        .status();
                }
                match tokio::time::timeout(Duration::from_secs(40), child.wait()).await {
                    Ok(status) => {
                        status?;
                        Ok(())
                    }
                    Err(_) => {
                        if let Some(pid) = child.id() {
                            let _ = std::process::Command::new("kill")
                                .args(["-KILL", "--", &format!("-{pid}")])
                                .status();
                        }
                        child.kill().await?;
                        bail!("the service did not stop within 40 s of SIGTERM")
                    }
                }
            }
        }
    }
}

/// Whether the service under test puts meetings on calendars: on unless the bench's
/// environment turns it off (its `LVB__CALENDAR__…` variables reach the service).
pub(super) fn calendar_enabled() -> bool {
    std::env::var("LVB__CALENDAR__ENABLED").map_or(true, |v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        )
    })
}

pub(super) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The simulators' own runtime, on threads named [`SIM_THREAD`] so their CPU time is
/// told apart from the service's.
pub(super) struct SimRuntime(pub(super) Option<tokio::runtime::Runtime>);

impl SimRuntime {
    pub(super) fn new() -> anyhow::Result<SimRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SIM_THREAD)
            .enable_all()
            .build()
            .context("starting the simulators' runtime")?;
        Ok(SimRuntime(Some(rt)))
    }

    /// Starts both simulators with their servers' tasks on this runtime.
    pub(super) async fn start(&self) -> anyhow::Result<Simulators> {
        let rt = self
            .0
            .as_ref()
            .context("simulators' runtime already stopped")?;
        Ok(rt
            .spawn(Simulators::start(0, 0))
            .await
            .context("starting the simulators")??)
    }
}

impl Drop for SimRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on a thread named [`BENCH_THREAD`] (blocking polls); returns its result and
/// the thread's CPU seconds, which are not the service's.
pub(super) async fn on_bench_thread<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<(T, f64)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(BENCH_THREAD.into())
        .spawn(move || {
            let out = f();
            let cpu = cpu_secs_of("/proc/thread-self/stat").unwrap_or_default();
            let _ = tx.send(out.map(|v| (v, cpu)));
        })?;
    rx.await.context("the bench thread panicked")?
}

/// VmRSS and VmHWM of a process (`self` or a pid), in kB.
#[derive(Debug, Clone, Copy)]
pub(super) struct Memory {
    pub(super) rss_kb: u64,
    pub(super) hwm_kb: u64,
}

pub(super) fn read_memory(pid: &str) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some(Memory {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
    })
}

/// utime + stime of a `/proc/…/stat` file, in seconds, and the thread's name.
pub(super) fn read_stat(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The name is in parentheses and may itself contain spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is 14, stime 15.
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / CLOCK_TICKS_PER_SEC))
}

pub(super) fn cpu_secs_of(path: &str) -> Option<f64> {
    read_stat(path).map(|(_, secs)| secs)
}

/// CPU seconds of this process, and of its simulator and bench threads.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CpuSplit {
    pub(super) process: f64,
    pub(super) sims: f64,
    pub(super) bench: f64,
}

impl CpuSplit {
    pub(super) fn read_self() -> CpuSplit {
        let mut split = CpuSplit {
            process: cpu_secs_of("/proc/self/stat").unwrap_or_default(),
            ..CpuSplit::default()
        };
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let path = task.path().join("stat");
                if let Some((name, secs)) = read_stat(&path.to_string_lossy()) {
                    if name.starts_with(SIM_THREAD) {
                        split.sims += secs;
                    } else if name.starts_with(BENCH_THREAD) {
                        split.bench += secs;
                    }
                }
            }
        }
        split
    }

    /// Everything that is neither a simulator nor a running bench thread (finished bench
    /// threads report their own time, which callers subtract). The trainers' browser
    /// requests and readiness polls run on the main runtime and are counted here: a
    /// slight overestimate of the service.
    pub(super) fn service(&self) -> f64 {
        (self.process - self.sims - self.bench).max(0.0)
    }
}
