//! Deployment and cross-driver checks run with the real tools: `scripts/check-deploy.sh`
//! (promtool check/test rules, promtool check config, docker-compose config, YAML and Dockerfile
//! checks) must pass, and pymongo must work against mongosim (`mongosim/tests/pymongo_check.py`).
//! A missing tool fails the test with the command that installs it.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::repo_path;

/// Panics with `install` when `program args` cannot run successfully.
fn require(program: &str, args: &[&str], install: &str) {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{program}` is missing or broken here: install it with `{install}`"
    );
}

fn show(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn deployment_files_pass_check_deploy_script() {
    require("promtool", &["--version"], "apt-get install prometheus");
    require(
        "docker-compose",
        &["--version"],
        "apt-get install docker-compose",
    );
    require(
        "python3",
        &["-c", "import yaml"],
        "apt-get install python3 python3-yaml",
    );
    let output = Command::new("bash")
        .arg(repo_path("scripts/check-deploy.sh"))
        .current_dir(repo_path(""))
        .output()
        .expect("run scripts/check-deploy.sh");
    assert!(
        output.status.success(),
        "scripts/check-deploy.sh failed\n{}",
        show(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for step in [
        "== promtool test rules",
        "== docker-compose config",
        "== deploy checks passed",
    ] {
        assert!(
            stdout.contains(step),
            "check-deploy.sh ran no {step} step\n{}",
            show(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_passes_its_cross_driver_check_against_mongosim() {
    require(
        "python3",
        &["-c", "import pymongo"],
        "apt-get install python3-pymongo (or pip install pymongo)",
    );
    let sim = mongosim::start(mongosim::SimConfig::default())
        .await
        .expect("start mongosim");
    let uri = sim.replica_set_uri();
    let run = tokio::process::Command::new("python3")
        .arg(repo_path("mongosim/tests/pymongo_check.py"))
        .arg(&uri)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("pymongo_check.py against {uri} did not finish in 60 s"))
        .expect("run python3");
    sim.shutdown().await;
    assert!(
        output.status.success(),
        "pymongo_check.py against {uri} failed\n{}",
        show(&output)
    );
    let checks = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    assert!(
        checks >= 5,
        "pymongo_check.py ran only {checks} checks\n{}",
        show(&output)
    );
}
