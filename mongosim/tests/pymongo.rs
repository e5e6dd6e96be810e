//! Cross-driver checks with pymongo against the in-process simulator: the plain check
//! (`pymongo_check.py`: CRUD, watch, resume, transaction) and the authentication check
//! (`pymongo_auth_check.py`: SCRAM-SHA-256 and SCRAM-SHA-1, wrong password, unauthenticated)
//! over TLS. They fail loudly when python3 or pymongo is missing (`pip install pymongo`).

mod common;

use mongosim::{SimConfig, SimUser};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn require_pymongo() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pymongo"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with pymongo is required for the cross-driver checks: pip install pymongo"
    );
}

async fn run_script(script: &str, args: &[&str]) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let run = tokio::process::Command::new("python3")
        .arg(path)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish in 120 s"))
        .expect("run python3")
}

fn passed_checks(script: &str, output: &Output) -> usize {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().filter(|l| l.starts_with("ok ")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_passes_the_cross_driver_check() {
    require_pymongo();
    let sim = mongosim::start(SimConfig::default())
        .await
        .expect("simulator starts");
    let output = run_script("pymongo_check.py", &[&sim.replica_set_uri()]).await;
    sim.shutdown().await;
    assert!(passed_checks("pymongo_check.py", &output) >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_authenticates_over_tls_and_is_refused_without_the_password() {
    require_pymongo();
    let pki = common::Pki::new("pymongo");
    let sim = mongosim::start(SimConfig {
        users: vec![SimUser::new("py", "pa:ss@word")],
        tls_cert_file: Some(pki.cert.clone()),
        tls_key_file: Some(pki.key.clone()),
        tls_ca_file: Some(pki.ca.clone()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let addr = sim.addr().to_string();
    let ca = pki.ca.display().to_string();
    let output = run_script("pymongo_auth_check.py", &[&addr, "py", "pa:ss@word", &ca]).await;
    sim.shutdown().await;
    assert!(passed_checks("pymongo_auth_check.py", &output) >= 8);
}
