//! The checker's frontier: single-register CAS histories full of unknown outcomes (a
//! partition's shape or scattered), with failed CASes, linearizable or with one planted
//! violation, each checked by a whole `schism check` process. Prints wall time, peak RSS and
//! the verdict next to the one known by construction.
//!
//! `cargo bench --bench check_frontier`. `SCHISM_BENCH_QUICK=1` runs the small sizes only;
//! `SCHISM_BENCH_TIMEOUT=30s` changes the per-file budget (default 10 s, the target);
//! `SCHISM_BENCH_KEEP=DIR` keeps the generated files there; `SCHISM_BENCH_OPS=100000` runs
//! only the cases of that size.

#[path = "support/check_process.rs"]
mod check_process;
#[path = "../tests/common/history_gen.rs"]
mod history_gen;
#[path = "../tests/common/register_frontier.rs"]
mod register_frontier;

use check_process::run_check;
use register_frontier::{Plant, Shape, Unknowns, generate_some, to_jepsen_log};
use schism::check::formats::write_native;

struct Case {
    ops: usize,
    clients: usize,
    unknown: u64,
    unknowns: Unknowns,
    jepsen: bool,
}

fn main() {
    let quick = std::env::var_os("SCHISM_BENCH_QUICK").is_some();
    let timeout = std::env::var("SCHISM_BENCH_TIMEOUT").unwrap_or_else(|_| "10s".into());
    let keep = std::env::var_os("SCHISM_BENCH_KEEP").map(std::path::PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("schism-bench-frontier-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).expect("temp dir");

    let mut cases = vec![
        Case {
            ops: 2_000,
            clients: 12,
            unknown: 20,
            unknowns: Unknowns::Partition,
            jepsen: false,
        },
        Case {
            ops: 1_000,
            clients: 8,
            unknown: 10,
            unknowns: Unknowns::Scattered,
            jepsen: false,
        },
        Case {
            ops: 5_000,
            clients: 16,
            unknown: 25,
            unknowns: Unknowns::Partition,
            jepsen: true,
        },
        Case {
            ops: 10_000,
            clients: 16,
            unknown: 25,
            unknowns: Unknowns::Partition,
            jepsen: false,
        },
        Case {
            ops: 10_000,
            clients: 32,
            unknown: 40,
            unknowns: Unknowns::Scattered,
            jepsen: false,
        },
    ];
    if !quick {
        cases.extend([
            Case {
                ops: 20_000,
                clients: 16,
                unknown: 25,
                unknowns: Unknowns::Partition,
                jepsen: true,
            },
            Case {
                ops: 100_000,
                clients: 8,
                unknown: 10,
                unknowns: Unknowns::Partition,
                jepsen: true,
            },
            Case {
                ops: 100_000,
                clients: 32,
                unknown: 40,
                unknowns: Unknowns::Partition,
                jepsen: false,
            },
            Case {
                ops: 100_000,
                clients: 16,
                unknown: 25,
                unknowns: Unknowns::Scattered,
                jepsen: false,
            },
        ]);
    }

    if let Some(only) = std::env::var("SCHISM_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        cases.retain(|c| c.ops == only);
    }
    println!("single-register CAS histories, whole `schism check` process, budget {timeout}");
    println!(
        "{:>7} {:>7} {:>4} {:>9} {:>6}  {:<24} {:>7} {:>8} {:<17} right",
        "ops", "clients", "unk", "shape", "format", "planted", "wall s", "RSS MiB", "verdict"
    );
    let (mut right, mut total, mut slowest, mut largest_rss) = (0, 0, 0.0f64, 0.0f64);
    for case in &cases {
        for plant in Plant::ALL {
            let shape = Shape {
                ops: case.ops,
                clients: case.clients,
                unknown_percent: case.unknown,
                unknowns: case.unknowns,
                plant,
                seed: case.ops as u64 * 31 + case.clients as u64,
            };
            let (history, _seed) = generate_some(&shape);
            let (text, ext) = if case.jepsen {
                (to_jepsen_log(&history, case.clients), "log")
            } else {
                (write_native(&history), "jsonl")
            };
            let shape_name = match case.unknowns {
                Unknowns::Partition => "partition",
                Unknowns::Scattered => "scattered",
            };
            let path = dir.join(format!(
                "{}-{}-{}-{shape_name}-{}.{ext}",
                case.ops,
                case.clients,
                case.unknown,
                plant.name()
            ));
            std::fs::write(&path, text).expect("write history");
            let (wall, rss, json) = run_check(
                &["--model", "cas-register", "--json", "--timeout", &timeout],
                &path,
            );
            let verdict = json["verdict"].as_str().unwrap_or("?").to_string();
            // A Jepsen log can only say `:fail` of a CAS whose comparison failed, and readers
            // drop `:fail` lines: without that CAS the history is the linearizable one.
            let expressible = !(case.jepsen && plant == Plant::FailedCasDuringValue);
            let expected = if plant.linearizable() || !expressible {
                "linearizable"
            } else {
                "not-linearizable"
            };
            let ok = verdict == expected;
            total += 1;
            right += usize::from(ok);
            slowest = slowest.max(wall);
            largest_rss = largest_rss.max(rss);
            println!(
                "{:>7} {:>7} {:>3}% {shape_name:>9} {:>6}  {:<24} {wall:>7.2} {rss:>8.1} {verdict:<17} {}",
                case.ops,
                case.clients,
                case.unknown,
                if case.jepsen { "jepsen" } else { "native" },
                plant.name(),
                if ok { "yes" } else { "NO" }
            );
            if keep.is_none() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    println!();
    println!(
        "{right} of {total} definite and right; slowest {slowest:.2} s, largest peak RSS {largest_rss:.0} MiB \
         (targets: all right, each ≤ 10 s, ≤ 1024 MiB)"
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
