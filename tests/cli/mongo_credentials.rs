//! MongoDB credentials through the binary, against mongosim with SCRAM authentication: a URL with
//! the right password (and `tls=true&tlsCAFile=...` against mongosim's TLS, from a secret file)
//! replicates, and the password appears nowhere — not in the logs, `/metrics`, `/readyz`, the
//! gaps, `tokens show`, `gaps list/show`, nor as a panic; a wrong password keeps the process up
//! with every stream stopped on a fatal, operator-readable error and `/readyz` 503.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bson::{doc, oid::ObjectId};
use mongosim::{SimConfig, SimUser};

use crate::support::pki::Pki;
use crate::support::{
    migrate, reference_config, reference_mapping_file, unique_name, wait_until, TestDb,
};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");
const USER: &str = "replicator";
const PASSWORD: &str = "Mongo-Pa55-never-shown";
const WRONG: &str = "Wrong-Pa55-never-shown";
const WAIT: Duration = Duration::from_secs(45);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `mongo2pg run` as a child process, its output going to files read at the end.
struct Running {
    child: Child,
    port: u16,
    logs: tempfile::NamedTempFile,
}

impl Running {
    fn start(mapping: &str, pg_url: &str, mongo: (&str, &str)) -> Running {
        let port = free_port();
        let logs = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("MONGO2PG_MAPPING", mapping)
            .env("PG_URL", pg_url)
            .env_remove("PG_URL_FILE")
            .env_remove("MONGO_URL")
            .env_remove("MONGO_URL_FILE")
            .env(mongo.0, mongo.1)
            .env("MONGO2PG_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(logs.reopen().expect("log file")))
            .stderr(Stdio::from(logs.reopen().expect("log file")))
            .spawn()
            .expect("start mongo2pg run");
        Running { child, port, logs }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    /// SIGTERM, then the exit code and everything the process wrote.
    fn stop(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait for mongo2pg");
        let logs = std::fs::read_to_string(self.logs.path()).expect("read logs");
        (status.code(), logs)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an operator command; returns its exit code and output.
fn command(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("MONGO_URL")
        .env_remove("MONGO_URL_FILE")
        .env_remove("PG_URL_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run mongo2pg");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[track_caller]
fn assert_hidden(what: &str, text: &str) {
    for secret in [PASSWORD, WRONG] {
        assert!(!text.contains(secret), "password in {what}: {text}");
    }
    assert!(!text.contains("panicked"), "panic in {what}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_replicate_over_tls_and_the_password_never_shows() {
    let pki = Pki::new("mongosim");
    let sim = mongosim::start(SimConfig {
        users: vec![SimUser::new(USER, PASSWORD)],
        tls_cert_file: Some(pki.server_cert.clone()),
        tls_key_file: Some(pki.server_key.clone()),
        tls_ca_file: Some(pki.ca.clone()),
        ..SimConfig::default()
    })
    .await
    .expect("start mongosim with authentication and TLS");
    let uri = sim.uri_with_credentials(USER, PASSWORD, "admin");
    assert!(
        uri.contains("tls=true") && uri.contains("tlsCAFile="),
        "{uri}"
    );
    let client = mongodb::Client::with_uri_str(&uri).await.expect("client");

    let db = TestDb::create("mongo_creds").await;
    db.apply_reference_schema().await;
    let mongo_db = unique_name("creds");
    migrate(&db, &reference_config(&mongo_db)).await;
    let mapping = reference_mapping_file(&mongo_db);
    let secrets = tempfile::tempdir().expect("secrets");
    let url_file = secrets.path().join("mongo-url");
    std::fs::write(&url_file, format!("{uri}\n")).expect("write secret file");
    let url_file = url_file.display().to_string();
    let mapping_path = mapping.path().display().to_string();

    let running = Running::start(&mapping_path, &db.url(), ("MONGO_URL_FILE", &url_file));
    wait_until("/readyz 200", WAIT, || async {
        running.get("/readyz").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    let users = client
        .database(&mongo_db)
        .collection::<bson::Document>("users");
    users
        .insert_many((0..5).map(|i| doc! {"email": format!("a{i}@example.com"), "points": i}))
        .await
        .expect("insert users");
    client
        .database(&mongo_db)
        .collection::<bson::Document>("addresses")
        .insert_one(doc! {"_id": ObjectId::new(), "userId": "not-an-id", "city": "Izmir"})
        .await
        .expect("insert a bad address");
    let pg = db.client().await;
    wait_until("users and the gap replicated", WAIT, || async {
        crate::support::count(&pg, "SELECT count(*) FROM users").await == 5
            && crate::support::count(
                &pg,
                "SELECT count(*) FROM pg_dualwrite_gaps WHERE collection = 'addresses'",
            )
            .await
                == 1
    })
    .await;

    let (_, metrics) = running.get("/metrics").await.expect("/metrics");
    assert!(metrics.contains("mongo2pg_events_applied_total"));
    assert_hidden("/metrics", &metrics);
    let (_, ready) = running.get("/readyz").await.expect("/readyz");
    assert_hidden("/readyz", &ready);
    let env = [
        ("MONGO2PG_MAPPING", mapping_path.as_str()),
        ("PG_URL", &db.url()),
        ("MONGO_URL_FILE", url_file.as_str()),
    ];
    let (code, shown) = command(&["tokens", "show", "--json"], &env);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("lag"), "{shown}");
    assert_hidden("tokens show", &shown);
    let (code, listed) = command(&["gaps", "list", "--json"], &env);
    assert_eq!(code, Some(0), "{listed}");
    assert_hidden("gaps list", &listed);
    let gaps: serde_json::Value = serde_json::from_str(&listed).expect("gaps json");
    let id = gaps[0]["id"].as_i64().expect("gap id").to_string();
    let (code, one) = command(&["gaps", "show", &id, "--json"], &env);
    assert_eq!(code, Some(0), "{one}");
    assert_hidden("gaps show", &one);
    let stored: String = pg
        .query_one(
            "SELECT string_agg(concat_ws(' ', reason, raw_event, note), ' ') FROM pg_dualwrite_gaps",
            &[],
        )
        .await
        .expect("gaps rows")
        .get(0);
    assert_hidden("the gaps table", &stored);

    let (code, logs) = running.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("replicator started"), "{logs}");
    assert_hidden("the logs", &logs);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_every_stream_with_advice_and_readyz_503() {
    let sim = mongosim::start(SimConfig {
        users: vec![SimUser::new(USER, PASSWORD)],
        ..SimConfig::default()
    })
    .await
    .expect("start mongosim with authentication");
    let wrong = sim.uri_with_credentials(USER, WRONG, "admin");
    let db = TestDb::create("mongo_wrong_pw").await;
    db.apply_reference_schema().await;
    let mongo_db = unique_name("wrongpw");
    let config = reference_config(&mongo_db);
    migrate(&db, &config).await;
    let mapping = reference_mapping_file(&mongo_db);
    let mapping_path = mapping.path().display().to_string();
    let streams = config.collections.len();

    let running = Running::start(&mapping_path, &db.url(), ("MONGO_URL", &wrong));
    let advice = "check the MongoDB user/password in MONGO_URL";
    wait_until(
        "every stream failed with the advice, /readyz 503",
        WAIT,
        || async {
            running.get("/readyz").await.is_some_and(|(status, body)| {
                status == 503
                    && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
                        let all = v["streams"]
                            .as_object()
                            .map(|m| m.values().cloned().collect::<Vec<_>>())
                            .unwrap_or_default();
                        all.len() == streams
                            && all.iter().all(|s| {
                                s["state"] == "failed"
                                    && s["reason"].as_str().is_some_and(|r| r.contains(advice))
                            })
                    })
            })
        },
    )
    .await;
    let (_, ready) = running.get("/readyz").await.expect("/readyz");
    assert!(ready.contains("authentication failed"), "{ready}");
    assert_hidden("/readyz", &ready);
    let (_, metrics) = running.get("/metrics").await.expect("/metrics");
    assert!(
        metrics.contains("mongo2pg_stream_state{collection=\"users\",state=\"failed\"} 1"),
        "{metrics}"
    );
    assert_hidden("/metrics", &metrics);

    let (code, shown) = command(
        &["tokens", "show"],
        &[
            ("MONGO2PG_MAPPING", mapping_path.as_str()),
            ("PG_URL", &db.url()),
            ("MONGO_URL", &wrong),
        ],
    );
    assert_eq!(
        code,
        Some(0),
        "tokens show works without MongoDB's lag: {shown}"
    );
    assert!(shown.contains(advice), "{shown}");
    assert_hidden("tokens show", &shown);

    let (code, logs) = running.stop();
    assert_eq!(
        code,
        Some(0),
        "the process stayed up and stops cleanly: {logs}"
    );
    assert!(logs.contains(advice), "{logs}");
    assert_hidden("the logs", &logs);
    sim.shutdown().await;
}
