//! Shared helpers for the tests that run real network namespaces (as root).
//!
//! Every namespace a test creates has a unique name (`sxt<pid><n>-…`) and is deleted in `Drop`,
//! also when the test fails. Traffic only ever goes between these namespaces.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub mod postgres;

/// A two-thread runtime, for tests that drive local clusters.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The directory of Debian's PostgreSQL programs (kept out of PATH, under the major
/// version); fails loudly when PostgreSQL is not installed.
pub fn postgres_bin() -> std::path::PathBuf {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): \
             scripts/install-deps.sh installs postgresql-15"
        )
    })
}

/// Fails the test, loudly, when a prerequisite is missing: root, or one of `programs`. The
/// test command installs every one of them; a test that quietly passed without its real
/// dependency would prove nothing.
pub fn require(test: &str, programs: &[&str]) {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    for program in programs {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|dir| std::path::Path::new(dir).join(program).exists());
        if !found {
            missing.push(format!("`{program}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "{test} needs {} (scripts/install-deps.sh installs them; run the tests as root)",
        missing.join(", ")
    );
}

fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "sxt{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command and panics with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect(program);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// N namespaces with one veth each on a bridge that lives in its own namespace.
pub struct TestNet {
    pub prefix: String,
    pub names: Vec<String>,
    pub ips: Vec<Ipv4Addr>,
    bridge: String,
}

impl TestNet {
    pub fn new(nodes: usize) -> Self {
        let prefix = unique_prefix();
        let bridge = format!("{prefix}-br");
        let mut net = TestNet {
            names: Vec::new(),
            ips: Vec::new(),
            bridge: bridge.clone(),
            prefix: prefix.clone(),
        };
        run("ip", &["netns", "add", &bridge]);
        run(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        for index in 1..=nodes {
            let name = format!("{prefix}-n{index}");
            let ip = Ipv4Addr::new(10, 240, 0, index as u8);
            run("ip", &["netns", "add", &name]);
            net.names.push(name.clone());
            net.ips.push(ip);
            let port = format!("v{index}");
            run(
                "ip",
                &[
                    "link", "add", "eth0", "netns", &name, "type", "veth", "peer", "name", &port,
                    "netns", &bridge,
                ],
            );
            run(
                "ip",
                &["-n", &bridge, "link", "set", &port, "master", "br0"],
            );
            run("ip", &["-n", &bridge, "link", "set", &port, "up"]);
            run(
                "ip",
                &[
                    "-n",
                    &name,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", &name, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        }
        net
    }

    pub fn path(&self, node: usize) -> String {
        format!("/run/netns/{}", self.names[node])
    }

    pub fn netns(&self, node: usize) -> schism::dataplane::Netns {
        schism::dataplane::Netns::open(self.path(node)).expect("open netns")
    }

    /// Runs a program inside node `node`'s namespace.
    pub fn exec(&self, node: usize, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.names[node], program])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Pings `to` from node `from`; returns (packet loss %, average RTT).
    pub fn ping(
        &self,
        from: usize,
        to: Ipv4Addr,
        count: u32,
        interval: &str,
    ) -> (f64, Option<Duration>) {
        let output = self.exec(
            from,
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                interval,
                "-W",
                "1",
                &to.to_string(),
            ],
        );
        parse_ping(&String::from_utf8_lossy(&output.stdout))
    }

    /// True when a few pings from `from` to `to` all get answers.
    pub fn reachable(&self, from: usize, to: usize) -> bool {
        let (loss, _) = self.ping(from, self.ips[to], 3, "0.05");
        loss == 0.0
    }

    /// True when no ping from `from` to `to` gets an answer.
    pub fn unreachable(&self, from: usize, to: usize) -> bool {
        let (loss, _) = self.ping(from, self.ips[to], 3, "0.05");
        loss == 100.0
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for name in self.names.iter().chain(std::iter::once(&self.bridge)) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Parses ping's summary: loss percentage and average round trip.
pub fn parse_ping(text: &str) -> (f64, Option<Duration>) {
    let loss = text
        .split(", ")
        .find(|part| part.ends_with("packet loss"))
        .and_then(|part| part.split('%').next())
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or(100.0);
    let average = text
        .lines()
        .find(|line| line.starts_with("rtt"))
        .and_then(|line| line.split(" = ").nth(1))
        .and_then(|values| values.split('/').nth(1))
        .and_then(|avg| avg.parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0));
    (loss, average)
}
