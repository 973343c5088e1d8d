//! `schism run FILE`: the whole experiment against a local cluster of processes in network
//! namespaces — no Kubernetes needed. Exit 0 Pass, 1 Fail, 2 Inconclusive, 3 error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, Chaos, Verdict};
use crate::engine::experiment::{self, RunSettings};
use crate::engine::timeline;
use crate::local::{
    LocalBackend, LocalCluster, LocalClusterConfig, NodeRole, ReadyCheck, cleanup_crashed_runs,
};
use crate::workload::postgres::Password;

/// Arguments of `schism run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The experiment: a Chaos manifest whose target is `local`.
    pub file: PathBuf,
    /// Where to write result.json, history.jsonl, junit.xml and report.html
    /// (default: schism-out/NAME).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Seed for every random choice; overrides spec.seed.
    #[arg(long)]
    pub seed: Option<i64>,
    /// Time budget of the linearizability check; past it the result is Unknown.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Memory budget of the linearizability check (e.g. 512Mi, 2Gi); past it the result is
    /// Unknown. Default: 60% of this process's memory limit, less what it already holds.
    #[arg(long, value_name = "SIZE", value_parser = crate::check::memory::parse_size)]
    pub max_memory: Option<usize>,
    /// Do not print the live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Do not record the history (measures what recording costs; no consistency check).
    #[arg(long, hide = true)]
    pub no_history: bool,
    /// Prometheus for assertions that name no `url`, e.g. http://127.0.0.1:9090.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    api::duration::parse(text).map_err(|e| e.to_string())
}

/// Exit code for an error before or around the experiment.
pub const EXIT_ERROR: i32 = 3;

/// Runs the experiment and returns the exit code.
pub fn run(args: &RunArgs) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    match runtime.block_on(run_async(args)) {
        Ok(verdict) => match verdict {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Inconclusive => 2,
        },
        Err(message) => {
            eprintln!("schism run: {message}");
            EXIT_ERROR
        }
    }
}

/// Loads the one Chaos of a file, validated.
pub fn load_experiment(path: &std::path::Path) -> Result<Chaos, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut reports = crate::api::validate::validate_bytes(&bytes);
    let problems: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.problems
                .iter()
                .map(move |p| format!("{}:{}: {p}", path.display(), r.index))
        })
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "the experiment is invalid:\n{}",
            problems.join("\n")
        ));
    }
    if reports.len() != 1 {
        return Err(format!(
            "{} holds {} Chaos documents; schism run takes exactly one",
            path.display(),
            reports.len()
        ));
    }
    let report = reports.remove(0);
    match report.chaos {
        Some(chaos) => Ok(*chaos),
        None => Err(format!(
            "{} holds a ChaosSchedule; schism run runs a Chaos (its template, as the spec of one)",
            path.display()
        )),
    }
}

fn cluster_config(
    local: &api::LocalTarget,
    work_dir: PathBuf,
) -> Result<LocalClusterConfig, String> {
    let ready = match (&local.ready.tcp, &local.ready.http) {
        (Some(tcp), _) => ReadyCheck::Tcp {
            port: tcp.port as u16,
        },
        (_, Some(http)) => ReadyCheck::Http {
            port: http.port as u16,
            path: http.path.clone(),
        },
        _ => return Err("spec.target.local.ready: exactly one of tcp, http must be set".into()),
    };
    let mut config = LocalClusterConfig::new(local.nodes as usize, local.command.clone(), ready);
    config.peer_format = local.peer_format.clone();
    config.peer_separator = local.peer_separator.clone();
    config.restart_command = local.restart_command.clone();
    if let Some(timeout) = local.ready_timeout {
        config.ready_timeout = timeout.get();
    }
    if let Some(delay) = local.restart_delay {
        config.restart_delay = delay.get();
    }
    config.subnet = local
        .subnet
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| format!("spec.target.local.subnet: {e}"))?;
    config.env = local.env.clone();
    config.user = local.user.clone();
    config.init = local.init.clone();
    config.roles = local
        .roles
        .iter()
        .map(|role| NodeRole {
            name: role.name.clone(),
            nodes: role
                .nodes
                .iter()
                .map(|n| (*n as usize).saturating_sub(1))
                .collect(),
            command: role.command.clone(),
            restart_command: role.restart_command.clone(),
            init: role.init.clone(),
        })
        .collect();
    config.work_dir = Some(work_dir);
    Ok(config)
}

async fn run_async(args: &RunArgs) -> Result<Verdict, String> {
    let chaos = load_experiment(&args.file)?;
    let name = chaos
        .metadata
        .name
        .clone()
        .or(chaos.metadata.generate_name.clone())
        .unwrap_or_else(|| "experiment".into());
    let spec = &chaos.spec;
    let Some(local) = &spec.target.local else {
        return Err("spec.target: schism run needs a `local` target; deployment, statefulSet and selector targets run in a cluster through the controller".into());
    };
    // Whatever a crashed earlier run left behind goes first.
    let cleaned = cleanup_crashed_runs().map_err(|e| e.to_string())?;
    if !cleaned.is_empty() {
        eprint!("cleaned up after a crashed run:\n{cleaned}");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("schism-out").join(&name));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let out = out.canonicalize().unwrap_or(out);
    let seed = args.seed.or(spec.seed).unwrap_or_else(random_seed);
    eprintln!(
        "starting {} local node(s) for {name} (seed {seed})",
        local.nodes
    );
    let config = cluster_config(local, out.join("nodes"))?;
    // Ctrl-C (or SIGTERM, SIGHUP) during set-up stops it: dropping the unfinished start
    // removes whatever exists of the cluster, and the message says so. (Were the process
    // killed instead, the run's guard would remove it.)
    let mut interrupted = SetupSignals::install()?;
    let started = tokio::select! {
        started = LocalCluster::start(config) => Ok(started),
        code = interrupted.recv() => Err(code),
    };
    // The unfinished start, if any, is dropped by now, and with it the cluster's remains.
    let cluster = match started {
        Ok(started) => started.map_err(|e| e.to_string())?,
        Err(code) => {
            eprintln!("interrupted during set-up: the local cluster was removed");
            std::process::exit(code);
        }
    };
    drop(interrupted);
    let cluster = Arc::new(cluster);
    let signals = cluster.spawn_teardown_on_signal();
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let plan = timeline::build(spec, &names, seed as u64).map_err(|e| e.to_string())?;
    let settings = RunSettings {
        seed: seed as u64,
        check_memory: args.max_memory,
        check_timeout: args.check_timeout,
        record_history: !args.no_history,
        progress: !args.quiet,
        postgres_password: local_password(spec)?,
        prometheus_url: args.prometheus_url.clone(),
        stop: None,
        suspend: None,
    };
    let mut backend = LocalBackend::new(Arc::clone(&cluster));
    let outcome = experiment::run(spec, plan, &mut backend, &settings).await;
    signals.abort();
    drop(backend);
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        let removed = cluster.teardown();
        tracing::debug!(?removed, "local cluster torn down");
    }
    let written = crate::report::write_all(&out, &name, &outcome)
        .map_err(|e| format!("cannot write the report into {}: {e}", out.display()))?;
    print!("{}", summary(&name, &outcome));
    println!("report: {}", written.dir.join("report.html").display());
    Ok(outcome.status.verdict.unwrap_or(Verdict::Inconclusive))
}

/// The postgres client's password from the manifest or the environment. (Secrets are only
/// read in a cluster; validation keeps them out of local runs.)
fn local_password(spec: &crate::api::ChaosSpec) -> Result<Option<Password>, String> {
    let Some(source) = spec
        .workload
        .as_ref()
        .and_then(|w| w.postgres.as_ref())
        .and_then(|p| p.password.as_ref())
    else {
        return Ok(None);
    };
    match (&source.value, &source.env) {
        (Some(value), _) => Ok(Some(Password::new(value.clone()))),
        (None, Some(name)) => match std::env::var(name) {
            Ok(value) => Ok(Some(Password::new(value))),
            Err(_) => Err(format!(
                "spec.workload.postgres.password.env: the environment variable {name} is not set (or not UTF-8)"
            )),
        },
        (None, None) => Err(
            "spec.workload.postgres.password.secretKeyRef: Secrets are read only in a cluster; a local target takes env or value".into(),
        ),
    }
}

fn random_seed() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (nanos as i64 ^ i64::from(std::process::id())).abs()
}

/// The summary table printed at the end of a run.
pub fn summary(name: &str, outcome: &experiment::ExperimentOutcome) -> String {
    let status = &outcome.status;
    let mut out = String::new();
    let verdict = status.verdict.map(|v| format!("{v:?}")).unwrap_or_default();
    out.push_str(&format!("\n{name}: {verdict}\n"));
    let row = |out: &mut String, label: &str, value: String| {
        out.push_str(&format!("  {label:<22} {value}\n"))
    };
    row(
        &mut out,
        "seed",
        status.seed.unwrap_or_default().to_string(),
    );
    row(
        &mut out,
        "faults injected",
        format!(
            "{} ({} with errors)",
            outcome.spans.len(),
            outcome.spans.iter().filter(|s| s.error.is_some()).count()
        ),
    );
    row(
        &mut out,
        "workload",
        format!("{:.0} ops/s", outcome.ops_per_second),
    );
    if let Some(a) = &status.availability {
        row(
            &mut out,
            "availability",
            format!("{:.3} ({} of {} probes)", a.ratio, a.successes, a.probes),
        );
        row(
            &mut out,
            "longest outage",
            format!("{} ms", a.longest_outage_ms),
        );
        row(
            &mut out,
            "recovery",
            a.recovery_ms
                .map(|r| format!("{r} ms"))
                .unwrap_or_else(|| "never".into()),
        );
    }
    if let Some(c) = &status.consistency {
        row(
            &mut out,
            "consistency",
            format!(
                "{:?} ({}, {} ops, {} unknown, {} ms)",
                c.result, c.model, c.operations, c.indeterminate, c.check_millis
            ),
        );
        if let Some(anomaly) = &c.anomaly {
            row(&mut out, "anomaly", anomaly.clone());
        }
    }
    for reason in &status.reasons {
        row(&mut out, "reason", reason.clone());
    }
    out
}

/// The signals that end `schism run` while its cluster is being set up.
struct SetupSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl SetupSignals {
    fn install() -> Result<Self, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| format!("cannot install a signal handler: {e}"))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    /// Waits for one of them; returns the exit code it calls for (128 + its number).
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => 128 + libc::SIGINT,
            _ = self.terminate.recv() => 128 + libc::SIGTERM,
            _ = self.hangup.recv() => 128 + libc::SIGHUP,
        }
    }
}
