//! Debian's Prometheus on loopback, scraping the targets it is given: started by the tests
//! and benchmarks that need a real one, killed and its directory removed on drop (also when
//! a test fails).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running Prometheus.
pub struct PrometheusServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PrometheusServer {
    /// Scrapes each `(job, host:port)` every `interval` (`500ms`, `1s`); the address `self`
    /// is this Prometheus.
    pub fn start(name: &str, targets: &[(&str, String)], interval: &str) -> PrometheusServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("schism-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = format!(
            "global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\nscrape_configs:\n"
        );
        for (job, address) in targets {
            let address = match address.as_str() {
                "self" => format!("127.0.0.1:{port}"),
                other => other.to_owned(),
            };
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{targets: ['{address}']}}]\n"
            ));
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("`prometheus` runs (scripts/install-deps.sh installs it)");
        PrometheusServer { child, dir, port }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
