"""The Kubernetes manifests (deploy/kubernetes), proved without a cluster: every manifest is valid
against the Kubernetes 1.30 schemas (unknown fields rejected), the kustomization lists them all,
checkov finds nothing, HAProxy accepts the routing config, and what a user relies on holds (non-root,
read-only root, real health paths, a grace period past the drain, one replica per model). Finally
the manifests' own settings and first-key command start a real server on PostgreSQL and S3.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from model_manager.cli.main import serve
from model_manager.settings import parse_duration, parse_size
from tests.postgres import PostgresServer
from tests.s3 import S3Server
from tests.support import CLI, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "kubernetes"
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
CHECKOV = TOOLS_BIN / "checkov"
KUBERNETES_VALIDATE = TOOLS_BIN / "kubernetes-validate"
KUBERNETES_VERSION = "1.30.0"
NAMESPACE = "model-manager"


# --- Reading the manifests ---------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """Every manifest, the one-off first-key Job included; not the kustomization itself."""
    return sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str, name: str) -> dict[str, Any]:
    found = [doc for path in manifest_files() for doc in documents(path)
             if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def haproxy_sections() -> dict[str, list[str]]:
    """haproxy.cfg as {"backend replicas": [its lines without comments], ...}."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in find("ConfigMap", "haproxy")["data"]["haproxy.cfg"].splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not raw[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def quantity_bytes(text: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", text)
    assert match is not None, f"unexpected memory quantity {text!r}"
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


# --- The files as a whole ----------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), "a resource is listed twice"
    for resource in resources:
        assert (K8S_DIR / resource).is_file(), f"kustomization.yaml lists a missing file: {resource}"
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == set(resources), f"not in kustomization.yaml: {sorted(on_disk - set(resources))}"
    # The first-key Job runs once, by hand, before the replicas can start: never on every apply.
    assert not any(r.startswith("first-key") for r in resources)


def test_every_manifest_is_valid_kubernetes_with_no_unknown_field(tmp_path: Path) -> None:
    if not KUBERNETES_VALIDATE.exists():
        pytest.fail(f"{KUBERNETES_VALIDATE} is missing: run `make install` (deploy/tools-requirements.txt)")
    files = manifest_files()
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"^INFO (\S+) passed for resource", result.stdout, re.MULTILINE)
    expected = sum(len(documents(path)) for path in files)
    assert len(passed) == expected, result.stdout + result.stderr
    # --strict really rejects an unknown field (so the pass above means something).
    broken = yaml.safe_load((K8S_DIR / "deployment.yaml").read_text())
    container(broken)["imagePullPolicyy"] = "Always"
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, str(tmp_path / "broken.yaml")],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "imagePullPolicyy" in result.stdout + result.stderr


def test_every_resource_is_namespaced_and_labelled() -> None:
    for path in manifest_files():
        for doc in documents(path):
            meta = doc["metadata"]
            if doc["kind"] != "Namespace":
                assert meta.get("namespace") == NAMESPACE, f"{path.name}: {doc['kind']} {meta['name']}"
            assert meta["labels"]["app.kubernetes.io/part-of"] == "model-manager", path.name


def test_checkov_finds_nothing_and_every_skip_is_inline_with_a_reason(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make install` (deploy/tools-requirements.txt)")
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(K8S_DIR), "--framework", "kubernetes", "--skip-download",
         "--output", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    report = json.loads(result.stdout)
    summary, results = report["summary"], report["results"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in results.get("failed_checks", [])]
    assert summary["failed"] == 0 and not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, result.stderr[-3000:]
    assert summary["passed"] > 150, f"checkov scanned too little: {summary}"
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) >= 30, f"the skip of {check['check_id']} on {check['resource']} lacks a reason"
    # Skips are annotations on the resource they concern, never a config file or a flag.
    for path in manifest_files():
        for doc in documents(path):
            for key, value in (doc["metadata"].get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    assert re.fullmatch(r"CKV2?_K8S_\d+=.{30,}", value), f"{path.name}: {key}: {value}"
    assert not list(ROOT.glob(".checkov.y*ml")) and not list(K8S_DIR.glob(".checkov.y*ml"))


# --- HAProxy -----------------------------------------------------------------------------------


def haproxy_path() -> str:
    path = shutil.which("haproxy") or next(
        (str(p) for p in (Path("/usr/sbin/haproxy"), Path("/usr/local/sbin/haproxy")) if p.exists()), None)
    if path is None:
        pytest.fail("haproxy is not installed: `apt-get install -y haproxy` (the check needs no service)")
    return path


def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(find("ConfigMap", "haproxy")["data"]["haproxy.cfg"])
    result = subprocess.run([haproxy_path(), "-c", "-f", str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "Configuration file is valid" in out, out
    # Outside a cluster the headless Service's name does not resolve: its slots start empty
    # (init-addr ... none) and fill from DNS once running. Nothing else may warn.
    warnings = [line for line in out.splitlines() if "[WARNING]" in line]
    replicas_dns = f"model-manager-replicas.{NAMESPACE}.svc.cluster.local"
    others = [w for w in warnings if f"could not resolve address '{replicas_dns}'" not in w]
    assert not others, "\n".join(others)


def test_haproxy_sends_each_model_to_one_replica_by_consistent_hash() -> None:
    sections = haproxy_sections()
    replicas = sections["backend replicas"]
    assert "balance uri path-only depth 3" in replicas  # /v2/models/{name}/... -> /v2/models/{name}
    assert "hash-type consistent" in replicas
    [factor] = [line for line in replicas if line.startswith("hash-balance-factor ")]
    assert 100 < int(factor.split()[1]) <= 200
    frontend = sections["frontend http"]
    assert "acl is_inference path_beg /v2/models/ /v1/models/" in frontend
    assert "use_backend replicas if is_inference" in frontend
    assert "default_backend any_replica" in frontend
    assert "balance roundrobin" in sections["backend any_replica"]
    # A refused connection (a replica that just went) is retried on another one.
    assert {"retries 2", "option redispatch"} <= set(sections["defaults"])


def test_haproxy_finds_every_replica_through_the_headless_service() -> None:
    sections = haproxy_sections()
    headless = find("Service", "model-manager-replicas")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    deployment = find("Deployment", "model-manager")
    assert headless["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    [port] = [p for p in headless["spec"]["ports"] if p["name"] == "http"]
    target = f"model-manager-replicas.{NAMESPACE}.svc.cluster.local:{port['port']}"
    max_replicas = find("HorizontalPodAutoscaler", "model-manager")["spec"]["maxReplicas"]
    for backend in ("backend replicas", "backend any_replica"):
        lines = sections[backend]
        assert "option httpchk GET /v2/health/ready" in lines, backend
        [template] = [line.split() for line in lines if line.startswith("server-template ")]
        assert template[3] == target, backend
        assert int(template[2]) >= max_replicas, f"{backend}: fewer slots than the HPA's maxReplicas"
    assert "parse-resolv-conf" in sections["resolvers cluster"]
    [default_server] = [line for line in sections["defaults"] if line.startswith("default-server ")]
    assert "resolvers cluster" in default_server and "init-addr last,libc,none" in default_server
    assert "monitor-uri /healthz" in sections["frontend stats"]


def test_haproxy_runs_non_root_read_only_with_probes_on_its_health_frontend() -> None:
    haproxy = find("Deployment", "haproxy")
    spec, main = haproxy["spec"]["template"]["spec"], container(haproxy)
    assert haproxy["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": 8080, "stats": 8404}
    assert "bind :8080" in haproxy_sections()["frontend http"]
    assert "bind :8404" in haproxy_sections()["frontend stats"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "stats"}
    volume = next(v for v in spec["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == "haproxy"
    front = find("Service", "model-manager")
    assert front["spec"]["selector"] == {"app.kubernetes.io/name": "haproxy"}


# --- The model-manager Deployment --------------------------------------------------------------


def test_replicas_run_non_root_with_a_read_only_root_filesystem() -> None:
    deployment = find("Deployment", "model-manager")
    spec, main = deployment["spec"]["template"]["spec"], container(deployment)
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "deploy/docker/Dockerfile").read_text(),
                                re.MULTILINE)
    assert dockerfile_user is not None
    uid = int(dockerfile_user.group(1))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == uid and spec["securityContext"]["fsGroup"] == uid
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert find("ServiceAccount", spec["serviceAccountName"])["automountServiceAccountToken"] is False
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # What the server writes goes to emptyDirs: /data (the S3 store's cache) and /tmp.
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in ("/data", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]], path
    assert main["image"] == "ml-model-manager:0.1.0"


def test_probes_point_at_the_servers_health_paths() -> None:
    main = container(find("Deployment", "model-manager"))
    assert main["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert main["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                             {"name": "grpc", "containerPort": 8081, "protocol": "TCP"}]
    # The end-to-end test below calls these paths on a server started with the manifests' settings.


def test_grpc_port_is_named_set_and_reached_through_the_headless_service() -> None:
    main = container(find("Deployment", "model-manager"))
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["MODEL_MANAGER_PORT"] == "8080" and env["MODEL_MANAGER_GRPC_PORT"] == "8081"
    ports = {p["name"]: p for p in find("Service", "model-manager-replicas")["spec"]["ports"]}
    assert ports["grpc"]["port"] == 8081 and ports["grpc"]["targetPort"] == "grpc"
    assert ports["grpc"]["protocol"] == "TCP" and ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    # HAProxy routes HTTP by path, never gRPC: it only ever targets the HTTP port.
    assert "8081" not in find("ConfigMap", "haproxy")["data"]["haproxy.cfg"]


def test_network_policy_admits_http_from_haproxy_only_and_grpc_from_the_cluster() -> None:
    policy = find("NetworkPolicy", "model-manager")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "model-manager"}
    rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    assert set(rules) == {8080, 8081} and all(len(r["ports"]) == 1 for r in rules.values())
    assert rules[8080]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "haproxy"}}}]
    assert "from" not in rules[8081]  # gRPC clients call the replicas themselves


def test_grace_period_covers_the_prestop_sleep_and_the_drain() -> None:
    deployment = find("Deployment", "model-manager")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = parse_duration(find("ConfigMap", "model-manager")["data"]["MODEL_MANAGER_SHUTDOWN_TIMEOUT"])
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) > 0 and grace > int(pre_stop[1]) + drain, (grace, pre_stop, drain)


def test_memory_limit_is_comfortably_above_the_budget() -> None:
    resources = container(find("Deployment", "model-manager"))["resources"]
    budget = parse_size(find("ConfigMap", "model-manager")["data"]["MODEL_MANAGER_MEMORY_BUDGET"])
    limit = quantity_bytes(resources["limits"]["memory"])
    assert limit >= budget * 1.25 + 512 * 1024**2, (budget, limit)
    assert quantity_bytes(resources["requests"]["memory"]) == limit  # reserved, never overcommitted
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys(), kind


def serve_env_names() -> set[str]:
    assert isinstance(serve, click.Command)
    return {f"MODEL_MANAGER_{p.name.upper()}" for p in serve.params if p.name}


def test_every_setting_is_a_serve_flag_and_every_reference_exists() -> None:
    deployment = find("Deployment", "model-manager")
    main = container(deployment)
    config = find("ConfigMap", "model-manager")["data"]
    names = {e["name"] for e in main["env"]} | set(config)
    settings = {n for n in names if n.startswith("MODEL_MANAGER_")}
    assert settings <= serve_env_names(), f"not a serve flag: {sorted(settings - serve_env_names())}"
    assert {"MODEL_MANAGER_HOST", "MODEL_MANAGER_DB_URL", "MODEL_MANAGER_STORE_URL", "AWS_REGION"} <= names
    assert next(e for e in main["env"] if e["name"] == "MODEL_MANAGER_HOST")["value"] == "0.0.0.0"
    db = next(e for e in main["env"] if e["name"] == "MODEL_MANAGER_DB_URL")["valueFrom"]["secretKeyRef"]
    assert db["key"] in find("Secret", db["name"])["stringData"]
    assert config["MODEL_MANAGER_STORE_URL"].startswith("s3://")
    for source in main["envFrom"]:
        ref = source.get("configMapRef") or source["secretRef"]
        find("ConfigMap" if "configMapRef" in source else "Secret", ref["name"])
    aws = find("Secret", "model-manager-aws")["stringData"]
    assert set(aws) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_secrets_hold_only_marked_placeholders() -> None:
    secrets = [doc for path in manifest_files() for doc in documents(path) if doc["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} == {
        "model-manager-db", "model-manager-aws", "model-manager-client"}
    for secret in secrets:
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            if key != "MODEL_MANAGER_URL":
                assert "REPLACE-ME" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"
    assert "MODEL_MANAGER_API_KEY" in find("Secret", "model-manager-client")["stringData"]


def test_the_fleet_keeps_replicas_through_disruptions_and_scales_on_cpu() -> None:
    deployment = find("Deployment", "model-manager")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdb = find("PodDisruptionBudget", "model-manager")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    hpa = find("HorizontalPodAutoscaler", "model-manager")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "model-manager"}
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and hpa["spec"]["minReplicas"] >= 2


# --- The manifests' settings on a real server --------------------------------------------------


def job_command(db_url: str, data_dir: Path) -> list[str]:
    """The first-key Job's command line, as the kubelet expands it."""
    job = container(find("Job", "model-manager-first-key"))
    assert job["command"] == ["model-manager"]
    args = [a.replace("$(MODEL_MANAGER_DB_URL)", db_url) for a in job["args"]]
    return [CLI, *(str(data_dir) if a == "/tmp/keys" else a for a in args)]


@pytest.fixture
def replica(tmp_path: Path, postgres: PostgresServer, s3: S3Server) -> Iterator[tuple[ServerProcess, str]]:
    """A server started as a replica is: the Deployment's and the ConfigMap's environment, the
    database and bucket in place of the placeholders, after the first-key Job's command."""
    db_url, bucket = postgres.new_database(), s3.new_bucket("k8s-manifests")
    created = subprocess.run(job_command(db_url, tmp_path / "keys"), capture_output=True, text=True,
                             timeout=120, check=False)
    assert created.returncode == 0, created.stderr
    admin_key = created.stdout.strip()
    deployment = find("Deployment", "model-manager")
    env = {e["name"]: e["value"] for e in container(deployment)["env"] if "value" in e}
    env.update(find("ConfigMap", "model-manager")["data"])
    env.update(s3.env, MODEL_MANAGER_DB_URL=db_url,
               MODEL_MANAGER_STORE_URL=env["MODEL_MANAGER_STORE_URL"].replace(
                   "REPLACE-ME-artifact-bucket", bucket))
    server = ServerProcess(tmp_path / "data", env=env)  # --port and --data-dir: a free port, a temp dir
    yield server, admin_key
    server.stop()


@pytest.mark.timeout(180)
def test_a_replica_starts_on_0_0_0_0_with_the_first_key_and_answers_its_probes(
        replica: tuple[ServerProcess, str]) -> None:
    server, admin_key = replica
    main = container(find("Deployment", "model-manager"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert client.get(main[probe]["httpGet"]["path"]).status_code == 200, probe
        assert client.get("/api/models").status_code == 401
        assert client.get("/api/models", headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200
    # The gRPC port, as a gRPC client or load balancer checks it (health needs no key).
    with grpc.insecure_channel(server.grpc_address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert server.stop() == 0
