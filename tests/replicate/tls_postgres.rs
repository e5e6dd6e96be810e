//! Replication into a Postgres that only accepts TLS (a cluster of the test's own, see
//! `support::tls_postgres`): `verify-full` with the test CA connects and replicates; a wrong CA is
//! refused with an error naming the certificate problem; `sslmode=disable` is refused by the
//! server; `verify-ca` checks the chain but not the host name while `verify-full` checks both;
//! a client certificate authenticates a user whose `pg_hba.conf` method is `cert`.

use std::time::Duration;

use bson::doc;
use mongo2pg::config::Secret;
use mongo2pg::replicator::{self, RunSettings};
use mongo2pg::sink::connect::{connect_pg, describe, PgUrl};

use crate::support::tls_postgres::{TlsPostgres, CERT_USER};
use crate::support::{reference_config, repo_path, wait_users_equal, Source};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");

fn pg_url(url: &str) -> PgUrl {
    PgUrl::parse(&Secret::new(url)).expect("connection string parses")
}

/// Whether the session of `client` is encrypted, as the server sees it.
async fn session_uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_and_replicates_into_a_tls_only_postgres() {
    crate::support::init_tracing();
    let cluster = TlsPostgres::start();
    cluster
        .admin("postgres")
        .await
        .batch_execute("CREATE DATABASE app")
        .await
        .expect("create database");
    let schema =
        std::fs::read_to_string(repo_path("deploy/marketplace/schema.sql")).expect("schema.sql");
    cluster
        .admin("app")
        .await
        .batch_execute(&schema)
        .await
        .expect("apply schema");

    let url = cluster.url(
        "postgres",
        "app",
        &format!(
            "sslmode=verify-full sslrootcert={}",
            cluster.pki.ca.display()
        ),
    );
    let mongo_db = crate::support::unique_name("tlspg");
    let config = reference_config(&mongo_db);
    let (mut pg, _conn) = connect_pg(&pg_url(&url))
        .await
        .unwrap_or_else(|e| panic!("verify-full connects: {}", describe(&e)));
    assert!(session_uses_tls(&pg).await, "the session is encrypted");
    mongo2pg::sink::migrate::migrate(&mut pg, &replicator::control_names(&config))
        .await
        .expect("migrate over TLS");

    let source = Source::start().await;
    let replicator = replicator::start(RunSettings {
        mongo_url: Secret::new(source.uri.clone()),
        pg_url: Secret::new(url.clone()),
        config,
        metrics_addr: None,
        holder: "tls-test".into(),
    })
    .await
    .expect("replicator starts over TLS");
    source
        .coll(&mongo_db, "users")
        .insert_many((0..20).map(|i| doc! { "email": format!("u{i}@example.com"), "points": i }))
        .await
        .expect("insert users");
    wait_users_equal(&source, &mongo_db, &pg, Duration::from_secs(30)).await;
    let applied: i64 = pg
        .query_one(
            "SELECT count(*) FROM mongo2pg.checkpoints WHERE stream = 'users' AND cluster_time IS NOT NULL",
            &[],
        )
        .await
        .expect("checkpoint")
        .get(0);
    assert_eq!(applied, 1, "the checkpoint was written over TLS");
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_with_an_error_naming_the_certificate_problem() {
    let cluster = TlsPostgres::start();
    let url = cluster.url(
        "postgres",
        "postgres",
        &format!(
            "sslmode=verify-full sslrootcert={}",
            cluster.pki.unrelated_ca().display()
        ),
    );
    let err = connect_pg(&pg_url(&url))
        .await
        .err()
        .expect("an unknown issuer is refused");
    let text = describe(&err);
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");

    // The same through the binary: one line saying why, exit code 1.
    let out = std::process::Command::new(BIN)
        .args(["migrate", "--pg-url", &url])
        .env_remove("PG_URL")
        .env_remove("PG_URL_FILE")
        .output()
        .expect("run mongo2pg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: cannot connect to postgres: error performing TLS handshake: invalid peer certificate: UnknownIssuer"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_disable_is_refused_by_a_tls_only_server() {
    let cluster = TlsPostgres::start();
    let err = connect_pg(&pg_url(&cluster.url(
        "postgres",
        "postgres",
        "sslmode=disable",
    )))
    .await
    .err()
    .expect("a plain connection is refused");
    let db = err.as_db_error().expect("the server refuses it");
    assert!(db.message().contains("no encryption"), "{}", db.message());
    // `prefer` (the default) and `require` encrypt without checking the certificate.
    for mode in ["", "sslmode=prefer", "sslmode=require"] {
        let (client, _conn) = connect_pg(&pg_url(&cluster.url("postgres", "postgres", mode)))
            .await
            .unwrap_or_else(|e| panic!("{mode:?} connects: {}", describe(&e)));
        assert!(session_uses_tls(&client).await, "{mode:?} encrypts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_checks_the_chain_and_verify_full_also_the_host_name() {
    let cluster = TlsPostgres::start();
    let ca = cluster.pki.ca.display().to_string();
    // The certificate is for localhost / 127.0.0.1; connect under another name.
    let other_name = |mode: &str| {
        format!(
            "host=db.invalid hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode={mode} sslrootcert={ca}",
            cluster.port
        )
    };
    let (client, _conn) = connect_pg(&pg_url(&other_name("verify-ca")))
        .await
        .unwrap_or_else(|e| panic!("verify-ca ignores the name: {}", describe(&e)));
    assert!(session_uses_tls(&client).await);
    let err = connect_pg(&pg_url(&other_name("verify-full")))
        .await
        .err()
        .expect("verify-full checks the name");
    let text = describe(&err);
    assert!(text.contains("not valid for name \"db.invalid\""), "{text}");
    // libpq's rule: `require` with a root certificate file verifies the chain like verify-ca.
    let wrong_ca = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require sslrootcert={}",
        cluster.port,
        cluster.pki.unrelated_ca().display()
    );
    let err = connect_pg(&pg_url(&wrong_ca))
        .await
        .err()
        .expect("require with a root file checks the chain");
    assert!(
        describe(&err).contains("UnknownIssuer"),
        "{}",
        describe(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_authenticates_a_user_whose_method_is_cert() {
    let cluster = TlsPostgres::start();
    cluster
        .admin("postgres")
        .await
        .batch_execute(&format!("CREATE ROLE {CERT_USER} LOGIN"))
        .await
        .expect("create role");
    let ca = cluster.pki.ca.display().to_string();
    let without = cluster.url(
        CERT_USER,
        "postgres",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    let err = connect_pg(&pg_url(&without))
        .await
        .err()
        .expect("no client certificate, no entry");
    assert!(
        err.as_db_error()
            .is_some_and(|db| db.message().contains("certificate")),
        "{}",
        describe(&err)
    );

    let client_cert = cluster.pki.client(CERT_USER);
    let with = format!(
        "{without} sslcert={} sslkey={}",
        client_cert.cert.display(),
        client_cert.key.display()
    );
    let (client, _conn) = connect_pg(&pg_url(&with))
        .await
        .unwrap_or_else(|e| panic!("the client certificate authenticates: {}", describe(&e)));
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("current_user")
        .get(0);
    assert_eq!(user, CERT_USER);
    let cert_user: Option<String> = client
        .query_one(
            "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(
        cert_user.is_some_and(|dn| dn.contains(CERT_USER)),
        "the server saw the client certificate"
    );
}
