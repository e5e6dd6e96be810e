//! The container image end to end (podman, see `support::podman`): `deploy/Dockerfile`'s runtime
//! stage packages the very binary this test suite runs; in a container of its own, reading its
//! connection strings from mounted secret files, it migrates, replicates users from mongosim into
//! Postgres on the host, answers `/readyz` through a published port, passes the image's
//! HEALTHCHECK, runs as the unprivileged user, and exits 0 on `podman stop` (SIGTERM).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::podman::{
    podman, require_podman, text, Container, Image, HOST_FROM_CONTAINER, RUN_OPTIONS,
};
use crate::support::{
    reference_mapping_file, repo_path, unique_name, wait_until, wait_users_equal, Source, TestDb,
};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");
const WAIT: Duration = Duration::from_secs(60);

/// A connection string of the host as the container sees it.
fn from_container(url: &str) -> String {
    url.replace("127.0.0.1", HOST_FROM_CONTAINER)
        .replace("localhost", HOST_FROM_CONTAINER)
}

fn write_readable(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_replicates_with_secret_files_reports_healthy_and_stops_cleanly() {
    require_podman();
    let tag = format!("localhost/{}:test", unique_name("image"));
    let image = Image::build_prebuilt(&repo_path("deploy/Dockerfile"), Path::new(BIN), &tag);

    let source = Source::start().await;
    let db = TestDb::create("container").await;
    db.apply_reference_schema().await;
    let mongo_db = unique_name("container");
    let secrets = tempfile::tempdir().expect("secrets dir");
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    write_readable(
        secrets.path(),
        "pg-url",
        &format!("{}\n", from_container(&db.url())),
    );
    write_readable(
        secrets.path(),
        "mongo-url",
        &format!("{}\n", from_container(&source.uri)),
    );
    let mapping = reference_mapping_file(&mongo_db);
    write_readable(
        secrets.path(),
        "mapping.toml",
        &std::fs::read_to_string(mapping.path()).expect("mapping"),
    );
    let mount = format!("{}:/etc/mongo2pg:ro", secrets.path().display());
    let env = [
        "-e",
        "MONGO2PG_MAPPING=/etc/mongo2pg/mapping.toml",
        "-e",
        "PG_URL_FILE=/etc/mongo2pg/pg-url",
        "-e",
        "MONGO_URL_FILE=/etc/mongo2pg/mongo-url",
    ];

    // migrate, in a container that is gone afterwards.
    let mut migrate = vec!["run", "--rm"];
    migrate.extend_from_slice(RUN_OPTIONS);
    migrate.extend_from_slice(&["-v", &mount]);
    migrate.extend_from_slice(&env);
    migrate.extend_from_slice(&[&image.tag, "migrate"]);
    let out = podman(&migrate);
    assert!(
        out.status.success(),
        "migrate in the container: {}",
        text(&out)
    );

    // run, with the metrics port published on the host.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:9187");
    let name = unique_name("ctr");
    let mut args = vec!["-v", &mount, "-p", &publish];
    args.extend_from_slice(&env);
    args.extend_from_slice(&[&image.tag, "run"]);
    let container = Container::start(&name, &args);

    let readyz = format!("http://127.0.0.1:{port}/readyz");
    wait_until(
        "/readyz answers 200 through the published port (streams running)",
        WAIT,
        || {
            let url = readyz.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
            }
        },
    )
    .await;
    let users = source.coll(&mongo_db, "users");
    users
        .insert_many(
            (0..10).map(|i| bson::doc! {"email": format!("c{i}@example.com"), "points": i}),
        )
        .await
        .expect("insert users");
    let pg = db.client().await;
    wait_users_equal(&source, &mongo_db, &pg, WAIT).await;

    let health = podman(&["healthcheck", "run", &container.name]);
    assert!(
        health.status.success(),
        "the image's HEALTHCHECK: {}",
        text(&health)
    );
    let user = podman(&["exec", &container.name, "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "10001");

    let stop = podman(&["stop", "-t", "20", &container.name]);
    assert!(stop.status.success(), "podman stop: {}", text(&stop));
    let exit = podman(&[
        "inspect",
        &container.name,
        "--format",
        "{{.State.ExitCode}}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&exit.stdout).trim(),
        "0",
        "exit code after SIGTERM; logs:\n{}",
        container.logs()
    );
    let logs = container.logs();
    assert!(logs.contains("\"shutting down\""), "{logs}");
    drop(container);
    drop(image);
}
