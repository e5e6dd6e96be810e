#!/usr/bin/env bash
# Validates the operator-facing deployment files with the real tools that run without a
# container engine:
#   promtool check rules / test rules / check config   (deploy/prometheus/)
#   promtool check rules on every Grafana dashboard query (PromQL syntax)
#   docker-compose config                               (deploy/docker-compose.yml)
#   YAML parse + structural checks                      (deploy/kubernetes/, grafana provisioning)
#   static checks of deploy/Dockerfile
# Installs promtool (Debian package prometheus), docker-compose and PyYAML when missing (needs
# root and apt, as on CI). Nothing here builds or runs a container.
#
# Usage: scripts/check-deploy.sh [--sync-configmap]
#   --sync-configmap  rewrite deploy/kubernetes/configmap-mapping.yaml from
#                     deploy/marketplace/mapping.toml, then check.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SYNC_CONFIGMAP=0
for arg in "$@"; do
  case "$arg" in
    --sync-configmap) SYNC_CONFIGMAP=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing $*; install it (apt-get install $*) or run as root" >&2
    exit 1
  fi
  echo "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}

step "tools"
command -v promtool > /dev/null || apt_install prometheus
command -v docker-compose > /dev/null || apt_install docker-compose
command -v python3 > /dev/null || apt_install python3
if ! python3 -c 'import yaml' 2> /dev/null; then
  apt_install python3-yaml || python3 -m pip install --quiet pyyaml
fi
promtool --version 2>&1 | head -1
docker-compose version --short
python3 -c 'import yaml, sys; print("python", sys.version.split()[0], "pyyaml", yaml.__version__)'

if [ "$SYNC_CONFIGMAP" -eq 1 ]; then
  step "sync ConfigMap from deploy/marketplace/mapping.toml"
  python3 - << 'PY'
from pathlib import Path
mapping = Path("deploy/marketplace/mapping.toml").read_text()
target = Path("deploy/kubernetes/configmap-mapping.yaml")
text = target.read_text()
head = text[: text.index("  mapping.toml: |\n") + len("  mapping.toml: |\n")]
body = "".join(("    " + line) if line.strip() else "\n" for line in mapping.splitlines(True))
target.write_text(head + body)
print("rewrote", target)
PY
fi

step "promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml

step "promtool test rules deploy/prometheus/alerts_test.yml"
promtool test rules deploy/prometheus/alerts_test.yml

step "promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step "dashboard queries parse as PromQL (grafana/mongo2pg.json)"
python3 - "$WORK/dashboard_rules.yml" << 'PY'
import json, sys
dash = json.load(open("grafana/mongo2pg.json"))
exprs = []
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            if "expr" in t:
                exprs.append((p.get("title", ""), t["expr"]))
        walk(p.get("panels", []))
walk(dash.get("panels", []))
if not exprs:
    sys.exit("no queries found in the dashboard")
rules = []
for i, (title, expr) in enumerate(exprs):
    promql = (expr.replace("${__rate_interval}", "1m").replace("$__rate_interval", "1m")
                  .replace("${collection}", ".*").replace("$collection", ".*"))
    if "$" in promql:
        sys.exit(f"panel {title!r} uses an unknown Grafana variable: {expr}")
    rules.append({"record": f"mongo2pg_dashboard:query_{i}", "expr": promql})
import yaml
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
print(f"{len(rules)} queries extracted")
PY
promtool check rules "$WORK/dashboard_rules.yml"

step "docker-compose config (deploy/docker-compose.yml)"
docker-compose -f deploy/docker-compose.yml config -q
docker-compose -f deploy/docker-compose.yml config > "$WORK/compose.yml"
echo "compose file is valid"

step "structural checks: compose mounts, Kubernetes manifests, Grafana provisioning, Dockerfile"
python3 - "$WORK/compose.yml" << 'PY'
import os, re, sys
from pathlib import Path
import yaml

problems = []
def check(ok, message):
    if not ok:
        problems.append(message)

# Compose: every bind-mounted file exists; the services the stack promises are there.
compose = yaml.safe_load(open(sys.argv[1]))
services = compose["services"]
for name in ["mongo", "mongo-init", "postgres", "mongo2pg-migrate", "mongo2pg", "prometheus", "grafana"]:
    check(name in services, f"compose: service {name} is missing")
for name, svc in services.items():
    for vol in svc.get("volumes", []):
        source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
        if source.startswith("/"):
            check(os.path.exists(source), f"compose: {name} mounts {source}, which does not exist")
check(services.get("mongo2pg", {}).get("command") == ["run"], "compose: mongo2pg must run `run`")
check(services.get("mongo2pg-migrate", {}).get("command") == ["migrate"], "compose: migrate step")

# Kubernetes: parse every manifest, then check the sidecar wiring.
docs = {}
for path in sorted(Path("deploy/kubernetes").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        check("kind" in doc, f"{path}: document without kind")
        docs.setdefault(doc.get("kind"), []).append((path, doc))
    print(f"parsed {path}")
kustom = docs.get("Kustomization", [(None, {})])[0][1]
for res in kustom.get("resources", []):
    check(Path("deploy/kubernetes", res).exists(), f"kustomization: {res} does not exist")

secret = docs["Secret"][0][1]
secret_keys = set(secret.get("stringData", {}))
configmap = docs["ConfigMap"][0][1]
deployment = docs["Deployment"][0][1]
pod = deployment["spec"]["template"]
ann = pod["metadata"].get("annotations", {})
check(ann.get("prometheus.io/scrape") == "true", "deployment: prometheus.io/scrape annotation")
check(ann.get("prometheus.io/port") == "9187", "deployment: prometheus.io/port annotation")
check(ann.get("prometheus.io/path") == "/metrics", "deployment: prometheus.io/path annotation")
spec = pod["spec"]
volumes = {v["name"]: v for v in spec.get("volumes", [])}
containers = spec["containers"] + spec.get("initContainers", [])
names = [c["name"] for c in spec["containers"]]
check(len(names) >= 2 and "mongo2pg" in names, "deployment: application container plus mongo2pg sidecar")
for c in containers:
    res = c.get("resources", {})
    check("memory" in res.get("requests", {}) and "memory" in res.get("limits", {}),
          f"deployment: container {c['name']} needs memory requests and limits")
    for env in c.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_keys,
                  f"deployment: {c['name']} reads {ref['name']}/{ref['key']}, not in the Secret")
    for mount in c.get("volumeMounts", []):
        vol = volumes.get(mount["name"])
        check(vol is not None, f"deployment: {c['name']} mounts unknown volume {mount['name']}")
        if vol and "configMap" in vol:
            check(vol["configMap"]["name"] == configmap["metadata"]["name"],
                  f"deployment: volume {mount['name']} refers to a missing ConfigMap")
sidecar = next(c for c in spec["containers"] if c["name"] == "mongo2pg")
port = {p["name"]: p["containerPort"] for p in sidecar.get("ports", [])}
check(port.get("metrics") == 9187, "sidecar: metrics port 9187")
check(sidecar.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "sidecar: liveness on /healthz")
check(sidecar.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "sidecar: readiness on /readyz")
check(sidecar.get("args") == ["run"], "sidecar: runs `mongo2pg run`")
env_names = {e["name"] for e in sidecar.get("env", [])}
for needed in ["MONGO2PG_MAPPING", "MONGO_URL_FILE", "PG_URL_FILE", "MONGO2PG_METRICS_ADDR", "MONGO2PG_LOG_FORMAT"]:
    check(needed in env_names, f"sidecar: env {needed}")
# Connection strings come from the mounted Secret, never from the environment, and every file a
# mongo2pg container is pointed at is an item of a Secret volume it mounts.
migrate = next((c for c in spec.get("initContainers", []) if c["name"] == "mongo2pg-migrate"), None)
check(migrate is not None, "deployment: mongo2pg-migrate init container")
for c in [sidecar] + ([migrate] if migrate else []):
    env = {e["name"]: e for e in c.get("env", [])}
    for direct in ["MONGO_URL", "PG_URL"]:
        check(direct not in env, f"{c['name']}: {direct} is set directly; use {direct}_FILE")
    files = {}
    for mount in c.get("volumeMounts", []):
        vol = volumes.get(mount["name"], {})
        if "secret" in vol:
            check(vol["secret"].get("secretName") == secret["metadata"]["name"],
                  f"{c['name']}: mounts a Secret other than {secret['metadata']['name']}")
            for item in vol["secret"].get("items", []):
                check(item["key"] in secret_keys, f"{c['name']}: Secret key {item['key']} is not in the example Secret")
                files[mount["mountPath"].rstrip("/") + "/" + item["path"]] = item["key"]
    for name in ["MONGO_URL_FILE", "PG_URL_FILE"]:
        if name in env:
            check(env[name].get("value") in files,
                  f"{c['name']}: {name}={env[name].get('value')} is not a mounted Secret file")
check(migrate is None or "PG_URL_FILE" in {e["name"] for e in migrate.get("env", [])},
      "mongo2pg-migrate: env PG_URL_FILE")
# Compose: mongo2pg reads its URLs from secret files as well.
for name in ["mongo2pg", "mongo2pg-migrate"]:
    env = services.get(name, {}).get("environment", {})
    check("PG_URL" not in env and "PG_URL_FILE" in env, f"compose: {name} reads PG_URL_FILE")
check("MONGO_URL_FILE" in services.get("mongo2pg", {}).get("environment", {}), "compose: mongo2pg reads MONGO_URL_FILE")
for secret_name, spec_ in compose.get("secrets", {}).items():
    check(os.path.exists(spec_.get("file", "")), f"compose: secret {secret_name} file is missing")
mapping_file = Path("deploy/marketplace/mapping.toml")
check(mapping_file.exists(), "deploy/marketplace/mapping.toml is missing")
if mapping_file.exists():
    check(configmap["data"].get("mapping.toml") == mapping_file.read_text(),
          "ConfigMap mapping differs from deploy/marketplace/mapping.toml: run scripts/check-deploy.sh --sync-configmap")

# Grafana provisioning: parses, and the datasource uid is the one the dashboard uses.
import json
ds = yaml.safe_load(open("grafana/provisioning/datasources/prometheus.yml"))
uids = {d["uid"] for d in ds["datasources"]}
provider = yaml.safe_load(open("grafana/provisioning/dashboards/mongo2pg.yml"))
check(provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards", "grafana: provider path")
dash = json.load(open("grafana/mongo2pg.json"))
for p in dash["panels"]:
    if p.get("type") != "row":
        check(p.get("datasource", {}).get("uid") in uids, f"grafana: panel {p.get('title')} datasource")

# Dockerfile: multi-stage, non-root, healthcheck on /healthz, mongo2pg entrypoint.
docker = Path("deploy/Dockerfile").read_text()
check(len(re.findall(r"^FROM ", docker, re.M)) >= 2, "Dockerfile: multi-stage build")
users = re.findall(r"^USER\s+(\S+)", docker, re.M)
check(bool(users) and users[-1].split(":")[0] not in ("root", "0"), "Dockerfile: runs as a non-root user")
check(re.search(r"^HEALTHCHECK .*", docker, re.M) is not None and "/healthz" in docker, "Dockerfile: HEALTHCHECK on /healthz")
check(re.search(r'^ENTRYPOINT \["mongo2pg"\]', docker, re.M) is not None, "Dockerfile: entrypoint mongo2pg")
check(re.search(r"^ARG BINARY_STAGE=build$", docker, re.M) is not None,
      "Dockerfile: the binary is compiled from source unless BINARY_STAGE says otherwise")
check("COPY --from=binary /usr/local/bin/mongo2pg" in docker, "Dockerfile: runtime copies the binary stage")

if problems:
    print("\n".join("FAIL " + p for p in problems))
    sys.exit(1)
print("all structural checks passed")
PY

step "deploy checks passed"
