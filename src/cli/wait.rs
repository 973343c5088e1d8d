//! `schism wait NAME` and `schism report NAME`: CI gating on a Chaos in a cluster, with the
//! usual kubeconfig.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use crate::api::{Chaos, ChaosStatus, Phase, Verdict};
use crate::operator::runner::report_store;

/// Arguments of `schism wait`.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// The Chaos.
    pub name: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Give up after this long (exit 2).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `schism report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The Chaos.
    pub name: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Where to write junit.xml, report.html, history.jsonl and result.json.
    #[arg(short, long, default_value = ".")]
    pub out: PathBuf,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::api::duration::parse(text).map_err(|e| e.to_string())
}

async fn api(namespace: &Option<String>) -> Result<(Client, String), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let namespace = namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    Ok((client, namespace))
}

/// The exit code of a verdict: 0 Pass, 1 Fail, 2 Inconclusive.
pub fn exit_code(status: &ChaosStatus) -> i32 {
    match (status.phase, status.verdict) {
        (_, Some(Verdict::Pass)) => 0,
        (_, Some(Verdict::Fail)) => 1,
        _ => 2,
    }
}

/// The printed summary of a concluded Chaos.
pub fn summary(name: &str, status: &ChaosStatus) -> String {
    let mut out = format!(
        "{name}: {} {}\n",
        status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        status.verdict.map(|v| format!("{v:?}")).unwrap_or_default()
    );
    if let Some(a) = &status.availability {
        out.push_str(&format!(
            "  availability {:.3} ({} of {} probes), recovery {}\n",
            a.ratio,
            a.successes,
            a.probes,
            a.recovery_ms
                .map(|r| format!("{r} ms"))
                .unwrap_or_else(|| "never".into())
        ));
    }
    if let Some(c) = &status.consistency {
        out.push_str(&format!(
            "  consistency {:?} ({}, {} ops, {} unknown)\n",
            c.result, c.model, c.operations, c.indeterminate
        ));
    }
    for reason in &status.reasons {
        out.push_str(&format!("  reason: {reason}\n"));
    }
    out
}

/// Waits for the verdict; returns the exit code.
pub fn wait(args: &WaitArgs) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    runtime.block_on(async {
        let (client, namespace) = match api(&args.namespace).await {
            Ok(found) => found,
            Err(e) => {
                eprintln!("schism wait: {e}");
                return 2;
            }
        };
        let chaoses: Api<Chaos> = Api::namespaced(client, &namespace);
        let started = Instant::now();
        loop {
            match chaoses.get_opt(&args.name).await {
                Ok(Some(chaos)) => {
                    let status = chaos.status.unwrap_or_default();
                    // A concluded Chaos that is being deleted is an earlier run's, not this one's.
                    if chaos.metadata.deletion_timestamp.is_none()
                        && matches!(status.phase, Some(Phase::Completed | Phase::Error))
                        && status.observed_generation == chaos.metadata.generation
                    {
                        print!("{}", summary(&args.name, &status));
                        return exit_code(&status);
                    }
                }
                Ok(None) => {
                    eprintln!(
                        "schism wait: chaos {} not found in namespace {namespace}",
                        args.name
                    );
                    return 2;
                }
                Err(e) => eprintln!("schism wait: {e}; retrying"),
            }
            if started.elapsed() > args.timeout {
                eprintln!(
                    "schism wait: no verdict for {} within {:?}",
                    args.name, args.timeout
                );
                return 2;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// Writes the stored report's files; returns the exit code.
pub fn report(args: &ReportArgs) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    runtime.block_on(async {
        let (client, namespace) = match api(&args.namespace).await {
            Ok(found) => found,
            Err(e) => {
                eprintln!("schism report: {e}");
                return 2;
            }
        };
        let chaos = match Api::<Chaos>::namespaced(client.clone(), &namespace)
            .get(&args.name)
            .await
        {
            Ok(chaos) => chaos,
            Err(e) => {
                eprintln!("schism report: chaos {}: {e}", args.name);
                return 2;
            }
        };
        let Some(name) = chaos
            .status
            .as_ref()
            .and_then(|s| s.report.as_ref())
            .and_then(|r| r.config_map.clone())
        else {
            eprintln!("schism report: {} has no stored report yet", args.name);
            return 2;
        };
        let config_map = match Api::<ConfigMap>::namespaced(client, &namespace)
            .get(&name)
            .await
        {
            Ok(config_map) => config_map,
            Err(e) => {
                eprintln!("schism report: config map {name}: {e}");
                return 2;
            }
        };
        match write_report_files(&config_map, &args.out) {
            Ok(files) => {
                for file in files {
                    println!("{}", file.display());
                }
                0
            }
            Err(e) => {
                eprintln!("schism report: {e}");
                2
            }
        }
    })
}

/// Unpacks a report ConfigMap into files.
pub fn write_report_files(
    config_map: &ConfigMap,
    out: &std::path::Path,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut files = Vec::new();
    for (key, text) in config_map.data.iter().flatten() {
        let path = out.join(key);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        files.push(path);
    }
    for (key, bytes) in config_map.binary_data.iter().flatten() {
        let name = key.strip_suffix(".gz").unwrap_or(key);
        let data = report_store::gunzip(&bytes.0).map_err(|e| format!("{key} is not gzip: {e}"))?;
        let path = out.join(name);
        std::fs::write(&path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}
