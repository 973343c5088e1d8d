//! Data-plane figures (run as root: `cargo bench --bench dataplane`):
//! * time from decision to rules active when applying / healing a partition across 5 nodes
//!   (targets: apply < 20 ms, heal < 40 ms);
//! * latency fidelity: requested vs measured added round trip at 50 ms and 200 ms
//!   (target: within 5 %).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use schism::dataplane::{self, FaultId, FaultKind, LatencySpec, PartitionSpec};
use schism::faultplan::{PartitionShape, plan_partition, rng_from_seed};
use support::{TestNet, require};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn partition_timing(net: &TestNet) {
    let names: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
    let rounds = 30;
    let mut apply_ms = Vec::new();
    let mut heal_ms = Vec::new();
    for round in 0..rounds {
        let plan = plan_partition(
            &PartitionShape::MajorityMinority,
            &names,
            &mut rng_from_seed(round),
        )
        .unwrap();
        let targets: Vec<_> = plan
            .affected_nodes()
            .into_iter()
            .map(|node| {
                let drop_peers = plan.drops(node).iter().map(|&peer| net.ips[peer]).collect();
                (net.netns(node), PartitionSpec { drop_peers })
            })
            .collect();
        let id = FaultId::new(format!("bench{round}")).unwrap();
        let started = Instant::now();
        let faults =
            dataplane::apply_partitions(&targets, &id, Instant::now() + Duration::from_secs(60))
                .unwrap();
        apply_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        for result in dataplane::heal_all(faults) {
            result.unwrap();
        }
        heal_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for (label, samples, target) in [("apply", &mut apply_ms, 20.0), ("heal", &mut heal_ms, 40.0)] {
        samples.sort_by(f64::total_cmp);
        println!(
            "partition {label} across 5 nodes ({rounds} rounds): median {:.1} ms, p90 {:.1} ms, max {:.1} ms (target < {target} ms)",
            percentile(samples, 0.5),
            percentile(samples, 0.9),
            samples[samples.len() - 1],
        );
    }
}

fn average_rtt_ms(net: &TestNet, count: u32) -> f64 {
    let (loss, rtt) = net.ping(0, net.ips[1], count, "0.02");
    assert_eq!(loss, 0.0, "ping lost packets");
    rtt.unwrap().as_secs_f64() * 1000.0
}

fn latency_fidelity(net: &TestNet) {
    let baseline = average_rtt_ms(net, 50);
    println!("baseline RTT: {baseline:.3} ms");
    for requested in [50u64, 200] {
        let spec = LatencySpec {
            delay: Duration::from_millis(requested),
            jitter: Duration::ZERO,
            from_peers: vec![],
            backend: None,
        };
        let id = FaultId::new(format!("fidelity{requested}")).unwrap();
        let fault = dataplane::apply_latency(
            &net.netns(1),
            &id,
            &spec,
            Instant::now() + Duration::from_secs(120),
        )
        .unwrap();
        let FaultKind::Latency(backend) = fault.kind() else {
            unreachable!()
        };
        let measured = average_rtt_ms(net, 50) - baseline;
        fault.heal().unwrap();
        let error = (measured - requested as f64) / requested as f64 * 100.0;
        println!(
            "latency {requested} ms via {backend}: measured +{measured:.2} ms added RTT ({error:+.2} %, target within ±5 %)"
        );
    }
}

fn main() {
    require("dataplane bench", &["ip", "nft", "tc", "iptables", "ping"]);
    let net = TestNet::new(5);
    partition_timing(&net);
    latency_fidelity(&net);
}
