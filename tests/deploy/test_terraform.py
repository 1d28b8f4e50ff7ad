"""The Terraform deployment (deploy/terraform), proved without AWS: formatting, validation,
`terraform test` with a mocked provider, checkov with no failed check, every variable used and
described, and a real apply + destroy of the defaults against a moto server.

Terraform runs on copies of the configuration in temp folders, so nothing (.terraform/, state)
is ever written into the repository. Providers come from a filesystem mirror when one is found
(TF_PLUGIN_DIR, or a standard mirror folder), from the registry otherwise. The moto run is the
slow part (about two minutes): it starts in the background when the module starts, so the other
checks run meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "deploy" / "terraform"
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
CHECKOV = TOOLS_BIN / "checkov"
MOTO_SERVER = TOOLS_BIN / "moto_server"

# Filesystem mirrors Terraform also searches by default on Linux, plus where this project's
# machines keep one; TF_PLUGIN_DIR, when set, wins.
MIRRORS = (
    Path("/opt/tf-plugins"),
    Path.home() / ".terraform.d" / "plugins",
    Path.home() / ".local" / "share" / "terraform" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
)
AWS_PROVIDER = Path("registry.terraform.io") / "hashicorp" / "aws"

# The two variables without a default, as a deployment sets them.
REQUIRED_VARS = {
    "image": "ghcr.io/example/ml-model-manager:0.1.0",
    "allowed_cidrs": ["203.0.113.0/24"],
}
MOTO_TEST = "test_apply_and_destroy_defaults_against_moto"


# --- Terraform itself -------------------------------------------------------------------------


def terraform_path() -> str:
    path = shutil.which("terraform")
    if path is None:
        pytest.fail("terraform is not installed (or not on PATH): install Terraform >= 1.7 "
                    "(https://developer.hashicorp.com/terraform/install) to run the deployment checks")
    return path


def mirror_dir() -> Path | None:
    if os.environ.get("TF_PLUGIN_DIR"):
        return Path(os.environ["TF_PLUGIN_DIR"])
    return next((m for m in MIRRORS if (m / AWS_PROVIDER).is_dir()), None)


@pytest.fixture(scope="module")
def tf_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for every terraform run: no checkpoint calls, no inherited TF_VAR_* or
    TF_CLI_ARGS, and a CLI config that installs providers from the mirror when there is one."""
    config = tmp_path_factory.mktemp("tf-cli") / "terraform.rc"
    mirror = mirror_dir()
    if mirror is None:
        config.write_text("# no provider mirror found: providers come from the registry\n")
    else:
        config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = {json.dumps(str(mirror))}\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_VAR_", "TF_CLI_ARGS", "AWS_PROFILE", "AWS_ACCESS_KEY", "AWS_SECRET",
                                "AWS_SESSION", "AWS_DEFAULT_REGION", "AWS_REGION"))
           and k not in ("TF_DATA_DIR", "TF_WORKSPACE", "TF_LOG", "TF_LOG_PATH")}
    env.update(CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
               TF_CLI_CONFIG_FILE=str(config), AWS_EC2_METADATA_DISABLED="true")
    return env


def copy_config(target: Path) -> Path:
    """The configuration, its templates, tests and lock file; never .terraform/ or state."""
    shutil.copytree(TF_DIR, target, ignore=shutil.ignore_patterns(
        ".terraform", "*.tfstate", "*.tfstate.*", ".terraform.tfstate.lock.info", "*.tfvars"))
    return target


class Runner:
    """Runs terraform in one working copy; child processes can be stopped from another thread."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = {**env, "TF_DATA_DIR": str(workdir / ".terraform")}
        self.children: list[subprocess.Popen[str]] = []
        self.stopped = False

    def __call__(self, *args: str, timeout: float = 120,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.stopped:
            raise RuntimeError("stopped")
        cmd = [terraform_path(), *args]
        proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.children.append(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"terraform {' '.join(args)} ran past {timeout} s:\n{out[-6000:]}") from None
        finally:
            self.children.remove(proc)
        result = subprocess.CompletedProcess(cmd, proc.returncode, out, "")
        if check and proc.returncode != 0:
            raise AssertionError(f"terraform {' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}")
        return result

    def stop(self) -> None:
        """Interrupt what runs (terraform stops gracefully on SIGINT), then kill what is left."""
        self.stopped = True
        for proc in list(self.children):
            proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        for proc in list(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory, tf_env: dict[str, str]) -> Runner:
    """A working copy, initialised once for validate and test."""
    runner = Runner(copy_config(tmp_path_factory.mktemp("tf") / "terraform"), tf_env)
    runner("init", "-backend=false", "-input=false", "-no-color")
    return runner


# --- The moto run, started in the background --------------------------------------------------

MOTO_OVERRIDE = """\
# Test only: the provider talks to moto on {endpoint}.
provider "aws" {{
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
  # An API moto lacks fails fast instead of being retried for minutes.
  max_retries = 3

  endpoints {{
{endpoints}
  }}
}}

# moto does not implement MonitorInstances (detailed monitoring); the mocked tests check it is on.
resource "aws_instance" "this" {{
  monitoring = false
}}

# moto has no filesystem to flush: skip stopping the instance (and its waits) before the detach.
resource "aws_volume_attachment" "data" {{
  stop_instance_before_detaching = false
}}
"""
MOTO_SERVICES = ("cloudwatch", "ec2", "elbv2", "iam", "kms", "logs", "s3", "sns", "ssm", "sts", "wafv2")


def wait_for_port(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"moto_server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"moto_server did not listen on {port} within 30 s:\n{log.read_text()[-3000:]}")


def moto_apply_destroy(runner: Runner) -> dict[str, Any]:
    """Apply the defaults against a fresh moto server, read the outputs and state, destroy."""
    if not MOTO_SERVER.exists():
        raise AssertionError(f"{MOTO_SERVER} is missing: run `make install` (deploy/tools-requirements.txt)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = runner.workdir / "moto.log"
    (runner.workdir / "moto_override.tf").write_text(MOTO_OVERRIDE.format(
        endpoint=endpoint,
        endpoints="\n".join(f'    {service:<10} = "{endpoint}"' for service in MOTO_SERVICES)))
    (runner.workdir / "moto.auto.tfvars.json").write_text(json.dumps(REQUIRED_VARS))
    with log.open("wb") as log_file:
        server = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server, log)
        runner("init", "-backend=false", "-input=false", "-no-color")
        started = time.monotonic()
        runner("apply", "-auto-approve", "-input=false", "-no-color", timeout=300)
        applied = time.monotonic()
        outputs = json.loads(runner("output", "-json", "-no-color").stdout)
        resources = runner("state", "list", "-no-color").stdout.split()
        # The state is fresh from the apply: no refresh needed.
        runner("destroy", "-auto-approve", "-input=false", "-refresh=false", "-no-color", timeout=300)
        left = runner("state", "list", "-no-color").stdout.split()
        return {"outputs": {k: v["value"] for k, v in outputs.items()}, "resources": resources,
                "left": left, "apply_s": applied - started, "destroy_s": time.monotonic() - applied}
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- moto_server log ({log}), last lines ---\n"
                             f"{log.read_text(errors='replace')[-4000:]}") from None
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module", autouse=True)
def moto_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             tf_env: dict[str, str]) -> Iterator[concurrent.futures.Future[dict[str, Any]] | None]:
    """Starts the moto apply + destroy when this module starts (only if its test was selected),
    so that its minutes of waiting on AWS-style polling overlap the other checks."""
    if not any(isinstance(item, pytest.Function) and item.name == MOTO_TEST and item.module is request.module
               for item in request.session.items):
        yield None
        return
    runner = Runner(copy_config(tmp_path_factory.mktemp("tf-moto") / "terraform"), tf_env)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(moto_apply_destroy, runner)
        try:
            yield future
        finally:
            if not future.done():  # the module ended early (failure, interrupt): stop it
                runner.stop()
            concurrent.futures.wait([future], timeout=60)


# --- The checks --------------------------------------------------------------------------------


def test_terraform_fmt_is_clean(tf_env: dict[str, str]) -> None:
    # Read-only (-check), so it runs on the repository's files themselves.
    result = subprocess.run([terraform_path(), "fmt", "-check", "-recursive", "-diff", "-no-color"],
                            cwd=TF_DIR, env=tf_env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        f"run `terraform fmt -recursive deploy/terraform`:\n{result.stdout}{result.stderr}")


def test_terraform_validate(tf: Runner) -> None:
    assert "The configuration is valid" in tf("validate", "-no-color").stdout


def test_terraform_test_with_mocked_provider(tf: Runner) -> None:
    out = tf("test", "-no-color", timeout=240).stdout
    summary = re.search(r"(\d+) passed, (\d+) failed", out)
    assert summary is not None, out
    assert int(summary.group(1)) >= 11 and summary.group(2) == "0", out
    for name in ("plan_with_defaults", "apply_with_defaults", "apply_with_waf",
                 "grpc_straight_to_the_instance", "grpc_through_the_alb_with_the_waf",
                 "grpc_with_the_waf_needs_a_certificate"):
        assert f'run "{name}"... pass' in out, out


def test_lock_file_pins_the_aws_provider() -> None:
    with (TF_DIR / ".terraform.lock.hcl").open() as f:
        lock = hcl2.load(f)
    [aws] = [p for p in lock["provider"] if "registry.terraform.io/hashicorp/aws" in unquote(next(iter(p)))]
    entry = next(iter(aws.values()))
    assert unquote(entry["version"]).startswith("5.") and unquote(entry["constraints"]) == "~> 5.0"
    assert entry["hashes"], "the lock file records no hash"


# checkov sees only resources whose count is not 0, so the WAF resources are scanned with
# enable_waf on, with and without a certificate, and the gRPC ones with expose_grpc on.
CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0000-example"
CHECKOV_VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "grpc": {"expose_grpc": True},
    "waf": {"enable_waf": True},
    "waf-https": {"enable_waf": True, "certificate_arn": CERTIFICATE_ARN},
    "waf-https-grpc": {"enable_waf": True, "certificate_arn": CERTIFICATE_ARN, "expose_grpc": True},
}


def test_checkov_finds_nothing_and_every_skip_is_inline_with_a_reason(
        tmp_path: Path, tf_env: dict[str, str]) -> None:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make install` (deploy/tools-requirements.txt)")
    procs = {}
    for name, values in CHECKOV_VARIANTS.items():
        var_file = tmp_path / f"{name}.tfvars.json"
        var_file.write_text(json.dumps({**REQUIRED_VARS, **values}))
        procs[name] = subprocess.Popen(
            [str(CHECKOV), "--directory", str(TF_DIR), "--framework", "terraform", "--skip-download",
             "--var-file", str(var_file), "--output", "json"],
            env=tf_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        report = json.loads(out)
        summary, results = report["summary"], report["results"]
        failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
                  for c in results.get("failed_checks", [])]
        assert summary["failed"] == 0 and not failed, f"{name}: checkov failed checks:\n" + "\n".join(failed)
        assert summary["parsing_errors"] == 0, f"{name}: {err[-3000:]}"
        assert summary["passed"] > 100, f"{name}: checkov scanned too little: {summary}"
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment") or ""
            assert len(reason) >= 30, (
                f"{name}: the skip of {check['check_id']} on {check['resource']} lacks a reason")
    # Every skip is an inline comment with a reason (none comes from the command line or a config file).
    for tf_file in TF_DIR.glob("*.tf"):
        for line in tf_file.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.fullmatch(r"\s*#checkov:skip=CKV2?_AWS_\d+:.{30,}", line), f"{tf_file.name}: {line}"
    assert not list(ROOT.glob(".checkov.y*ml")) and not list(TF_DIR.glob(".checkov.y*ml"))


def unquote(value: Any) -> Any:
    """python-hcl2 8 keeps HCL's quotes around strings and keys."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def test_every_variable_is_described_typed_and_used() -> None:
    variables: dict[str, dict[str, Any]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for tf_file in sorted(TF_DIR.glob("*.tf")):
        with tf_file.open() as f:
            parsed = hcl2.load(f)
        for block in parsed.get("variable", []):
            variables.update({unquote(k): v for k, v in block.items()})
        for block in parsed.get("output", []):
            outputs.update({unquote(k): v for k, v in block.items()})
    assert {"name", "region", "instance_type", "allowed_cidrs", "ssh_cidrs", "image", "memory_budget",
            "api_key_ssm_parameter", "enable_waf", "expose_grpc", "log_retention_days",
            "ami_id"} <= variables.keys()
    # References outside variables.tf (a variable's own validation does not count as a use).
    code = "\n".join(p.read_text() for p in TF_DIR.glob("*.tf") if p.name != "variables.tf")
    for name, spec in variables.items():
        assert len(unquote(spec.get("description", ""))) >= 10, f"variable {name} has no description"
        assert "type" in spec, f"variable {name} has no type"
        assert re.search(rf"\bvar\.{name}\b", code), f"variable {name} is never used"
    for name, spec in outputs.items():
        assert unquote(spec.get("description", "")), f"output {name} has no description"
    assert {"instance_id", "public_ip", "public_dns", "service_url", "grpc_address",
            "artifact_bucket", "log_group"} <= outputs.keys()


def log_line(level: str, logger: str, source: Path, prefix: str, *args: object) -> str:
    """A line as the server logs it (its format: '%(asctime)s %(levelname)s %(name)s: %(message)s'),
    from the message format found in its source, so that a reworded message fails this test."""
    match = re.search(r'log\.\w+\(\s*"(' + re.escape(prefix) + r'[^"]*)"', source.read_text())
    assert match is not None, f"no log call with a message starting {prefix!r} in {source}"
    return f"2026-01-01 12:00:00,000 {level} {logger}: {match.group(1) % args}"


def matches(pattern: str, line: str) -> bool:
    """CloudWatch Logs filter pattern of quoted terms: every term appears in the event."""
    terms = re.findall(r'"([^"]*)"', pattern)
    assert terms and re.fullmatch(r'(\s*"[^"]*")+\s*', pattern), f"unexpected pattern {pattern!r}"
    return all(term in line for term in terms)


def test_metric_filters_match_the_servers_log_lines() -> None:
    with (TF_DIR / "cloudwatch.tf").open() as f:
        parsed = hcl2.load(f)
    filters = {unquote(name): spec for block in parsed["resource"]
               for kind, resources in block.items() if unquote(kind) == "aws_cloudwatch_log_metric_filter"
               for name, spec in resources.items()}
    patterns = {name: json.loads(spec["pattern"]) for name, spec in filters.items()}
    src = ROOT / "src" / "model_manager"
    errors, cache = src / "api" / "errors.py", src / "serving" / "cache.py"
    failed_503 = log_line("WARNING", "model_manager.api.errors", errors, "request failed: status=%d",
                          503, "POST", "/v2/models/iris/infer", "iris v2 is not loaded")
    failed_500 = log_line("ERROR", "model_manager.api.errors", errors, "request failed: status=500",
                          "POST", "/v2/models/iris/infer", "ZeroDivisionError")
    load_failed = log_line("WARNING", "model_manager.serving.cache", cache, "loading %s v%d failed",
                           "iris", 2, 3, "not an ONNX file")
    assert matches(patterns["request_failures"], failed_503)
    assert matches(patterns["request_failures"], failed_500)
    assert not matches(patterns["request_failures"], failed_503.replace("status=503", "status=404"))
    assert not matches(patterns["request_failures"], load_failed)
    assert matches(patterns["load_failures"], load_failed)
    assert not matches(patterns["load_failures"], failed_503)


@pytest.mark.timeout(420)
def test_apply_and_destroy_defaults_against_moto(
        moto_run: concurrent.futures.Future[dict[str, Any]] | None) -> None:
    assert moto_run is not None
    run = moto_run.result(timeout=400)
    outputs = run["outputs"]
    assert re.fullmatch(r"i-[0-9a-f]+", outputs["instance_id"])
    assert re.fullmatch(r"http://ec2-[0-9-]+\.[a-z0-9.-]+amazonaws\.com:8080",
                        outputs["service_url"]), outputs
    assert outputs["service_url"] == f"http://{outputs['public_dns']}:8080"
    assert outputs["log_group"] == "/model-manager/server"
    assert outputs["artifact_bucket"].startswith("model-manager-artifacts-")
    # Null outputs are left out of `terraform output -json`.
    assert "alb_dns_name" not in outputs and "web_acl_arn" not in outputs
    for resource in ("aws_instance.this", "aws_volume_attachment.data", "aws_flow_log.vpc",
                     "aws_default_security_group.default", "aws_kms_key.this",
                     "aws_s3_bucket_public_access_block.artifacts",
                     "aws_cloudwatch_metric_alarm.load_failures"):
        assert resource in run["resources"]
    assert not any(r.startswith(("aws_lb.", "aws_wafv2")) for r in run["resources"])
    assert run["left"] == [], f"destroy left {run['left']}"
