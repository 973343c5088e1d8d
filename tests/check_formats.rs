//! Readers and the `schism check` command: malformed input gives an error with its line and
//! never a panic; the native format round-trips what the docs promise; exit statuses.

use std::path::{Path, PathBuf};

use clap::Parser;
use schism::check::formats::{Format, read_bytes, read_str};
use schism::check::{CheckOptions, ModelKind, Verdict, check_history, html};
use schism::cli::check::{CheckArgs, run};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/porcupine")
        .join(rel)
}

fn error_line(text: &str, format: Format) -> Option<usize> {
    read_str(text, format).err().and_then(|e| e.line())
}

#[test]
fn an_empty_file_is_an_error_not_an_empty_pass() {
    assert_eq!(error_line("", Format::Auto), Some(1));
    assert_eq!(error_line("\n\n  \n", Format::Auto), Some(1));
    assert!(read_str("", Format::Native).is_err());
}

#[test]
fn binary_junk_is_rejected_with_a_line_number() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let err = read_bytes(&junk, Format::Auto).unwrap_err();
    assert!(err.line().is_some(), "{err}");
}

#[test]
fn huge_numbers_are_rejected_with_their_line() {
    let text = "{\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1,\"invoke\":1,\"complete\":2}\n\
                {\"process\":1,\"type\":\"ok\",\"f\":\"write\",\"value\":1e400,\"invoke\":1,\"complete\":2}\n";
    assert_eq!(error_line(text, Format::Auto), Some(2));
    let text = "{\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1,\"invoke\":99999999999999999999999,\"complete\":2}";
    assert_eq!(error_line(text, Format::Auto), Some(1));
    let text = "INFO  jepsen.util - 1\t:invoke\t:write\t1\nINFO  jepsen.util - 99999999999999999999\t:invoke\t:read\tnil\n";
    assert_eq!(error_line(text, Format::Auto), Some(2));
    let text = "{:process 0, :type :invoke, :f :put, :key \"1\", :value 123456789012345678901234}";
    assert_eq!(error_line(text, Format::Auto), Some(1));
}

#[test]
fn unknown_functions_are_rejected_with_their_line() {
    let text = "{\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1,\"invoke\":1,\"complete\":2}\n\
                {\"process\":0,\"type\":\"ok\",\"f\":\"increment\",\"invoke\":3,\"complete\":4}\n";
    let err = read_str(text, Format::Auto).unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert!(err.to_string().contains("increment"));
    let text = "INFO  jepsen.util - 1\t:invoke\t:incr\t1\n";
    assert_eq!(error_line(text, Format::Auto), Some(1));
    let text = "{:process 0, :type :invoke, :f :incr, :key \"1\", :value 1}";
    assert_eq!(error_line(text, Format::Auto), Some(1));
}

#[test]
fn pairing_errors_name_the_line() {
    // A completion with no invocation.
    let text = "INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 2\t:ok\t:read\t1\n";
    assert_eq!(error_line(text, Format::Jepsen), Some(2));
    // Two invocations outstanding on one process.
    let text =
        "INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:invoke\t:read\tnil\n";
    assert_eq!(error_line(text, Format::Jepsen), Some(2));
}

#[test]
fn a_function_the_model_lacks_is_a_model_error_with_its_line() {
    let text = "{\"process\":0,\"type\":\"ok\",\"f\":\"append\",\"key\":\"a\",\"value\":\"x\",\"invoke\":1,\"complete\":2}\n";
    let h = read_str(text, Format::Native).expect("readable");
    let err = check_history(&h, &CheckOptions::new(ModelKind::CasRegister)).unwrap_err();
    assert_eq!(err.line, 1);
}

#[test]
fn mangled_corpus_lines_never_panic() {
    // Take real files and corrupt them in many small ways: every reader and the checker must
    // answer with a verdict or an error, never a panic.
    let mut seed = 1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for file in ["jepsen/etcd_001.log", "kv/c01-bad.txt"] {
        let text = std::fs::read_to_string(data(file)).expect("corpus file");
        for _ in 0..300 {
            let mut bytes = text.as_bytes().to_vec();
            for _ in 0..1 + rnd() % 4 {
                if bytes.is_empty() {
                    break;
                }
                let i = (rnd() as usize) % bytes.len();
                match rnd() % 4 {
                    0 => bytes[i] = (rnd() % 256) as u8,
                    1 => {
                        bytes.remove(i);
                    }
                    2 => {
                        let specials = b"{}[]:\"\\ 9-\n";
                        bytes.insert(i, specials[(rnd() as usize) % specials.len()]);
                    }
                    _ => bytes.truncate(i),
                }
            }
            if let Ok(h) = read_bytes(&bytes, Format::Auto) {
                let model = h.model.unwrap_or(ModelKind::CasRegister);
                let _ = check_history(&h, &CheckOptions::new(model));
            }
        }
    }
    let native = "{\"version\":1,\"model\":\"kv\"}\n{\"process\":0,\"type\":\"ok\",\"f\":\"put\",\"key\":\"a\",\"value\":\"x\",\"invoke\":1,\"complete\":2}\n{\"process\":1,\"type\":\"invoke\",\"f\":\"get\",\"key\":\"a\",\"time\":3}\n{\"process\":1,\"type\":\"ok\",\"f\":\"get\",\"key\":\"a\",\"value\":\"x\",\"time\":4}\n";
    for i in 0..native.len() {
        for b in [b'"', b'}', b'0', b'-', b'x', b' '] {
            let mut bytes = native.as_bytes().to_vec();
            bytes[i] = b;
            if let Ok(h) = read_bytes(&bytes, Format::Auto) {
                let _ = check_history(&h, &CheckOptions::new(h.model.unwrap_or(ModelKind::Kv)));
            }
        }
    }
}

#[test]
fn native_histories_check_as_documented() {
    // The example of docs/history-format.md: a stale read.
    let text = r#"{"version":1,"model":"cas-register"}
{"process":0,"type":"ok","f":"write","key":"k1","value":1,"invoke":1000,"complete":2000}
{"process":1,"type":"ok","f":"cas","key":"k1","value":[1,2],"swapped":true,"invoke":2500,"complete":3000}
{"process":2,"type":"info","f":"write","key":"k1","value":3,"invoke":3100,"complete":null}
{"process":0,"type":"ok","f":"read","key":"k1","value":1,"invoke":4000,"complete":4500}
"#;
    let h = read_str(text, Format::Auto).expect("readable");
    let out = check_history(&h, &CheckOptions::new(h.model.expect("header"))).expect("valid");
    assert_eq!(out.verdict, Verdict::NotLinearizable);
    let cx = out.counterexample.expect("counterexample");
    assert_eq!(cx.blocked, 3);
    assert!(cx.anomaly.starts_with("stale read"), "{}", cx.anomaly);

    // Event lines pair up by process, like Jepsen's.
    let text = r#"{"process":0,"type":"invoke","f":"write","key":"k1","value":1,"time":10}
{"process":1,"type":"invoke","f":"read","key":"k1","time":12}
{"process":1,"type":"ok","f":"read","key":"k1","value":1,"time":14}
{"process":0,"type":"ok","f":"write","key":"k1","value":1,"time":20}
"#;
    let h = read_str(text, Format::Auto).expect("readable");
    let out = check_history(&h, &CheckOptions::new(ModelKind::Register)).expect("valid");
    assert_eq!(out.verdict, Verdict::Linearizable);
}

#[test]
fn the_html_report_is_self_contained_and_highlights_the_counterexample() {
    let h = schism::check::formats::read_file(&data("jepsen/etcd_000.log"), Format::Auto)
        .expect("readable");
    let out = check_history(&h, &CheckOptions::new(ModelKind::CasRegister)).expect("valid");
    let page = html::render(&h, &out, "etcd <000>");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg"));
    assert!(
        page.contains("#f8b4b4"),
        "the blocked operation is highlighted"
    );
    assert!(page.contains("etcd &lt;000&gt;"), "titles are escaped");
    assert!(!page.contains("<script src"), "no external resources");
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CheckArgs,
}

fn cli(args: &[&str]) -> i32 {
    let mut argv = vec!["check"];
    argv.extend_from_slice(args);
    run(Cli::parse_from(argv).args)
}

fn temp(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("schism-check-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, content).expect("temp file");
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn exit_status_says_linearizable_violated_unknown_or_unreadable() {
    let ok = data("jepsen/etcd_002.log");
    let bad = data("jepsen/etcd_000.log");
    assert_eq!(cli(&[s(&ok)]), 0);
    assert_eq!(cli(&["--json", s(&ok), s(&bad)]), 1);
    assert_eq!(cli(&["--timeout", "1ns", s(&ok)]), 2);
    let junk = temp("junk.log", "not a history\n");
    assert_eq!(cli(&[s(&ok), s(&junk)]), 3);
    assert_eq!(cli(&[s(&data("no/such/file.log"))]), 3);
    // A function the chosen model lacks is unreadable input too.
    assert_eq!(
        cli(&["--model", "register", s(&data("jepsen/etcd_000.log"))]),
        3
    );
}

#[test]
fn html_and_unpartitioned_options_work_from_the_command_line() {
    let page = std::env::temp_dir().join(format!("schism-check-{}.html", std::process::id()));
    let bad = data("kv/c01-bad.txt");
    assert_eq!(
        cli(&[
            "--no-partition",
            "--html",
            s(&page),
            "--format",
            "kv",
            s(&bad)
        ]),
        1
    );
    let html = std::fs::read_to_string(&page).expect("page written");
    assert!(html.contains("not-linearizable"));
    let _ = std::fs::remove_file(page);
}
