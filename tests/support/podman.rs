//! Building and running the mongo2pg image with podman on a machine without a container
//! registry: the base image `debian:bookworm-slim` is a local import of a debootstrap file system
//! (`scripts/test` makes it), containers run with `runc` and explicit `nofile`/`nproc` limits
//! (the defaults cannot be set in this sandbox), and their own network namespace (slirp4netns)
//! reaching the host's loopback at `HOST_FROM_CONTAINER`. Images and containers are removed when
//! their guards drop.

use std::path::Path;
use std::process::{Command, Output};

/// The host's 127.0.0.1 as a container sees it (slirp4netns with `allow_host_loopback`).
pub const HOST_FROM_CONTAINER: &str = "10.0.2.2";
/// The local base image the Dockerfile's runtime stage starts from.
pub const BASE_IMAGE: &str = "docker.io/library/debian:bookworm-slim";

/// Options every `podman run` needs here.
pub const RUN_OPTIONS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
    "--network",
    "slirp4netns:allow_host_loopback=true",
];

/// Runs podman with `args`; panics when it cannot be started at all.
pub fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman ({e}); scripts/test installs it"))
}

/// Output as text (stdout then stderr).
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics with the setup command unless podman and the base image are there.
pub fn require_podman() {
    let out = podman(&["image", "exists", BASE_IMAGE]);
    assert!(
        out.status.success(),
        "the base image {BASE_IMAGE} is missing: run scripts/test (it imports one made with debootstrap)"
    );
}

/// An image built for one test, removed on drop with the intermediate stage images its build
/// left behind.
pub struct Image {
    pub tag: String,
    intermediates: Vec<String>,
}

fn dangling_images() -> std::collections::BTreeSet<String> {
    String::from_utf8_lossy(
        &podman(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]).stdout,
    )
    .lines()
    .map(str::to_string)
    .collect()
}

impl Image {
    /// `deploy/Dockerfile` with `BINARY_STAGE=prebuilt` around `binary`.
    pub fn build_prebuilt(dockerfile: &Path, binary: &Path, tag: &str) -> Image {
        let context = tempfile::tempdir().expect("build context");
        std::fs::copy(binary, context.path().join("mongo2pg")).expect("copy the binary");
        let dockerfile = dockerfile.display().to_string();
        let context_dir = context.path().display().to_string();
        let before = dangling_images();
        let out = podman(&[
            "build",
            "--format",
            "docker",
            "--pull=never",
            "--network",
            "host",
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
            "--build-arg",
            "BINARY_STAGE=prebuilt",
            "-f",
            &dockerfile,
            "-t",
            tag,
            &context_dir,
        ]);
        let intermediates = dangling_images().difference(&before).cloned().collect();
        let image = Image {
            tag: tag.to_string(),
            intermediates,
        };
        assert!(out.status.success(), "podman build failed: {}", text(&out));
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.tag]);
        for id in &self.intermediates {
            let _ = podman(&["rmi", "-f", id]);
        }
    }
}

/// A container started for one test, removed (forcibly) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d --name <name> RUN_OPTIONS <args>`.
    pub fn start(name: &str, args: &[&str]) -> Container {
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(RUN_OPTIONS);
        all.extend_from_slice(args);
        let out = podman(&all);
        assert!(out.status.success(), "podman run failed: {}", text(&out));
        Container {
            name: name.to_string(),
        }
    }

    /// Everything the container logged so far.
    pub fn logs(&self) -> String {
        text(&podman(&["logs", &self.name]))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}
