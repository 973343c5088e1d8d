//! The availability probe's figures against a fault of known effect: one node of three
//! unreachable for exactly 3 s of an 8 s window must show as a 3 s outage and about one
//! eighth of the probes failing.

mod support;

use std::process::Command;

const EXPERIMENT: &str = r#"
apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata: {name: probe-known-effect}
spec:
  target:
    local:
      nodes: 3
      command: redis-server --bind {ip} --port 6379 --dir {dataDir} --save "" --appendonly no --protected-mode no
      ready: {tcp: {port: 6379}}
  duration: 8s
  seed: 11
  faults:
    - name: blackhole
      loss: {percent: 100, targets: {mode: fixed, value: 1}}
      start: 2s
      duration: 3s
  availability:
    tcp: {port: 6379}
    interval: 50ms
    timeout: 100ms
  assertions:
    minAvailability: 0.5
    maxRecovery: 2s
"#;

#[test]
fn a_three_second_blackhole_of_one_node_in_three_shows_as_such() {
    support::require(
        "a_three_second_blackhole_of_one_node_in_three_shows_as_such",
        &["redis-server", "nft", "ip"],
    );
    let dir = std::env::temp_dir().join(format!("schism-probe-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("experiment.yaml");
    std::fs::write(&manifest, EXPERIMENT).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_schism"))
        .args(["run", "--quiet", "--out"])
        .arg(dir.join("out"))
        .arg(&manifest)
        .output()
        .unwrap();
    let result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/result.json")).unwrap_or_else(|e| {
            panic!(
                "no result.json ({e}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        }),
    )
    .unwrap();
    let availability = &result["availability"];
    let ratio = availability["ratio"].as_f64().unwrap();
    let outage = availability["longestOutageMs"].as_i64().unwrap();
    let recovery = availability["recoveryMs"].as_i64().unwrap();
    // 1 node of 3 down for 3 s of 8 s: 1 - 3/24 = 0.875 of the probes answer.
    assert!(
        (ratio - 0.875).abs() < 0.04,
        "ratio {ratio}, expected 0.875 ± 0.04: {availability}"
    );
    // The outage is the fault's length, give or take a probe interval and a probe timeout.
    assert!(
        (2850..=3300).contains(&outage),
        "longest outage {outage} ms, expected about 3000: {availability}"
    );
    assert!(
        recovery <= 300,
        "recovery {recovery} ms after the heal, expected at most 300: {availability}"
    );
    assert_eq!(result["verdict"], "Pass", "{result}");
    assert_eq!(result["faults"][0]["detail"], "nftables", "{result}");
    let _ = std::fs::remove_dir_all(&dir);
}
