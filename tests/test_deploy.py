"""deploy/k8s on paper, strictly: nothing here runs a cluster, so every rendered object is
validated against the Kubernetes OpenAPI schemas (custom resources against their CRDs),
and what the manifests name (ports, models, metrics, command lines) is read from the code.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from helpers import ROOT

from sonic_bench import __version__
from sonic_bench.cli import build_parser
from sonic_bench.metrics.collect import SERIES
from sonic_bench.model.repository import MODEL_DYNAMIC_BATCHING, MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.triton.install import find_install
from sonic_bench.triton.server import ServerConfig

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
CRD_VALIDATOR = K8S / "validate"
CUSTOM = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed"
)


def render(overlay: str) -> list[dict]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def _kind(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _container(objects: list[dict], deployment: str, name: str) -> dict:
    spec = _kind(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    (found,) = [c for c in spec.get("containers", []) + spec.get("initContainers", [])
                if c["name"] == name]  # fmt: skip
    return found


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay):
    version = kubernetes_validate.latest_version()
    objects = render(overlay)
    core = [o for o in objects if o["apiVersion"] not in CUSTOM]
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)
    custom = [o for o in objects if o["apiVersion"] in CUSTOM]
    if custom:
        if not (CRD_VALIDATOR / "node_modules").exists():
            pytest.skip("CRD schemas not installed (make test runs npm ci in deploy/k8s/validate)")
        done = subprocess.run(
            ["node", str(CRD_VALIDATOR / "validate-crds.mjs")],
            input=json.dumps(custom),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_crd_validator_rejects_a_broken_scaled_object():
    if not (CRD_VALIDATOR / "node_modules").exists():
        pytest.skip("CRD schemas not installed (make test runs npm ci in deploy/k8s/validate)")
    broken = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {}, "triggers": "prometheus"},
    }
    done = subprocess.run(
        ["node", str(CRD_VALIDATOR / "validate-crds.mjs")],
        input=json.dumps([broken]),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "invalid ScaledObject" in done.stdout


@needs_kubectl
def test_triton_ports_and_models_are_the_codes():
    objects = render("keda")
    defaults = ServerConfig(repository=Path("."))
    triton = _container(objects, "triton", "triton")
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports == {"http": defaults.http_port, "grpc": defaults.grpc_port,
                     "metrics": defaults.metrics_port}  # fmt: skip
    service = {p["name"]: p["port"] for p in _kind(objects, "Service", "triton")["spec"]["ports"]}
    assert service == ports
    for arg, port in (
        ("--http-port", "http"),
        ("--grpc-port", "grpc"),
        ("--metrics-port", "metrics"),
    ):
        assert f"{arg}={ports[port]}" in triton["args"]
    assert {"/v2/health/ready", "/v2/health/live"} <= {
        triton[probe]["httpGet"]["path"] for probe in ("readinessProbe", "livenessProbe")
    }
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    served = {
        p.parent.name for p in (ROOT / "model_repository" / "triton-gpu").glob("*/config.pbtxt")
    }
    assert {MODEL_DYNAMIC_BATCHING, MODEL_NO_DYNAMIC_BATCHING} <= served


@needs_kubectl
def test_tritonserver_knows_every_flag_the_manifest_passes():
    """The embedded server is the same tritonserver: its --help lists the flags."""
    triton = _container(render("keda"), "triton", "triton")
    done = subprocess.run(
        [str(find_install().binary), "--help"],
        capture_output=True,
        text=True,
        env=find_install().environment(),
    )
    for arg in triton["args"]:
        assert arg.split("=", 1)[0] in done.stdout + done.stderr, arg


def _metrics_in(text: str) -> set[str]:
    return set(re.findall(r"\bnv_[a-z_]+\b", text))


@needs_kubectl
def test_metric_names_in_queries_and_dashboard_are_the_ones_recorded():
    dashboard = (K8S / "base" / "sonic-bench-dashboard.json").read_text()
    panels = {p["title"] for p in json.loads(dashboard)["panels"]}
    assert panels == {"GPU utilization", "Inferences per second", "Executed batch size",
                      "Queue time per request"}  # fmt: skip
    scaled = _kind(render("keda"), "ScaledObject", "triton")
    queries = dashboard + scaled["spec"]["triggers"][0]["metadata"]["query"]
    queries += (K8S / "overlays" / "hpa" / "prometheus-adapter-rules.yaml").read_text()
    used = _metrics_in(queries) - {"nv_inference_queue_us_per_request"}  # the adapter's name
    assert used and used <= set(SERIES), used - set(SERIES)
    hpa = _kind(render("hpa"), "HorizontalPodAutoscaler", "triton")
    assert (
        hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "nv_inference_queue_us_per_request"
    )


@needs_kubectl
def test_command_lines_parse_with_the_code():
    objects = render("keda")
    sonic = build_parser()
    for container in ("locust", "model-export"):
        deployment = {"locust": "locust-master", "model-export": "triton"}[container]
        spec = _container(objects, deployment, container)
        if container == "model-export":
            (script,) = spec["args"]
            export = script.split("&&")[0].split()
            assert export[0] == "sonic-bench"
            sonic.parse_args(export[1:])
    for deployment in ("locust-master", "locust-worker"):
        parsed = _parse_locust(_container(objects, deployment, "locust")["args"])
        assert parsed["locustfile"].endswith("loadgen/sonic.py")
    master = _parse_locust(_container(objects, "locust-master", "locust")["args"])
    assert master["host"] == "triton:8001"  # gRPC, the default protocol of both doors
    assert master["prometheus_url"] == "http://prometheus:9090"


# Locust's parser with the sonic-bench options, in a process of its own: importing Locust
# monkey-patches the process for gevent, which the test process must not be.
PARSE = """
import json, sys
from locust.argument_parser import get_parser
from sonic_bench.loadgen.options import add_arguments
parser = get_parser()
add_arguments(parser)
print(json.dumps(vars(parser.parse_args(json.loads(sys.argv[1]))), default=str))
"""


def _parse_locust(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PARSE, json.dumps(args)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_image_is_set_up_by_the_makefile():
    """One set of set-up steps: the Dockerfile runs `make setup`, nothing of its own."""
    runs = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("RUN")
    ]
    assert any("make setup" in line for line in runs)
    installs = [line for line in runs if "pip install" in line or "sonic-bench model" in line]
    assert not installs, installs


def _containers(objects: list[dict]):
    for o in objects:
        if o["kind"] == "Deployment":
            pod = o["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                yield o["metadata"]["name"], pod, c


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_unprivileged_and_bounded(overlay):
    """Non-root, no privilege escalation, a read-only root file system, no capabilities,
    a default seccomp profile, and limits on CPU and memory: for every container."""
    for deployment, pod, container in _containers(render(overlay)):
        where = f"{deployment}/{container['name']}"
        pod_context = pod.get("securityContext", {})
        context = container.get("securityContext", {})
        assert context or pod_context, f"{where}: no securityContext"
        assert {**pod_context, **context}.get("runAsNonRoot") is True, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("capabilities", {}).get("drop") == ["ALL"], where
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        limits = container.get("resources", {}).get("limits", {})
        assert {"cpu", "memory"} <= set(limits), f"{where}: limits {limits}"


@needs_kubectl
def test_only_the_load_and_prometheus_reach_triton():
    objects = render("keda")
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    rules = policies["triton-clients"]["ingress"]
    senders = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in rules
        for p in rule["from"]
        if "podSelector" in p
    }
    assert senders == {"locust-worker", "locust-master", "prometheus"}
    inference = [r for r in rules if {p["port"] for p in r["ports"]} == {8000, 8001}]
    assert inference and all("prometheus" not in json.dumps(r) for r in inference)
    # No Service is exposed outside the cluster: the web UIs are for port-forward.
    services = [o for o in objects if o["kind"] == "Service"]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)


@needs_kubectl
def test_what_must_outlive_a_pod_is_on_a_volume_claim_and_no_password_is_committed():
    objects = render("keda")
    master = _kind(objects, "Deployment", "locust-master")["spec"]["template"]["spec"]
    prometheus = _kind(objects, "Deployment", "prometheus")["spec"]["template"]["spec"]
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    for pod, volume in ((master, "results"), (prometheus, "data")):
        (found,) = [v for v in pod["volumes"] if v["name"] == volume]
        assert found["persistentVolumeClaim"]["claimName"] in claims
    grafana = _container(objects, "grafana", "grafana")
    env = {e["name"]: e for e in grafana["env"]}
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    assert not any(o["kind"] == "Secret" for o in objects)


@needs_kubectl
def test_the_harness_image_is_pinned_to_the_package_version():
    images = {c["image"] for _, _, c in _containers(render("keda"))}
    harness = {i for i in images if i.startswith("sonic-bench")}
    assert harness == {f"sonic-bench:{__version__}"}
    assert not any(i.endswith(":latest") or ":" not in i for i in images)


def test_the_image_runs_as_a_user_of_its_own():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")


@needs_kubectl
def test_behind_the_gateway_only_it_reaches_triton_and_the_token_is_a_secret():
    objects = render("gateway")
    rules = _kind(objects, "NetworkPolicy", "triton-clients")["spec"]["ingress"]
    inference = [r for r in rules if {p["port"] for p in r["ports"]} == {8000, 8001}]
    (door,) = inference
    assert [p["podSelector"]["matchLabels"] for p in door["from"]] == [
        {"app.kubernetes.io/name": "gateway"}
    ]
    master = _container(objects, "locust-master", "locust")
    parsed = _parse_locust(master["args"])
    assert parsed["host"] == "gateway:8001"
    assert parsed["ssl_ca"] == "/etc/gateway-tls/tls.crt"
    assert parsed["header"] == ["authorization: Bearer $(GATEWAY_TOKEN)"]
    for deployment, container in (("locust-master", "locust"), ("gateway", "nginx")):
        env = {e["name"]: e for e in _container(objects, deployment, container)["env"]}
        assert env["GATEWAY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "gateway-token"
    assert not [o for o in objects if o["kind"] == "Secret"]  # made in the cluster, not here


def _directives(text: str) -> set[str]:
    """The rules of an nginx config that must agree, as normalized lines."""
    wanted = (
        "least_conn", "grpc_pass", "grpc_next_upstream", "proxy_next_upstream", "return 401",
        "client_max_body_size", "proxy_http_version", "proxy_request_buffering", "map ",
        "keepalive ",
    )  # fmt: skip
    lines = {" ".join(line.split()) for line in text.splitlines()}
    return {line for line in lines if line.startswith(wanted)}


def test_the_cluster_gateway_has_the_rules_of_the_one_the_harness_starts():
    local = (ROOT / "deploy" / "gateway" / "nginx.conf").read_text().replace("$$", "$")
    cluster = (K8S / "overlays" / "gateway" / "gateway.conf.template").read_text()
    assert _directives(local) == _directives(cluster)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_the_cluster_gateway_rules_pass_nginx_t(tmp_path):
    """The real nginx checks the cluster's rules (Debian's 1.22 here: the 1.27-only
    `resolve` and `http2 on` are spelled the 1.22 way, the cluster's names made local)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=t", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    rules = (K8S / "overlays" / "gateway" / "gateway.conf.template").read_text()
    rules = (
        rules.replace("${GATEWAY_TOKEN}", "t")
        .replace(" resolve;", ";")
        .replace("triton-pods.sonic-bench.svc.cluster.local", "127.0.0.1")
        .replace("kube-dns.kube-system.svc.cluster.local", "127.0.0.1")
        .replace("/etc/gateway-tls", str(tmp_path))
        .replace("    http2 on;\n", "")
        .replace("listen 8001 ssl;", "listen 127.0.0.1:8001 ssl http2;")
        .replace("listen 8000 ssl;", "listen 127.0.0.1:8000 ssl;")
    )
    (tmp_path / "rules.conf").write_text(rules)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ include {tmp_path}/rules.conf; }}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
