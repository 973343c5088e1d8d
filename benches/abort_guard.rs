//! Time from an abort guard's trip to every fault healed, and from the breach to the trip:
//! `schism run` of a one-node Redis whose node loses every packet, guarded by a rolling
//! availability window. Prints figures over several runs; run as root with
//! `cargo bench --bench abort_guard` (`SCHISM_BENCH_QUICK=1` for three runs).

use std::process::Command;

const MANIFEST: &str = r#"apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata:
  name: abort-bench
spec:
  target:
    local:
      nodes: 1
      command: redis-server --bind {ip} --port 6379 --save '' --appendonly no
      ready: {tcp: {port: 6379}}
  duration: 10s
  faults:
    - name: lose-everything
      loss: {percent: 100}
      start: 1s
      duration: 6s
  availability:
    tcp: {port: 6379}
    interval: 100ms
    timeout: 400ms
  abort:
    - availability: {below: 0.5, over: 1s}
"#;

fn summary(name: &str, mut values: Vec<i64>) {
    values.sort();
    let median = values[values.len() / 2];
    println!(
        "{name:<38} min {:>5} ms  median {median:>5} ms  max {:>5} ms  ({} runs)",
        values[0],
        values[values.len() - 1],
        values.len()
    );
}

fn main() {
    let runs = if std::env::var_os("SCHISM_BENCH_QUICK").is_some() {
        3
    } else {
        10
    };
    let dir = std::env::temp_dir().join(format!("schism-abort-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("abort-bench.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let (mut healed, mut detected) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let out = dir.join(format!("run{run}"));
        let status = Command::new(env!("CARGO_BIN_EXE_schism"))
            .args(["run", "--quiet", "--out"])
            .arg(&out)
            .arg(&manifest)
            .output()
            .expect("schism runs");
        let result: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("result.json")).unwrap_or_else(|e| {
                panic!(
                    "no result.json ({e}): {}",
                    String::from_utf8_lossy(&status.stderr)
                )
            }),
        )
        .unwrap();
        let abort = &result["abort"];
        let at = abort["atMillis"].as_i64().expect("the guard tripped");
        healed.push(
            abort["healedMillis"]
                .as_i64()
                .expect("healed after the trip"),
        );
        // The fault began at 1 s; the window of 1 s must fill with failures past half.
        detected.push(at - 1000);
    }
    println!("abort guard: availability below 0.5 over 1s, probes every 100 ms, timeout 400 ms");
    summary("trip to every fault healed", healed);
    summary("fault start to trip (window + timeout)", detected);
    let _ = std::fs::remove_dir_all(&dir);
}
