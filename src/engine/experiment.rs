//! Runs one experiment against a backend: opens the chaos window, drives the workload and the
//! probe, walks the timeline, heals everything, checks the history and decides the verdict.
//! The backend (local processes, or pods) only has to inject and heal.

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use super::consistency::{CheckInput, check_recorded};
use super::generator::{WorkloadCounters, WorkloadPlan, run_workload};
use super::guards::{self, AbortSignal, RollingGuard};
use super::probe::{ProbeKind, ProbeSample, run_probes, summarize};
use super::prometheus;
use super::recorded::Recorded;
use super::roles::RoleProber;
use super::suspend;
use super::timeline::{self, Aim, FaultInstance, Step, Timeline};
use super::transactions::{TxnPlan, run_transactions};
use super::verdict::{Decision, decide};
use crate::api::{
    self, AssertionResult, ChaosSpec, ChaosStatus, ClientKind, ConsistencyAssertion, FaultRecord,
    IsolationLevel, Phase, PrometheusAssertion, PrometheusWhen, ReadConsistency, Workload,
};
use crate::check::{self, History};
use crate::workload::etcd::{EtcdClient, EtcdTxnClient};
use crate::workload::postgres::{Isolation, Password, PostgresTxnClient};
use crate::workload::{KvClient, TxnClient, http::HttpKvClient, redis::RedisClient};

/// A node of the target as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// Its name (`n1`, or a pod name).
    pub name: String,
    /// The address clients and probes connect to.
    pub host: String,
}

/// What a backend must do for the engine.
pub trait Backend {
    /// The target's nodes, in the order fault plans index them.
    fn nodes(&self) -> Vec<NodeAddress>;
    /// A network namespace the clients must run in to reach the nodes, if any.
    fn client_netns(&self) -> Option<PathBuf>;
    /// Injects instance `index` of the timeline; it must revert by itself at `deadline` even
    /// if the engine never calls `heal`. Returns how the fault was made, for the timeline.
    fn inject(
        &mut self,
        index: usize,
        instance: &FaultInstance,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<String>, String>>;
    /// Heals instance `index`.
    fn heal(
        &mut self,
        index: usize,
        instance: &FaultInstance,
    ) -> impl Future<Output = Result<(), String>>;
    /// Heals whatever is still active; returns the errors.
    fn heal_all(&mut self) -> impl Future<Output = Vec<String>>;
    /// What happened to instance `index` after it was injected, for its timeline entry: a
    /// fault given again to a pod or node that was recreated inside its window, say.
    fn notes(&mut self, _index: usize) -> Vec<String> {
        Vec::new()
    }
}

/// Settings of a run that are not part of the spec.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The seed (the spec's, or a chosen one).
    pub seed: u64,
    /// Budget of the linearizability check; past it the result is Unknown.
    pub check_timeout: Duration,
    /// Memory budget of the check (`None`: a share of this process's memory limit).
    pub check_memory: Option<usize>,
    /// Record the history (off only for benchmarks).
    pub record_history: bool,
    /// Print a live progress line on standard error.
    pub progress: bool,
    /// The postgres client's password, resolved from the spec's source by the caller.
    pub postgres_password: Option<Password>,
    /// Where Prometheus assertions without a `url` send their queries.
    pub prometheus_url: Option<String>,
    /// When this turns true the run stops early: every fault is healed at once, the workload
    /// and probes stop, and the check (if it started) is cancelled. The outcome says so.
    pub stop: Option<watch::Receiver<bool>>,
    /// While this is true the run is suspended: its faults healed, the window's clock held
    /// (see [`super::suspend`]).
    pub suspend: Option<watch::Receiver<bool>>,
}

/// One fault injection as it happened, with offsets from the window's start.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpan {
    /// Instance name.
    pub name: String,
    /// Fault kind.
    pub kind: &'static str,
    /// Affected node names.
    pub targets: Vec<String>,
    /// When it was injected.
    pub injected: Duration,
    /// When it was healed (kills: the moment of the kill).
    pub healed: Option<Duration>,
    /// How it was made.
    pub detail: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Everything an experiment produced.
#[derive(Debug, Clone)]
pub struct ExperimentOutcome {
    /// The status, in the shape of the CRD's `.status`.
    pub status: ChaosStatus,
    /// The recorded history, and the checker's outcome when consistency was asserted.
    pub recorded: Recorded,
    /// Every Prometheus assertion with its samples.
    pub prometheus: Vec<prometheus::Sampled>,
    /// Every availability probe.
    pub probes: Vec<ProbeSample>,
    /// The faults as they happened.
    pub spans: Vec<FaultSpan>,
    /// The planned timeline.
    pub timeline: Timeline,
    /// The nodes.
    pub nodes: Vec<NodeAddress>,
    /// Operations per second the workload achieved.
    pub ops_per_second: f64,
    /// Every assertion and how it came out.
    pub checks: Vec<super::verdict::AssertionCheck>,
    /// The run was stopped before its end (see [`RunSettings::stop`]); its verdict covers only
    /// what was recorded.
    pub stopped: bool,
}

/// Waits `duration`, or less if `stop` turns true or the run is to be suspended; returns
/// whether it was stopped.
async fn wait_step(
    stop: &mut Option<watch::Receiver<bool>>,
    suspend: &mut Option<watch::Receiver<bool>>,
    duration: Duration,
) -> bool {
    let Some(suspend) = suspend.as_mut() else {
        return wait_unless_stopped(stop, duration).await;
    };
    if *suspend.borrow() {
        return stop.as_ref().is_some_and(|s| *s.borrow());
    }
    tokio::select! {
        stopped = wait_unless_stopped(stop, duration) => stopped,
        _ = suspend.wait_for(|s| *s) => stop.as_ref().is_some_and(|s| *s.borrow()),
    }
}

/// Faults injected and not healed, with the instance as injected (aimed, if it was).
fn open_faults(
    timeline: &Timeline,
    aimed: &[Option<FaultInstance>],
    spans: &[FaultSpan],
    records: &[FaultRecord],
) -> Vec<(usize, FaultInstance)> {
    timeline
        .instances
        .iter()
        .enumerate()
        .filter(|(i, planned)| {
            planned.heal_at.is_some()
                && records[*i].injected_at.is_some()
                && spans[*i].healed.is_none()
                && spans[*i].error.is_none()
        })
        .map(|(i, planned)| (i, aimed[i].clone().unwrap_or_else(|| planned.clone())))
        .collect()
}

/// Waits `duration`, or less if `stop` turns true; returns whether it did.
async fn wait_unless_stopped(stop: &mut Option<watch::Receiver<bool>>, duration: Duration) -> bool {
    match stop {
        None => {
            tokio::time::sleep(duration).await;
            false
        }
        Some(stop) => {
            if *stop.borrow() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(duration) => *stop.borrow(),
                changed = stop.changed() => changed.is_ok() && *stop.borrow(),
            }
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Runs the experiment. Faults are healed before this returns, whatever happens.
pub async fn run<B: Backend>(
    spec: &ChaosSpec,
    timeline: Timeline,
    backend: &mut B,
    settings: &RunSettings,
) -> ExperimentOutcome {
    let nodes = backend.nodes();
    let window = spec.duration.get();
    let start_time = now();
    let asserted = spec.assertions.clone().unwrap_or_default();
    let prometheus_http = prometheus::client();
    let prometheus_url = settings.prometheus_url.as_deref();
    let of_kind = |when: PrometheusWhen| -> Vec<PrometheusAssertion> {
        asserted
            .prometheus
            .iter()
            .filter(|a| a.when == when)
            .cloned()
            .collect()
    };
    // The steady state first: if it does not hold, breaking the system would prove nothing.
    let before = prometheus::evaluate_once(
        &prometheus_http,
        prometheus_url,
        of_kind(PrometheusWhen::Before),
        Duration::ZERO,
    )
    .await;
    if before
        .iter()
        .any(|s| s.record().result != AssertionResult::Held)
    {
        return steady_state_not_met(before, timeline, nodes, settings, start_time);
    }
    let epoch = Instant::now();
    // Halted by a stop request or by the first abort guard to trip; only a trip is an abort.
    let (halt, halted) = watch::channel(false);
    let halt = Arc::new(halt);
    let abort = Arc::new(AbortSignal::new(Arc::clone(&halt)));
    if let Some(mut requested) = settings.stop.clone() {
        let halt = Arc::clone(&halt);
        tokio::spawn(async move {
            if requested.wait_for(|s| *s).await.is_ok() {
                let _ = halt.send(true);
            }
        });
    }
    let probe_guards: Vec<RollingGuard> = spec.abort.iter().filter_map(RollingGuard::of).collect();
    let live_probes = (!probe_guards.is_empty()).then(|| {
        let (live, samples) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(guards::watch_probes(
            probe_guards,
            samples,
            Arc::clone(&abort),
            epoch,
        ));
        live
    });
    let guarded: Vec<String> = spec
        .abort
        .iter()
        .filter_map(|g| g.prometheus.clone())
        .collect();
    let (stop_sampling, sampling_stopped) = watch::channel(false);
    let during = prometheus::spawn_during(
        &prometheus_http,
        prometheus_url,
        of_kind(PrometheusWhen::During),
        epoch,
        epoch + window,
        sampling_stopped,
        &guarded,
        &abort,
    );
    let (stop_workload, workload_stopped) = watch::channel(false);
    let (stop_probes, probes_stopped) = watch::channel(false);
    let counters = Arc::new(WorkloadCounters::default());
    let observers = spawn_observers(
        backend.client_netns(),
        spec,
        &nodes,
        settings,
        epoch,
        Arc::clone(&counters),
        workload_stopped,
        probes_stopped,
        live_probes,
    );

    let mut spans: Vec<FaultSpan> = timeline
        .instances
        .iter()
        .map(|i| FaultSpan {
            name: i.name.clone(),
            kind: i.action.kind(),
            targets: i.targets.iter().map(|t| nodes[*t].name.clone()).collect(),
            injected: i.inject_at,
            healed: None,
            detail: None,
            error: None,
        })
        .collect();
    let mut records: Vec<FaultRecord> = spans
        .iter()
        .map(|s| FaultRecord {
            name: s.name.clone(),
            kind: s.kind.to_owned(),
            targets: s.targets.clone(),
            ..Default::default()
        })
        .collect();
    // Faults aimed by role learn their targets when they start; heals use the same choice.
    let prober = timeline.instances.iter().any(|i| i.aim.is_some()).then(|| {
        RoleProber::new(
            spec,
            &nodes,
            backend.client_netns(),
            settings.postgres_password.as_ref(),
        )
    });
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let mut aimed: Vec<Option<FaultInstance>> = vec![None; timeline.instances.len()];
    let mut progress = Progress::new(settings.progress, epoch, window);
    let mut active = 0usize;
    let mut stop = Some(halted);
    let mut stopped = false;
    let mut suspend = settings.suspend.clone();
    // The window's clock: wall time since the epoch, less the time spent suspended.
    let mut paused = Duration::ZERO;
    let window_clock = |paused: Duration| epoch.elapsed().saturating_sub(paused);
    'timeline: for (at, step) in timeline.steps() {
        while window_clock(paused) < at {
            let left = at - window_clock(paused);
            let step_wait = left.min(Duration::from_millis(500));
            if wait_step(&mut stop, &mut suspend, step_wait).await {
                stopped = true;
                break 'timeline;
            }
            if let Some(held) = suspend.as_mut().filter(|s| *s.borrow()) {
                let open = open_faults(&timeline, &aimed, &spans, &records);
                let held = suspend::hold(backend, &open, held, &mut stop, epoch, paused).await;
                paused += held.pause;
                for (i, note) in held.notes {
                    add_notes(&mut spans[i], &mut records[i], vec![note]);
                }
                if held.stopped {
                    stopped = true;
                    break 'timeline;
                }
            }
            progress.show("Running", &counters, active);
        }
        match step {
            Step::Inject(i) => {
                let planned = &timeline.instances[i];
                // The deadline lives with the fault: even if this process dies, the data plane
                // reverts it shortly after the planned heal.
                let deadline = epoch
                    + paused
                    + planned.heal_at.unwrap_or(planned.inject_at)
                    + Duration::from_secs(2);
                spans[i].injected = epoch.elapsed();
                records[i].injected_at = Some(now());
                let mut aim_note = None;
                let instance = match (planned.aim, &prober) {
                    (Some(aim), Some(prober)) => {
                        let resolved = aim_at_leader(
                            spec,
                            planned,
                            aim,
                            prober,
                            &node_names,
                            settings.seed,
                            epoch,
                        )
                        .await;
                        match resolved {
                            Ok((instance, said)) => {
                                spans[i].targets = instance
                                    .targets
                                    .iter()
                                    .map(|t| node_names[*t].clone())
                                    .collect();
                                records[i].targets = spans[i].targets.clone();
                                aim_note = Some(said);
                                aimed[i] = Some(instance);
                                aimed[i].as_ref().unwrap_or(planned)
                            }
                            Err(e) => {
                                tracing::warn!(fault = %planned.name, error = %e, "no leader to aim at");
                                spans[i].error = Some(e.clone());
                                records[i].error = Some(e);
                                if planned.heal_at.is_none() {
                                    spans[i].healed = Some(epoch.elapsed());
                                }
                                continue;
                            }
                        }
                    }
                    _ => planned,
                };
                match backend.inject(i, instance, deadline).await {
                    Ok(detail) => {
                        active += usize::from(instance.heal_at.is_some());
                        // Who was hit and why first, then how.
                        let detail = match (aim_note.take(), detail) {
                            (Some(note), Some(how)) => Some(format!("{note}: {how}")),
                            (note, how) => note.or(how),
                        };
                        spans[i].detail = detail.clone();
                        records[i].detail = detail;
                    }
                    Err(e) => {
                        tracing::warn!(fault = %instance.name, error = %e, "injection failed");
                        spans[i].error = Some(e.clone());
                        records[i].error = Some(e);
                        add_notes(
                            &mut spans[i],
                            &mut records[i],
                            aim_note.take().into_iter().collect(),
                        );
                    }
                }
                if instance.heal_at.is_none() {
                    spans[i].healed = Some(epoch.elapsed());
                }
            }
            Step::Heal(i) => {
                let instance = aimed[i].as_ref().unwrap_or(&timeline.instances[i]);
                if instance.aim.is_some() && instance.targets.is_empty() {
                    // Aimed, but no leader was found: nothing was injected.
                    spans[i].healed = Some(epoch.elapsed());
                    continue;
                }
                let injected = spans[i].error.is_none();
                // Heal even after a failed injection: part of it may have landed (one pod's
                // rule of several), and healing what is not there is harmless.
                if let Err(e) = backend.heal(i, instance).await {
                    let error = match &spans[i].error {
                        Some(first) => format!("{first}; heal: {e}"),
                        None => format!("heal: {e}"),
                    };
                    spans[i].error = Some(error.clone());
                    records[i].error = Some(error);
                }
                if injected {
                    active = active.saturating_sub(1);
                }
                spans[i].healed = Some(epoch.elapsed());
                records[i].healed_at = Some(now());
                add_notes(&mut spans[i], &mut records[i], backend.notes(i));
            }
        }
        progress.show("Running", &counters, active);
    }
    while !stopped && window_clock(paused) < window {
        let left = (window - window_clock(paused)).min(Duration::from_millis(500));
        stopped = wait_step(&mut stop, &mut suspend, left).await;
        if let Some(held) = suspend.as_mut().filter(|s| *s.borrow()) {
            // No fault is open after the last heal; the clock is held all the same.
            let held = suspend::hold(backend, &[], held, &mut stop, epoch, paused).await;
            paused += held.pause;
            stopped = stopped || held.stopped;
        }
        progress.show("Running", &counters, active);
    }
    // An abort ends the window, not the run: recovery is measured and the history checked.
    let mut aborted = abort.tripped();
    if aborted.is_some() {
        stop = settings.stop.clone();
        stopped = stop.as_ref().is_some_and(|s| *s.borrow());
    }
    let _ = stop_sampling.send(true);
    let leftovers = backend.heal_all().await;
    if let Some(aborted) = &mut aborted {
        let healed = epoch.elapsed().as_millis() as i64;
        aborted.healed_millis = Some((healed - aborted.at_millis).max(0));
    }
    // Faults still open when the run stopped early get their notes too.
    for (i, instance) in timeline.instances.iter().enumerate() {
        if instance.heal_at.is_some()
            && spans[i].healed.is_none()
            && records[i].injected_at.is_some()
        {
            spans[i].healed = Some(epoch.elapsed());
            records[i].healed_at = Some(now());
            add_notes(&mut spans[i], &mut records[i], backend.notes(i));
        }
    }
    let _ = stop_workload.send(true);
    // Probes go on a little past the window so recovery after the last heal is measured.
    let tail = spec
        .assertions
        .as_ref()
        .and_then(|a| a.max_recovery)
        .map(|r| r.get() + Duration::from_secs(1))
        .unwrap_or(Duration::from_secs(1));
    let window_end = epoch.elapsed();
    while !stopped && epoch.elapsed() < window_end + tail {
        stopped = wait_unless_stopped(&mut stop, Duration::from_millis(200)).await;
        progress.show("Recovering", &counters, 0);
    }
    let _ = stop_probes.send(true);
    let mut sampled = before;
    for task in during {
        if let Ok(done) = task.await {
            sampled.push(done);
        }
    }
    if !stopped {
        sampled.extend(
            prometheus::evaluate_once(
                &prometheus_http,
                prometheus_url,
                of_kind(PrometheusWhen::After),
                epoch.elapsed(),
            )
            .await,
        );
    }
    let assertion_records: Vec<_> = sampled.iter().map(prometheus::Sampled::record).collect();
    let (recorded, probes) = tokio::task::spawn_blocking(move || {
        observers
            .join()
            .unwrap_or_else(|_| (Err("the workload thread crashed".into()), Vec::new()))
    })
    .await
    .unwrap_or_else(|e| {
        (
            Err(format!("the workload thread was lost: {e}")),
            Vec::new(),
        )
    });
    let (recorded, workload_error) = match recorded {
        Ok(recorded) => (Some(recorded), None),
        Err(e) => (None, Some(e)),
    };
    let ops_per_second =
        counters.done.load(Ordering::Relaxed) as f64 / window.as_secs_f64().max(1e-9);
    progress.finish();

    let mut recorded = recorded.unwrap_or_default();
    let consistency = match &spec.workload {
        Some(workload) => {
            let input = CheckInput {
                workload,
                asserted: spec
                    .assertions
                    .as_ref()
                    .map_or(ConsistencyAssertion::None, |a| a.consistency),
                stopped,
                workload_error,
            };
            let (summary, cancelled) = check_recorded(input, &mut recorded, settings).await;
            stopped |= cancelled;
            Some(summary)
        }
        None => None,
    };
    let availability = spec.availability.as_ref().map(|_| {
        summarize(
            &probes,
            Duration::ZERO,
            window,
            // Recovery counts from when the last fault was really healed, which can be later
            // than planned when an injection or heal was slow.
            spans.iter().filter_map(|s| s.healed).max().or(Some(window)),
            nodes.len(),
        )
    });
    let mut fault_errors: Vec<String> = spans
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name)))
        .collect();
    fault_errors.extend(leftovers.into_iter().map(|e| format!("final heal: {e}")));
    let Decision {
        mut verdict,
        mut reasons,
        checks,
    } = decide(
        &asserted,
        consistency.as_ref(),
        availability.as_ref(),
        &assertion_records,
        &fault_errors,
    );
    if let Some(aborted) = &aborted {
        verdict = crate::api::Verdict::Fail;
        reasons.insert(
            0,
            format!(
                "aborted at {:.1}s: {}",
                aborted.at_millis as f64 / 1e3,
                aborted.reason
            ),
        );
    }
    let mut checks = checks;
    if !spec.abort.is_empty() {
        checks.push(super::verdict::AssertionCheck {
            name: "no abort guard tripped".into(),
            state: match &aborted {
                Some(a) => super::verdict::AssertionState::Failed(a.reason.clone()),
                None => super::verdict::AssertionState::Held,
            },
            detail: None,
        });
    }
    if stopped {
        // What was recorded may still prove a violation; nothing less than Fail is final.
        if verdict == crate::api::Verdict::Pass {
            verdict = crate::api::Verdict::Inconclusive;
        }
        reasons.insert(
            0,
            "the run was stopped before the end of its chaos window and check".into(),
        );
    }
    let reasons = bounded_reasons(reasons);
    let omitted = records.len().saturating_sub(api::MAX_TIMELINE_ENTRIES);
    records.truncate(api::MAX_TIMELINE_ENTRIES);
    let status = ChaosStatus {
        phase: Some(Phase::Completed),
        verdict: Some(verdict),
        seed: Some(settings.seed as i64),
        start_time: Some(start_time),
        completion_time: Some(now()),
        faults: records,
        faults_omitted: (omitted > 0).then_some(omitted as i64),
        availability,
        consistency,
        assertions: assertion_records,
        abort: aborted,
        reasons,
        ..Default::default()
    };
    ExperimentOutcome {
        status,
        recorded,
        prometheus: sampled,
        probes,
        spans,
        timeline,
        nodes,
        ops_per_second,
        checks,
        stopped,
    }
}

/// The outcome of an experiment whose steady state did not hold before it: nothing was
/// injected, no workload ran, and the verdict is Inconclusive.
fn steady_state_not_met(
    before: Vec<prometheus::Sampled>,
    timeline: Timeline,
    nodes: Vec<NodeAddress>,
    settings: &RunSettings,
    start_time: Time,
) -> ExperimentOutcome {
    let records: Vec<_> = before.iter().map(prometheus::Sampled::record).collect();
    let mut reasons = vec![
        "the steady state did not hold before the experiment; no fault was injected".to_owned(),
    ];
    reasons.extend(records.iter().filter_map(|r| r.reason.clone()));
    let checks = records
        .iter()
        .map(super::verdict::prometheus_check)
        .collect();
    let status = ChaosStatus {
        phase: Some(Phase::Completed),
        verdict: Some(crate::api::Verdict::Inconclusive),
        seed: Some(settings.seed as i64),
        start_time: Some(start_time),
        completion_time: Some(now()),
        assertions: records,
        reasons: bounded_reasons(reasons),
        ..Default::default()
    };
    ExperimentOutcome {
        status,
        recorded: Recorded::default(),
        prometheus: before,
        probes: Vec::new(),
        spans: Vec::new(),
        timeline,
        nodes,
        ops_per_second: 0.0,
        checks,
        stopped: false,
    }
}

/// Appends what the backend noted about a fault to its timeline entry.
/// Asks who leads and re-plans `planned` around that node; returns it with the line the
/// timeline shows ("isolated n2, the leader at 10.0s").
async fn aim_at_leader(
    spec: &ChaosSpec,
    planned: &FaultInstance,
    aim: Aim,
    prober: &Result<RoleProber, String>,
    node_names: &[String],
    seed: u64,
    epoch: Instant,
) -> Result<(FaultInstance, String), String> {
    let prober = prober.as_ref().map_err(|e| format!("no role probe: {e}"))?;
    let leader = prober
        .leader()
        .await
        .map_err(|e| format!("cannot find the leader: {e}"))?;
    let instance = timeline::aim(spec, planned, node_names, seed, leader)
        .map_err(|e| format!("cannot aim at the leader: {e}"))?;
    let said = aim.describe(&node_names[leader], epoch.elapsed());
    Ok((instance, said))
}

fn add_notes(span: &mut FaultSpan, record: &mut FaultRecord, notes: Vec<String>) {
    if notes.is_empty() {
        return;
    }
    let joined = notes.join("; ");
    let detail = match &span.detail {
        Some(detail) => format!("{detail}; {joined}"),
        None => joined,
    };
    span.detail = Some(detail.clone());
    record.detail = Some(detail);
}

/// Most reasons kept in a status; the rest are counted in the last line.
const MAX_REASONS: usize = 20;

fn bounded_reasons(mut reasons: Vec<String>) -> Vec<String> {
    if reasons.len() > MAX_REASONS {
        let more = reasons.len() - (MAX_REASONS - 1);
        reasons.truncate(MAX_REASONS - 1);
        reasons.push(format!("… and {more} more (see the report)"));
    }
    reasons
}

/// The linearizability checker's model for the API's model; `None` for a transactional one.
pub fn check_model(model: api::ModelKind) -> Option<check::ModelKind> {
    match model {
        api::ModelKind::Register => Some(check::ModelKind::Register),
        api::ModelKind::CasRegister => Some(check::ModelKind::CasRegister),
        api::ModelKind::Kv => Some(check::ModelKind::Kv),
        api::ModelKind::ListAppend | api::ModelKind::RwRegister => None,
    }
}

/// Which node each worker of the transactional workload talks to: the readers (the first
/// `readers.clients` workers) take turns on the reader nodes, the others on the rest.
pub fn assign_txn_nodes(workload: &Workload, nodes: &[NodeAddress]) -> Result<Vec<usize>, String> {
    let workers = workload.concurrency.max(1) as usize;
    let Some(readers) = &workload.readers else {
        return Ok((0..workers).map(|w| w % nodes.len().max(1)).collect());
    };
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut reading = Vec::new();
    for (i, wanted) in readers.nodes.iter().enumerate() {
        match names.iter().position(|n| n == wanted) {
            Some(index) => reading.push(index),
            None => {
                return Err(format!(
                    "spec.workload.readers.nodes[{i}]: no target node is called {wanted:?} (nodes: {})",
                    names.join(", ")
                ));
            }
        }
    }
    let writing: Vec<usize> = (0..nodes.len()).filter(|n| !reading.contains(n)).collect();
    if writing.is_empty() {
        return Err("spec.workload.readers.nodes: names every target node; the writers need one that is not a reader's".into());
    }
    let count = (readers.clients.max(0) as usize).min(workers.saturating_sub(1));
    Ok((0..workers)
        .map(|w| {
            if w < count {
                reading[w % reading.len()]
            } else {
                writing[(w - count) % writing.len()]
            }
        })
        .collect())
}

/// Builds the transactional workload's clients, one per worker (a PostgreSQL session runs
/// one transaction at a time), each bound to its node by [`assign_txn_nodes`].
pub fn build_txn_clients(
    workload: &Workload,
    nodes: &[NodeAddress],
    password: Option<&Password>,
) -> Result<Vec<Arc<dyn TxnClient>>, String> {
    let http = reqwest::Client::builder()
        .connect_timeout(workload.timeout.get())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds");
    let readers = workload.readers.as_ref().map_or(0, |r| r.clients as usize);
    let assigned = assign_txn_nodes(workload, nodes)?;
    Ok(assigned
        .into_iter()
        .enumerate()
        .map(|(worker, node)| -> Arc<dyn TxnClient> {
            let node = &nodes[node];
            let reads_only = worker < readers;
            match (&workload.client, &workload.postgres) {
                (ClientKind::Postgres, Some(pg)) => {
                    let mut config = tokio_postgres::Config::new();
                    config
                        .host(&node.host)
                        .port(workload.port.unwrap_or(5432) as u16)
                        .user(&pg.user)
                        .dbname(&pg.database)
                        .application_name("schism")
                        .connect_timeout(workload.timeout.get());
                    if let Some(password) = password {
                        config.password(password.expose());
                    }
                    if reads_only {
                        let level = pg.reader_isolation.unwrap_or(pg.isolation);
                        Arc::new(PostgresTxnClient::new(config, isolation(level)).read_only())
                    } else {
                        Arc::new(PostgresTxnClient::new(config, isolation(pg.isolation)))
                    }
                }
                _ => Arc::new(EtcdTxnClient::new(
                    http.clone(),
                    &node.host,
                    workload.port.unwrap_or(2379) as u16,
                )),
            }
        })
        .collect())
}

fn isolation(level: IsolationLevel) -> Isolation {
    match level {
        IsolationLevel::ReadCommitted => Isolation::ReadCommitted,
        IsolationLevel::RepeatableRead => Isolation::RepeatableRead,
        IsolationLevel::Serializable => Isolation::Serializable,
    }
}

/// Gets every client's store ready (PostgreSQL: its table), retrying while the service is
/// still starting; gives up after a while with the last error.
async fn prepare_txn_clients(
    clients: &[Arc<dyn TxnClient>],
    timeout: Duration,
) -> Result<(), String> {
    let Some(first) = clients.first() else {
        return Ok(());
    };
    let give_up = Instant::now() + (timeout * 10).max(Duration::from_secs(10));
    loop {
        match tokio::time::timeout(timeout, first.prepare()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if Instant::now() >= give_up => {
                return Err(format!("the workload's store could not be prepared: {e}"));
            }
            Err(_) if Instant::now() >= give_up => {
                return Err(format!(
                    "the workload's store could not be prepared: no answer within {timeout:?}"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Builds the workload's clients, one per node.
pub fn build_clients(spec: &ChaosSpec, nodes: &[NodeAddress]) -> Vec<Arc<dyn KvClient>> {
    let Some(workload) = &spec.workload else {
        return Vec::new();
    };
    let integers = workload.model() != api::ModelKind::Kv;
    // No pooled retries or redirects: each operation is exactly one request.
    let http = reqwest::Client::builder()
        .connect_timeout(workload.timeout.get())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds");
    nodes
        .iter()
        .map(|node| -> Arc<dyn KvClient> {
            match workload.client {
                ClientKind::Etcd => {
                    let serializable =
                        workload.read_consistency == Some(ReadConsistency::Serializable);
                    Arc::new(EtcdClient::new(
                        http.clone(),
                        &node.host,
                        workload.port.unwrap_or(2379) as u16,
                        serializable,
                        integers,
                    ))
                }
                ClientKind::Redis => Arc::new(RedisClient::new(
                    &node.host,
                    workload.port.unwrap_or(6379) as u16,
                    integers,
                )),
                // Validated: postgres runs only transactional models, built above.
                ClientKind::Http | ClientKind::Postgres => Arc::new(HttpKvClient::new(
                    http.clone(),
                    &node.host,
                    workload.port.unwrap_or(80) as u16,
                    workload
                        .http
                        .clone()
                        .expect("validated: http templates present"),
                    integers,
                )),
            }
        })
        .collect()
}

/// What the client thread brings back: the history (or why it has holes) and every probe.
type Observations = (Result<Recorded, String>, Vec<ProbeSample>);

#[allow(clippy::too_many_arguments)]
fn spawn_observers(
    netns: Option<PathBuf>,
    spec: &ChaosSpec,
    nodes: &[NodeAddress],
    settings: &RunSettings,
    epoch: Instant,
    counters: Arc<WorkloadCounters>,
    workload_stopped: watch::Receiver<bool>,
    probes_stopped: watch::Receiver<bool>,
    live_probes: Option<tokio::sync::mpsc::UnboundedSender<ProbeSample>>,
) -> std::thread::JoinHandle<Observations> {
    let spec = spec.clone();
    let nodes = nodes.to_vec();
    let seed = settings.seed;
    let record = settings.record_history;
    let password = settings.postgres_password.clone();
    std::thread::Builder::new()
        .name("schism-clients".into())
        .spawn(move || {
            // Sockets belong to the namespace of the thread that opens them, so the clients get
            // a thread (and a single-threaded runtime) of their own inside the target's network.
            if let Some(path) = netns
                && let Err(e) =
                    crate::dataplane::Netns::open(&path).and_then(|ns| ns.enter_current_thread())
            {
                tracing::error!(error = %e, "cannot enter the clients' network namespace");
                return (
                    Err(format!("cannot enter the clients' network namespace: {e}")),
                    Vec::new(),
                );
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime builds");
            runtime.block_on(async move {
                let hosts: Vec<String> = nodes.iter().map(|n| n.host.clone()).collect();
                let probes = spec.availability.as_ref().map(|a| {
                    let kind = match (&a.tcp, &a.http) {
                        (Some(tcp), _) => ProbeKind::Tcp {
                            port: tcp.port as u16,
                        },
                        (_, Some(http)) => ProbeKind::Http {
                            port: http.port as u16,
                            path: http.path.clone(),
                            expect_status: http.expect_status as u16,
                        },
                        _ => ProbeKind::Tcp { port: 0 },
                    };
                    tokio::spawn(run_probes(
                        hosts.clone(),
                        kind,
                        a.interval.get(),
                        a.timeout.get(),
                        epoch,
                        probes_stopped,
                        live_probes,
                    ))
                });
                let workload = spec.workload.as_ref().map(|w| {
                    if let Some(model) = check_model(w.model()) {
                        let plan = WorkloadPlan {
                            concurrency: w.concurrency as usize,
                            rate: w.rate as u32,
                            keys: w.keys as usize,
                            model,
                            timeout: w.timeout.get(),
                            record,
                        };
                        let clients = build_clients(&spec, &nodes);
                        tokio::spawn(async move {
                            let ops = run_workload(
                                clients,
                                plan,
                                epoch,
                                seed,
                                counters,
                                workload_stopped,
                            )
                            .await?;
                            let mut history = History::new();
                            history.ops = ops;
                            history.model = Some(model);
                            Ok(Recorded::Objects {
                                history,
                                check: None,
                            })
                        })
                    } else {
                        let plan = TxnPlan {
                            model: super::consistency::txn_model(w.model()),
                            key_prefix: format!("s{seed}-{}/", unix_millis()),
                            concurrency: w.concurrency as usize,
                            rate: w.rate as u32,
                            active_keys: w.keys as usize,
                            writes_per_key: w.writes_per_key(),
                            max_steps: w.max_ops_per_txn(),
                            timeout: w.timeout.get(),
                            readers: w.readers.as_ref().map_or(0, |r| r.clients as usize),
                        };
                        let clients = build_txn_clients(w, &nodes, password.as_ref());
                        tokio::spawn(async move {
                            let clients = clients?;
                            // A writer prepares the store: readers may be on a read-only
                            // replica, which gets the table through replication.
                            let writer = plan.readers.min(clients.len().saturating_sub(1));
                            prepare_txn_clients(&clients[writer..], plan.timeout).await?;
                            let history = run_transactions(
                                clients,
                                plan,
                                epoch,
                                seed,
                                counters,
                                workload_stopped,
                            )
                            .await?;
                            Ok(Recorded::Transactions {
                                history,
                                check: None,
                            })
                        })
                    }
                });
                let ops = match workload {
                    Some(task) => task
                        .await
                        .unwrap_or_else(|e| Err(format!("the workload crashed: {e}"))),
                    None => Ok(Recorded::default()),
                };
                let samples = match probes {
                    Some(task) => task.await.unwrap_or_default(),
                    None => Vec::new(),
                };
                (ops, samples)
            })
        })
        .expect("a thread starts")
}

/// The live progress line: rewritten in place on a terminal, a line every 5 s otherwise.
struct Progress {
    enabled: bool,
    terminal: bool,
    epoch: Instant,
    window: Duration,
    last: Option<Instant>,
    last_done: u64,
}

impl Progress {
    fn new(enabled: bool, epoch: Instant, window: Duration) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            epoch,
            window,
            last: None,
            last_done: 0,
        }
    }

    fn show(&mut self, phase: &str, counters: &WorkloadCounters, active: usize) {
        if !self.enabled {
            return;
        }
        let every = if self.terminal {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        let since = self.last.map(|l| l.elapsed());
        if since.is_some_and(|s| s < every) {
            return;
        }
        let done = counters.done.load(Ordering::Relaxed);
        let rate = since
            .map(|s| (done - self.last_done) as f64 / s.as_secs_f64())
            .unwrap_or(0.0);
        self.last = Some(Instant::now());
        self.last_done = done;
        let line = format!(
            "{phase:<10} {:>6.1}s / {}  {rate:>7.0} ops/s  {done} ops ({} unknown)  {active} fault(s) active",
            self.epoch.elapsed().as_secs_f64(),
            api::duration::format(self.window),
            counters.unknown.load(Ordering::Relaxed)
        );
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(yaml: &str) -> Workload {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn nodes(n: usize) -> Vec<NodeAddress> {
        (1..=n)
            .map(|i| NodeAddress {
                name: format!("n{i}"),
                host: format!("10.0.0.{i}"),
            })
            .collect()
    }

    #[test]
    fn readers_take_turns_on_their_nodes_and_writers_on_the_others() {
        let w = workload(
            "{client: postgres, model: list-append, concurrency: 5, readers: {nodes: [n3], clients: 2}, postgres: {user: u}}",
        );
        assert_eq!(assign_txn_nodes(&w, &nodes(3)).unwrap(), [2, 2, 0, 1, 0]);
        let plain = workload("{client: etcd, model: list-append, concurrency: 4}");
        assert_eq!(assign_txn_nodes(&plain, &nodes(3)).unwrap(), [0, 1, 2, 0]);
    }

    #[test]
    fn readers_of_unknown_or_every_node_are_refused_by_field() {
        let unknown = workload(
            "{client: etcd, model: list-append, concurrency: 3, readers: {nodes: [pg-9], clients: 1}}",
        );
        let e = assign_txn_nodes(&unknown, &nodes(2)).unwrap_err();
        assert!(
            e.starts_with("spec.workload.readers.nodes[0]: no target node is called \"pg-9\""),
            "{e}"
        );
        let all = workload(
            "{client: etcd, model: list-append, concurrency: 3, readers: {nodes: [n1, n2], clients: 1}}",
        );
        let e = assign_txn_nodes(&all, &nodes(2)).unwrap_err();
        assert!(e.contains("writers need one"), "{e}");
    }
}
