//! A PostgreSQL server for a test: initialised and run as the `postgres` user (it refuses to
//! run as root), listening on one address the test chose — inside one of its network
//! namespaces, or on a loopback address — and stopped and deleted on drop.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How clients authenticate.
pub enum Auth<'a> {
    /// Any client from anywhere, no password.
    Trust,
    /// SCRAM with this password for the `postgres` role.
    Password(&'a str),
}

/// A running server.
pub struct PostgresServer {
    child: Child,
    dir: PathBuf,
}

impl PostgresServer {
    /// Starts a server on `address:port`, in network namespace `netns` if given; `tag`
    /// names its directory.
    pub fn start(
        tag: &str,
        netns: Option<&str>,
        address: Ipv4Addr,
        port: u16,
        auth: Auth<'_>,
    ) -> PostgresServer {
        let bin = super::postgres_bin();
        let dir = std::env::temp_dir().join(format!("schism-pg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        super::run("chown", &["postgres:postgres", dir.to_str().unwrap()]);
        let data = dir.join("data");
        let mut initdb = Command::new("runuser");
        initdb
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-U", "postgres", "--no-sync", "-D"])
            .arg(&data);
        let method = match auth {
            Auth::Trust => {
                initdb.args(["-A", "trust"]);
                "trust"
            }
            Auth::Password(password) => {
                let file = dir.join("password");
                std::fs::write(&file, password).unwrap();
                super::run("chown", &["postgres:postgres", file.to_str().unwrap()]);
                initdb.args(["-A", "scram-sha-256", "--pwfile"]).arg(&file);
                "scram-sha-256"
            }
        };
        let init = initdb.output().expect("run initdb");
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str(&format!("host all all 0.0.0.0/0 {method}\n"));
        std::fs::write(&hba, rules).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "runuser"]);
                c
            }
            None => Command::new("runuser"),
        };
        let child = command
            .args(["-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", &format!("listen_addresses={address}")])
            .args(["-c", &format!("port={port}")])
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            // Two keys appended in both orders deadlock often; find out in 20 ms, not 1 s.
            .args(["-c", "deadlock_timeout=20ms"])
            .args(["-c", &format!("unix_socket_directories={}", dir.display())])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        PostgresServer { child, dir }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // The postmaster writes its pid first in postmaster.pid; signal it there, whatever
        // the process tree between it and this test looks like. SIGINT is its fast shutdown.
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        let alive = |pid: i32| unsafe { libc::kill(pid, 0) } == 0;
        if let Some(pid) = pid {
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                let _ = self.child.try_wait();
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                // Immediate shutdown: it still takes its children with it.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
