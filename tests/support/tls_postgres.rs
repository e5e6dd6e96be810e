//! A PostgreSQL cluster of the test's own that only accepts TLS over TCP: Debian's `initdb` and
//! `pg_ctl` in a temporary directory (run as the `postgres` user when the tests run as root,
//! since Postgres refuses to run as root), `ssl = on` with a server certificate from `Pki`,
//! `pg_hba.conf` with `hostssl` lines only (the user `certuser` must present a client
//! certificate, method `cert`; the others are trusted), listening on a free port of 127.0.0.1
//! and on a Unix socket in the directory (for setup). Stopped and removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::pki::Pki;

/// The user that must authenticate with a client certificate.
pub const CERT_USER: &str = "certuser";

/// A running TLS-only cluster.
pub struct TlsPostgres {
    pub pki: Pki,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run commands as the `postgres` user (the tests run as root).
    as_postgres: bool,
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<version>/bin`).
fn server_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e} (install postgresql)", root.display()))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let version = versions
        .last()
        .unwrap_or_else(|| panic!("no server under {}", root.display()));
    root.join(version.to_string()).join("bin")
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `uid:gid` of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no postgres user: {}", output_text(&out)))
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TlsPostgres {
    /// Creates and starts the cluster (a few seconds: initdb and start).
    pub fn start() -> TlsPostgres {
        let pki = Pki::new("postgres");
        let dir = tempfile::Builder::new()
            .prefix("m2p-tlspg-")
            .tempdir()
            .expect("cluster dir");
        let as_postgres = is_root();
        let mut cluster = TlsPostgres {
            pki,
            port: 0,
            dir,
            bin: server_bin(),
            as_postgres,
        };
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(cluster.dir.path(), Some(uid), Some(gid))
                .expect("chown cluster dir");
        }
        cluster.run_checked(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.configure();
        // The free port may be taken between choosing and binding it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            std::fs::write(
                cluster.data().join("port.conf"),
                format!("port = {}\n", cluster.port),
            )
            .expect("write port.conf");
            let out = cluster.run(
                "pg_ctl",
                &[
                    "-D",
                    &cluster.data().display().to_string(),
                    "-l",
                    &cluster.dir.path().join("server.log").display().to_string(),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            if out.status.success() {
                return cluster;
            }
            last = format!(
                "{}\n{}",
                output_text(&out),
                std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default()
            );
        }
        panic!("the TLS Postgres cluster did not start: {last}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes the certificates, `ssl = on`, the socket directory and a `hostssl`-only
    /// pg_hba.conf.
    fn configure(&self) {
        let data = self.data();
        for (from, to) in [
            (&self.pki.ca, "ca.crt"),
            (&self.pki.server_cert, "server.crt"),
            (&self.pki.server_key, "server.key"),
        ] {
            std::fs::copy(from, data.join(to)).expect("copy certificate");
        }
        let conf = format!(
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             ssl_ca_file = 'ca.crt'\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = 50\n\
             include_if_exists = 'port.conf'\n",
            self.dir.path().display()
        );
        let mut existing =
            std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
        existing.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), existing).expect("write postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
                 hostssl all all 127.0.0.1/32 trust\n"
            ),
        )
        .expect("write pg_hba.conf");
        if self.as_postgres {
            let (uid, gid) = postgres_ids();
            for f in [
                "ca.crt",
                "server.crt",
                "server.key",
                "postgresql.conf",
                "pg_hba.conf",
            ] {
                std::os::unix::fs::chown(data.join(f), Some(uid), Some(gid)).expect("chown");
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod server.key");
        if self.as_postgres {
            // port.conf is written later by root: make the directory's files readable for the
            // server by creating it now, owned by postgres.
            std::fs::write(data.join("port.conf"), "").expect("port.conf");
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(data.join("port.conf"), Some(uid), Some(gid))
                .expect("chown port.conf");
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    }

    fn run_checked(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} failed: {}",
            output_text(&out)
        );
    }

    /// Connection string over TCP to `dbname` as `user` with `options` (e.g. `sslmode=...`),
    /// host `localhost` (the name in the server certificate) reached at 127.0.0.1.
    pub fn url(&self, user: &str, dbname: &str, options: &str) -> String {
        format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={user} dbname={dbname} {options}",
            self.port
        )
    }

    /// Connection string over the Unix socket (no TLS; for setting the cluster up).
    pub fn socket_url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.dir.path().display(),
            self.port
        )
    }

    /// A client over the Unix socket as the superuser.
    pub async fn admin(&self, dbname: &str) -> tokio_postgres::Client {
        super::db::connect(&self.socket_url(dbname)).await
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}
