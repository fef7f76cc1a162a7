"""deploy/helm/dimee rendered by the real helm (v4, built by deploy/install-helm.sh) and every object checked
against the Kubernetes 1.37 schemas of kubernetes-validate; KEDA's ScaledObject and TriggerAuthentication, which
those schemas do not cover, checked field by field. The facts the chart must agree with (the port and paths a
role serves, topic and group names, the transaction timeout, the CLI's flags) are taken from the code."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import urlopen

import kubernetes_validate
import numpy as np
import pytest
import redis
import yaml
from dimee.state.base import NO_COPY, Update, Verdict, copy_mark
from dimee.state.redis_store import RedisCentroidStore
from typer.main import get_command

from dimee.cli import app
from dimee.dashboard.server import create_app
from dimee.method.control import ControlRule
from dimee.method.tiers import TIER_NAMES
from dimee.offline.capacity import Target, from_cost_file, plan, write_values
from dimee.offline.capacity.chart_values import chart_values
from dimee.streaming.health import Health, serve
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.kafka import TRANSACTION_TIMEOUT_MS
from tests.support.real_services import REDIS, needs

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "dimee"
GPU_VALUES = CHART / "ci" / "gpu-values.yaml"
COST_FILE = ROOT / "docs" / "measured" / "cost_model.json"
HELM_VERSION = "v4.3.2"
KUBERNETES = "1.37"
KEDA = "keda.sh/v1alpha1"
STAGES = ("router", *(f"worker-{tier}" for tier in TIER_NAMES), "sink")


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm the install step built; its absence fails every test that renders, in one line."""
    path = os.environ.get("DIMEE_HELM") or str(ROOT / ".services" / "helm" / "bin" / "helm")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no helm at {path}: run `bash deploy/install-helm.sh` (make test runs it) or set DIMEE_HELM",
                    pytrace=False)
    version = subprocess.run([path, "version", "--template", "{{.Version}}"], capture_output=True, text=True)
    if version.stdout.strip() != HELM_VERSION:
        pytest.fail(f"{path} is helm {version.stdout.strip() or '?'}, not {HELM_VERSION}: run "
                    "`bash deploy/install-helm.sh`", pytrace=False)
    return path


def render_text(helm: str, *files: Path, sets: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    args = [helm, "template", "dimee", str(CHART), "--namespace", "dimee"]
    for file in files:
        args += ["-f", str(file)]
    for item in sets:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def render(helm: str, *files: Path, sets: tuple[str, ...] = ()) -> list[dict]:
    done = render_text(helm, *files, sets=sets)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def planned_values(path: Path) -> Path:
    """What `dimee plan` writes for 100,000 samples/s with the cloud tier on GPUs."""
    rates = from_cost_file(COST_FILE).with_gpu({"cloud": 5000.0})
    target = Target(100_000, {"mobile": 0.5, "edge": 0.3, "cloud": 0.2}, 2500, gpu_tiers=frozenset({"cloud"}))
    write_values(path, plan(target, rates), "exactly-once", "test plan")
    return path


ARTIFACT_IMAGE = {"artifacts": {"image": {"repository": "registry.example.com/dimee-work", "tag": "v1"}}}
# gpu-values with the controller on: the mobile and edge workers record their audit copies in Redis (auditRate 0.05).
AUDITS = {"router": {"control": True}}
VALUE_SETS = ["default", "gpu", "plan", "artifact-image", "audits"]


@pytest.fixture(scope="module")
def value_sets(tmp_path_factory) -> dict[str, tuple[Path, ...]]:
    folder = tmp_path_factory.mktemp("values")
    (folder / "image.yaml").write_text(yaml.safe_dump(ARTIFACT_IMAGE))
    (folder / "audits.yaml").write_text(yaml.safe_dump(AUDITS))
    return {"default": (), "gpu": (GPU_VALUES,), "plan": (planned_values(folder / "plan.yaml"),),
            "artifact-image": (folder / "image.yaml",), "audits": (GPU_VALUES, folder / "audits.yaml")}


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def role_of(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def pods(docs: list[dict]) -> dict[str, dict]:
    """Role → pod spec, of every workload (StatefulSets, the dashboard's Deployment, the seed Job)."""
    kinds = ("StatefulSet", "Deployment", "Job")
    return {role_of(doc): doc["spec"]["template"]["spec"] for doc in docs if doc["kind"] in kinds}


def parsed(args: list[str]) -> tuple[str, dict]:
    """A container's args parsed by the real `dimee` command line (a typo'd or missing flag fails here)."""
    name, *rest = args
    command = get_command(app).commands[name]  # type: ignore[attr-defined]
    return name, command.make_context(name, rest).params


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes(helm, value_sets, name):
    args = [helm, "lint", str(CHART), *(arg for file in value_sets[name] for arg in ("-f", str(file)))]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}


def check_scaled_object(doc: dict, targets: dict[str, dict]) -> None:
    """The fields KEDA reads, since no bundled schema covers its kinds: a StatefulSet of this release to scale,
    a Kafka trigger on that role's own topic and group, never past the topic's partitions."""
    spec = doc["spec"]
    target = targets[spec["scaleTargetRef"]["name"]]
    assert (spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["apiVersion"]) == ("StatefulSet", "apps/v1")
    pod = target["spec"]["template"]["spec"]
    _, params = parsed(pod["containers"][0]["args"])
    env = env_of(pod)
    topics, role = Topics(env["DIMEE_TOPIC_PREFIX"]), role_of(target)
    trigger = spec["triggers"][0]
    assert len(spec["triggers"]) == 1 and trigger["type"] == "kafka"
    tier = params.get("tier")
    topic, group = (topics.tier(tier.value), topics.worker_group(tier.value)) if tier else (topics.samples,
                                                                                            topics.router_group)
    meta = trigger["metadata"]
    assert (meta["topic"], meta["consumerGroup"]) == (topic, group), role
    assert "kafka://" + meta["bootstrapServers"] == env["DIMEE_BROKER"]  # the brokers the role itself reads
    assert meta["allowIdleConsumers"] == "false" and int(meta["lagThreshold"]) > 0
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= params["partitions"], role


def chart_defaults() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(helm, value_sets, name):
    docs = render(helm, *value_sets[name])
    targets = of_kind(docs, "StatefulSet")
    for doc in docs:
        if doc["apiVersion"] == KEDA:
            assert doc["kind"] in ("ScaledObject", "TriggerAuthentication"), doc["kind"]
            if doc["kind"] == "ScaledObject":
                check_scaled_object(doc, targets)
        else:  # raises on the first field that breaks the schema; strict: no field the schema lacks
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert {role_of(doc) for doc in targets.values()} == set(STAGES)


def test_helm_template_piped_to_kubernetes_validate_passes(helm):
    """The command line an operator runs: errors fail it; the only warnings are KEDA's kinds (no schema)."""
    rendered = render_text(helm, GPU_VALUES)
    assert rendered.returncode == 0, rendered.stderr
    tool = Path(sys.executable).parent / "kubernetes-validate"  # the console script beside this interpreter
    command = [str(tool)] if tool.exists() else [sys.executable, "-m", "kubernetes_validate"]
    done = subprocess.run([*command, "--strict", "-k", KUBERNETES, "-"], input=rendered.stdout,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    warnings = [line for line in done.stdout.splitlines() if line.startswith("WARN")]
    assert warnings and all(KEDA in line for line in warnings), warnings
    assert "ERROR" not in done.stdout


def wsgi_status(path: str) -> int:
    """The status a stage role's health server (dimee/streaming/health.py) answers on `path`, asked over HTTP."""
    server = serve("127.0.0.1", 0, Health())  # a free port of this host
    try:
        with urlopen(f"http://127.0.0.1:{server.server_port}{path}", timeout=30) as reply:
            return reply.status
    except HTTPError as refused:
        return refused.code
    finally:
        server.shutdown()
        server.server_close()


class _NoStream:
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def snapshot(self) -> dict:
        return {}


def asgi_status(path: str) -> int:
    """The status the dashboard's app (dimee/dashboard/server.py) answers on `path`."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "headers": [],
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("pod", 80), "http_version": "1.1"}
    asyncio.run(create_app(_NoStream())(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def served_port(pod: dict) -> tuple[int, object]:
    """The port the container's own command line serves its probes on, and how to ask that server a path."""
    container = pod["containers"][0]
    name, params = parsed(container["args"])
    if name == "dashboard":
        return params["port"], asgi_status
    return params["metrics_port"], wsgi_status


def test_every_role_probes_the_port_and_paths_its_code_serves(helm):
    for role, pod in pods(render(helm)).items():
        if role == "seed":
            continue  # a Job: nothing to probe
        container = pod["containers"][0]
        port, status_of = served_port(pod)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probes = {kind: container.get(kind) for kind in ("livenessProbe", "readinessProbe")}
        assert all(probes.values()), role
        for kind, probe in probes.items():
            get = probe["httpGet"]
            assert ports[get["port"]] == port, (role, kind)
            assert status_of(get["path"]) != 404, (role, kind, get["path"])
        if role != "dashboard":  # a stage is ready only when its /readyz says so, not merely alive
            assert probes["readinessProbe"]["httpGet"]["path"] != probes["livenessProbe"]["httpGet"]["path"]


def test_the_metrics_annotations_name_the_port_the_role_serves_metrics_on(helm):
    docs = render(helm)
    scraped = 0
    for doc in docs:
        if doc["kind"] not in ("StatefulSet", "Deployment"):
            continue
        annotations = doc["spec"]["template"]["metadata"].get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        scraped += 1
        pod = doc["spec"]["template"]["spec"]
        port, status_of = served_port(pod)
        ports = {p["containerPort"]: p["name"] for p in pod["containers"][0]["ports"]}
        assert int(annotations["prometheus.io/port"]) == port and ports[port] == "metrics"
        assert status_of(annotations["prometheus.io/path"]) == 200
    assert scraped == len(STAGES)


MONITORING = "monitoring.coreos.com/v1"


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects an object with these labels."""
    operators = {"In": lambda key, values: labels.get(key) in values,
                 "NotIn": lambda key, values: labels.get(key) not in values,
                 "Exists": lambda key, values: key in labels, "DoesNotExist": lambda key, values: key not in labels}
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and all(
        operators[e["operator"]](e["key"], e.get("values", [])) for e in selector.get("matchExpressions", []))


def test_no_prometheus_operator_monitor_unless_asked(helm):
    assert not [doc for doc in render(helm) if doc["apiVersion"] == MONITORING]


@pytest.mark.parametrize(("key", "kind", "source"), [("serviceMonitor", "ServiceMonitor", "service"),
                                                      ("podMonitor", "PodMonitor", "pod")])
def test_a_service_or_pod_monitor_scrapes_every_stage_on_the_port_it_serves_metrics_on(helm, key, kind, source):
    """The Prometheus Operator's kinds, which kubernetes-validate has no schema for, checked field by field: it
    selects exactly the stages' Services (or pods), on the port named in them that the role's own command line
    serves /metrics on, and labels each series with the role as deploy/prometheus.yml does."""
    docs = render(helm, sets=(f"metrics.{key}.enabled=true", f"metrics.{key}.interval=30s",
                              f"metrics.{key}.labels.release=kube-prometheus-stack"))
    monitors = [doc for doc in docs if doc["apiVersion"] == MONITORING]
    assert [m["kind"] for m in monitors] == [kind]
    monitor, spec = monitors[0], monitors[0]["spec"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for doc in docs:  # the rest still validates
        if doc["apiVersion"] not in (KEDA, MONITORING):
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    endpoints = spec["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    assert endpoint["interval"] == "30s" and endpoint["path"] == "/metrics" and wsgi_status(endpoint["path"]) == 200
    workloads = {role_of(doc): doc for doc in docs if doc["kind"] in ("StatefulSet", "Deployment")}
    if kind == "ServiceMonitor":
        selected = {role_of(doc): doc for doc in docs if doc["kind"] == "Service"
                    and selects(spec["selector"], doc["metadata"]["labels"])}
    else:
        selected = {role: doc for role, doc in workloads.items()
                    if selects(spec["selector"], doc["spec"]["template"]["metadata"]["labels"])}
    assert set(selected) == set(STAGES)
    for role, doc in selected.items():
        pod = workloads[role]["spec"]["template"]["spec"]
        port, _ = served_port(pod)
        container_ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
        if kind == "ServiceMonitor":  # the Service's port of that name leads to the container's metrics port
            service_port = next(p for p in doc["spec"]["ports"] if p["name"] == endpoint["port"])
            assert container_ports[service_port["targetPort"]] == port, role
            assert selects({"matchLabels": doc["spec"]["selector"]}, workloads[role]["spec"]["template"]["metadata"]
                           ["labels"]), role
        else:
            assert container_ports[endpoint["port"]] == port, role
    relabel = endpoint["relabelings"][0]
    assert relabel == {"sourceLabels": [f"__meta_kubernetes_{source}_label_app_kubernetes_io_component"],
                       "targetLabel": "role"}
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"]
    assert {c["labels"]["role"] for c in scrape} == set(STAGES)  # the same role label values as compose's


def test_a_service_monitor_and_a_pod_monitor_together_are_refused(helm):
    done = render_text(helm, sets=("metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"))
    assert done.returncode != 0
    assert "enable one, or every pod is scraped twice" in done.stderr.splitlines()[0]


def test_the_schema_refuses_a_scrape_interval_prometheus_cannot_read(helm):
    done = render_text(helm, sets=("metrics.serviceMonitor.interval=soon",))
    assert done.returncode != 0 and "/metrics/serviceMonitor/interval" in done.stderr


def test_every_container_runs_a_command_line_the_cli_accepts(helm, value_sets):
    for name, files in value_sets.items():
        for role, pod in pods(render(helm, *files)).items():
            command, _ = parsed(pod["containers"][0]["args"])
            assert command == {"seed": "seed", "dashboard": "dashboard", "sink": "sink",
                               "router": "route"}.get(role, "work"), (name, role)


def test_stage_roles_are_statefulsets_fenced_by_their_pod_name(helm):
    """The instance id is the pod's name, which a StatefulSet keeps for a replacement pod (_stage.tpl)."""
    for doc in of_kind(render(helm), "StatefulSet").values():
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        _, params = parsed(container["args"])
        assert params["instance_id"] == "$(POD_NAME)"
        pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
        assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert doc["spec"]["podManagementPolicy"] == "Parallel"


def test_a_stopping_stage_has_time_to_finish_its_batch_and_commit(helm):
    """SIGKILL must not come before a commit could be given up on: the transaction timeout bounds it."""
    for doc in of_kind(render(helm), "StatefulSet").values():
        grace = doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > TRANSACTION_TIMEOUT_MS / 1000, role_of(doc)


def test_each_stage_requests_as_many_cpus_as_it_runs_threads(helm, value_sets):
    for name, files in value_sets.items():
        for doc in of_kind(render(helm, *files), "StatefulSet").values():
            container = doc["spec"]["template"]["spec"]["containers"][0]
            _, params = parsed(container["args"])
            resources = container["resources"]
            threads = params.get("threads") or 1  # the sink runs no model and takes no --threads
            assert int(resources["requests"]["cpu"]) == int(resources["limits"]["cpu"]) == threads, (name, doc)


def test_gpu_values_put_only_the_cloud_workers_on_gpus(helm):
    gpu = yaml.safe_load(GPU_VALUES.read_text())
    for doc in of_kind(render(helm, GPU_VALUES), "StatefulSet").values():
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        _, params = parsed(container["args"])
        on_gpu = params.get("device") == "cuda"
        assert on_gpu == (role_of(doc) == "worker-cloud")
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) == on_gpu
        assert (pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true") == on_gpu
        assert container["image"].startswith(gpu["image"]["gpuRepository"]) == on_gpu


def secret_refs(docs: list[dict]) -> dict[str, tuple[str, str]]:
    """Every env var read from a Secret: name → (secret, key)."""
    refs = {}
    for pod in pods(docs).values():
        for env in pod["containers"][0].get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs[env["name"]] = (ref["name"], ref["key"])
    return refs


def test_credentials_come_from_secrets_and_never_from_values(helm):
    docs = render(helm, GPU_VALUES)
    assert secret_refs(docs) == {"DIMEE_KAFKA_SASL_USERNAME": ("dimee-kafka", "username"),
                                 "DIMEE_KAFKA_SASL_PASSWORD": ("dimee-kafka", "password"),
                                 "DIMEE_STATE": ("dimee-redis", "url")}
    assert not of_kind(docs, "Secret") and not of_kind(docs, "ConfigMap")  # the chart holds no credential itself
    for role, pod in pods(docs).items():
        plain = {e["name"]: e.get("value") for e in pod["containers"][0]["env"] if "value" in e}
        assert not {"DIMEE_KAFKA_SASL_PASSWORD", "DIMEE_STATE"} & plain.keys()
        if role == "seed":  # it writes Redis only: no Kafka credential, nor even the brokers
            assert not [e["name"] for e in pod["containers"][0]["env"] if "KAFKA" in e["name"] or "BROKER" in e["name"]]
            continue
        assert plain["DIMEE_KAFKA_SSL_CAFILE"] == "/etc/dimee/kafka-tls/ca.crt"
    auth = next(iter(of_kind(docs, "TriggerAuthentication").values()))
    assert {(r["parameter"], r["name"]) for r in auth["spec"]["secretTargetRef"]} == {
        ("username", "dimee-kafka"), ("password", "dimee-kafka"), ("ca", "dimee-kafka-tls")}
    trigger = next(iter(of_kind(docs, "ScaledObject").values()))["spec"]["triggers"][0]
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


@pytest.mark.parametrize(("setting", "says"), [
    ("redis.url=redis://:hunter2@redis:6379/0", "redis.url holds credentials"),
    ("kafka.sasl.password=hunter2", "a password in values"),
    ("workers.cloud.autoscaling.maxReplicas=4", "topics.cloud has 3 partitions, so 1 would sit idle"),
    ("router.replicas=5", "topics.samples has 3 partitions"),
    ("kafka.securityProtocol=SASL_SSL", "needs kafka.sasl.mechanism"),
    ("kafka.sasl.mechanism=PLAIN", "router has no Secret"),
    ("artifacts.image.repository=registry.example.com/work", "artifacts.image.tag: pin"),
])
def test_a_bad_value_is_refused_in_one_line_that_names_it(helm, setting, says):
    done = render_text(helm, sets=(setting,))
    assert done.returncode != 0
    assert says in done.stderr.splitlines()[0]
    assert "hunter2" not in done.stderr


def test_keda_scales_each_tier_and_the_hpa_on_cpu_takes_over_without_it(helm):
    keda = render(helm)
    workers = {f"dimee-worker-{tier}" for tier in TIER_NAMES}
    assert set(of_kind(keda, "ScaledObject")) == workers and not of_kind(keda, "HorizontalPodAutoscaler")
    assert all("replicas" not in of_kind(keda, "StatefulSet")[name]["spec"] for name in workers)  # KEDA's to set
    cpu = render(helm, sets=("autoscaling.keda.enabled=false",))
    assert set(of_kind(cpu, "HorizontalPodAutoscaler")) == workers and not of_kind(cpu, "ScaledObject")
    for hpa in of_kind(cpu, "HorizontalPodAutoscaler").values():
        target = of_kind(cpu, "StatefulSet")[hpa["spec"]["scaleTargetRef"]["name"]]
        _, params = parsed(target["spec"]["template"]["spec"]["containers"][0]["args"])
        assert hpa["spec"]["maxReplicas"] <= params["partitions"]
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_the_values_dimee_plan_writes_render_as_planned(helm, tmp_path):
    path = planned_values(tmp_path / "values.yaml")
    planned = yaml.safe_load(path.read_text())
    docs = render(helm, path)
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc["spec"] for doc in of_kind(docs, "ScaledObject").values()}
    for doc in of_kind(docs, "StatefulSet").values():
        role = role_of(doc)
        _, params = parsed(doc["spec"]["template"]["spec"]["containers"][0]["args"])
        values = planned["router"] if role == "router" else planned["sink"] if role == "sink" else \
            planned["workers"][role.removeprefix("worker-")]
        topic = {"router": "samples", "sink": "predictions"}.get(role, role.removeprefix("worker-"))
        assert params["partitions"] == planned["topics"][topic]
        if role == "sink":
            assert doc["spec"]["replicas"] == values["replicas"]
            continue
        assert params["max_batch"] == values["maxBatch"] and params["threads"] == values["threads"]
        bounds = scaled[doc["metadata"]["name"]]
        assert (bounds["minReplicaCount"], bounds["maxReplicaCount"]) == (
            values["autoscaling"]["minReplicas"], values["autoscaling"]["maxReplicas"])
    assert parsed(of_kind(docs, "StatefulSet")["dimee-worker-cloud"]["spec"]["template"]["spec"]["containers"][0][
        "args"])[1]["device"] == "cuda"


def keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict) and value:
            out |= keys(value, f"{prefix}{key}.")
    return out


def test_the_plan_writes_only_keys_the_chart_has():
    """A key the chart does not know would be ignored without a word: the plan must not write one."""
    rates = from_cost_file(COST_FILE)
    written = chart_values(plan(Target(1000, {"mobile": 1.0}, 2500), rates), "at-least-once")
    assert keys(written) <= keys(chart_defaults())


def test_the_work_folder_comes_from_a_volume_or_is_copied_out_of_an_image(helm, value_sets):
    for name in ("default", "artifact-image"):
        for role, pod in pods(render(helm, *value_sets[name])).items():
            mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0].get("volumeMounts", [])}
            if "artifacts" not in mounts:
                assert role == "sink", role  # the only role without a model or calibration.json
                continue
            volume = next(v for v in pod["volumes"] if v["name"] == "artifacts")
            _, params = parsed(pod["containers"][0]["args"])
            assert str(params["workdir"]) == mounts["artifacts"], role
            if name == "default":
                assert volume["persistentVolumeClaim"]["readOnly"] is True and not pod.get("initContainers")
            else:
                init = pod["initContainers"][0]
                assert "emptyDir" in volume and init["image"] == "registry.example.com/dimee-work:v1"
                assert init["volumeMounts"][0]["name"] == "artifacts"


def test_a_misspelt_value_is_refused_by_the_values_schema_not_ignored(helm):
    done = render_text(helm, sets=("workers.cloud.threds=4",))
    assert done.returncode != 0
    assert "/workers/cloud" in done.stderr and "'threds' not allowed" in done.stderr


# --- Security: the restricted Pod Security Standard, scratch space, NetworkPolicies, principals, pinned images ---

# The volume types the restricted profile allows (kubernetes.io/docs/concepts/security/pod-security-standards).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                      "secret"}
README = CHART / "README.md"


def containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_meets_the_restricted_pod_security_standard(helm, value_sets, name):
    """Each control of the restricted profile, for every container, the init container and the seed Job's included;
    and beyond it, a read-only root filesystem."""
    for role, pod in pods(render(helm, *value_sets[name])).items():
        assert not any(pod.get(host) for host in ("hostNetwork", "hostPID", "hostIPC")), role
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (role, volume)
        outer = pod.get("securityContext", {})
        assert pod["automountServiceAccountToken"] is False, role  # no role calls the Kubernetes API
        for container in containers(pod):
            inner = container.get("securityContext", {})
            effective = {**outer, **inner}  # a container's own setting overrides its pod's
            where = (role, container["name"])
            assert effective.get("runAsNonRoot") is True and effective.get("runAsUser") not in (0, None), where
            assert effective.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), where
            assert inner.get("allowPrivilegeEscalation") is False and not inner.get("privileged"), where
            assert inner["capabilities"]["drop"] == ["ALL"], where
            assert set(inner["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}, where
            assert inner.get("readOnlyRootFilesystem") is True, where
            assert not any(port.get("hostPort") for port in container.get("ports", [])), where


def test_every_container_has_cpu_and_memory_requested_and_limited_alike(helm, value_sets):
    """Requests equal to limits in every container, the init container's too: the pods keep the Guaranteed class."""
    for name, files in value_sets.items():
        for role, pod in pods(render(helm, *files)).items():
            for container in containers(pod):
                resources = container["resources"]
                for kind in ("cpu", "memory"):
                    assert resources["requests"][kind] == resources["limits"][kind], (name, role, container["name"])


def writable_mount(pod: dict, container: dict, path: str) -> str | None:
    """The emptyDir, writable, mounted over `path` in the container, or None."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        inside = path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/")
        if inside and not mount.get("readOnly") and "emptyDir" in volumes.get(mount["name"], {}):
            return mount["name"]
    return None


WHERE_LIBRARIES_WRITE = """
import json, pathlib, tempfile
import huggingface_hub.constants as hf
import torch.hub
print(json.dumps({"huggingface": hf.HF_HOME, "hub cache": hf.HF_HUB_CACHE, "torch hub": torch.hub.get_dir(),
                  "temporary files": tempfile.gettempdir(), "home": str(pathlib.Path.home())}))
"""


def test_what_the_roles_write_goes_to_emptydirs_under_the_read_only_root(helm):
    """Hugging Face, torch and Python's tempfile, asked with a pod's environment where they would write, name
    folders on a writable emptyDir; so do the cache variables the chart sets, and the sink's output."""
    scratch = ("HOME", "XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME", "TRITON_CACHE_DIR", "CUDA_CACHE_PATH", "TMPDIR")
    docs = render(helm)
    envs = []
    for role, pod in pods(docs).items():
        container = pod["containers"][0]
        env = env_of(pod)
        envs.append({key: env[key] for key in scratch})
        for key in scratch:
            assert writable_mount(pod, container, env[key]), (role, key, env[key])
        if role == "sink":
            out = str(parsed(container["args"])[1]["out"])
            assert any(out.startswith(m["mountPath"] + "/") and not m.get("readOnly")
                       for m in container["volumeMounts"]), out
    assert all(env == envs[0] for env in envs)  # one layout for every role
    asked = subprocess.run([sys.executable, "-c", WHERE_LIBRARIES_WRITE], capture_output=True, text=True, timeout=300,
                           env={"PATH": os.environ.get("PATH", ""), **envs[0], "TMPDIR": "/tmp"})
    assert asked.returncode == 0, asked.stderr
    pod = pods(docs)["worker-cloud"]
    for what, path in yaml.safe_load(asked.stdout).items():
        assert writable_mount(pod, pod["containers"][0], path), (what, path)


def policy_for(policies: dict[str, dict], labels: dict) -> list[dict]:
    return [p for p in policies.values() if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]


def ports_of(rules: list[dict]) -> set[int]:
    return {port["port"] for rule in rules for port in rule.get("ports", [])}


@pytest.mark.parametrize("name", ["default", "gpu", "audits"])
def test_each_role_has_a_network_policy_letting_in_its_port_and_out_only_dns_kafka_and_its_redis(helm, value_sets,
                                                                                                 name):
    docs = render(helm, *value_sets[name])
    policies = of_kind(docs, "NetworkPolicy")
    workloads = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment", "Job")]
    # gpu-values: the URL is in a Secret, the port a value
    redis_ports = {6380} if GPU_VALUES in value_sets[name] else {6379}
    for doc in workloads:
        role, pod = role_of(doc), doc["spec"]["template"]["spec"]
        selected = policy_for(policies, doc["spec"]["template"]["metadata"]["labels"])
        assert len(selected) == 1, role
        spec, env = selected[0]["spec"], env_of(pod)
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}, role
        served = set() if role == "seed" else {served_port(pod)[0]}
        assert ports_of(spec["ingress"]) == served, role
        wanted = {53}
        if "DIMEE_BROKER" in env:
            wanted |= {int(server.rsplit(":", 1)[1]) for server in env["DIMEE_BROKER"].removeprefix("kafka://").split(",")}
        if any(e["name"] == "DIMEE_STATE" for e in pod["containers"][0]["env"]):
            wanted |= redis_ports
        assert ports_of(spec["egress"]) == wanted, role
        if role == "seed":  # a pre-install hook: its policy must be there before the Job runs
            hook = selected[0]["metadata"]["annotations"]
            assert hook["helm.sh/hook"] == doc["metadata"]["annotations"]["helm.sh/hook"]
            assert int(hook["helm.sh/hook-weight"]) < int(doc["metadata"]["annotations"].get("helm.sh/hook-weight", 0))
    assert len(policies) == len(workloads)  # one per role, none selecting nothing


def test_each_role_can_have_a_kafka_principal_of_its_own(helm):
    own = ("worker-cloud", "dashboard", "autoscaling")
    sets = ("kafka.securityProtocol=SASL_SSL", "kafka.sasl.mechanism=SCRAM-SHA-512",
            "kafka.sasl.existingSecret=dimee-kafka", *(f"kafka.sasl.roleSecrets.{r}=dimee-kafka-{r}" for r in own))
    docs = render(helm, sets=sets)
    for role, pod in pods(docs).items():
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"]
                if "KAFKA_SASL" in e["name"] and "valueFrom" in e}
        if role == "seed":
            assert not refs
            continue
        wanted = f"dimee-kafka-{role}" if role in own else "dimee-kafka"
        assert refs == {"DIMEE_KAFKA_SASL_USERNAME": wanted, "DIMEE_KAFKA_SASL_PASSWORD": wanted}, role
    auth = next(iter(of_kind(docs, "TriggerAuthentication").values()))
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} == {"dimee-kafka-autoscaling"}
    done = render_text(helm, sets=(*sets[:2], "kafka.sasl.roleSecrets.router=dimee-kafka-router"))
    assert done.returncode != 0
    assert "worker-mobile has no Secret" in done.stderr.splitlines()[0]


def test_the_dashboard_reads_redis_as_its_read_only_user(helm):
    docs = render(helm, GPU_VALUES)
    redis = yaml.safe_load(GPU_VALUES.read_text())["redis"]["existingSecret"]
    for role, pod in pods(docs).items():
        refs = [e["valueFrom"]["secretKeyRef"] for e in pod["containers"][0]["env"] if e["name"] == "DIMEE_STATE"]
        if role in ("router", "seed", "dashboard"):
            key = "readonly-url" if role == "dashboard" else "url"
            assert refs == [{"name": redis, "key": key}], role
        else:
            assert not refs, role  # workers and the sink never touch Redis


RECORDING = ("worker-mobile", "worker-edge")  # the tiers below the cloud, which audits them and makes no copy


def redis_egress(docs: list[dict], role: str) -> set[int]:
    """The ports a role's NetworkPolicy lets out besides DNS and Kafka's."""
    policy = next(p for p in of_kind(docs, "NetworkPolicy").values()
                  if p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == role)
    kafka = {int(s.rsplit(":", 1)[1]) for s in chart_defaults()["kafka"]["bootstrapServers"].split(",")}
    return ports_of(policy["spec"]["egress"]) - {53} - kafka


@pytest.mark.parametrize(("sets", "key"), [
    (("router.control=true",), "worker-url"),
    (("router.control=true", "redis.workerUrlKey="), "url"),  # no worker user: the writer's URL (not advised)
])
def test_workers_record_audit_copies_in_redis_as_their_own_user_when_the_controller_counts_audits(helm, sets, key):
    """With the controller on and audits (auditRate 0.05 by default), the mobile and edge workers get the Redis URL
    of the workers' user from the Secret and egress to Redis's port; the cloud workers (the auditors) and the sink
    get neither, and nor does any worker's command line change."""
    docs = render(helm, GPU_VALUES, sets=sets)
    secret = yaml.safe_load(GPU_VALUES.read_text())["redis"]["existingSecret"]
    off = {role: pod["containers"][0]["args"] for role, pod in pods(render(helm, GPU_VALUES)).items()}
    for role, pod in pods(docs).items():
        if not role.startswith("worker-") and role != "sink":
            continue
        refs = [e["valueFrom"]["secretKeyRef"] for e in pod["containers"][0]["env"] if e["name"] == "DIMEE_STATE"]
        assert pod["containers"][0]["args"] == off[role], role
        if role in RECORDING:
            assert refs == [{"name": secret, "key": key}], role
            assert redis_egress(docs, role) == {6380}, role
        else:
            assert not refs and not redis_egress(docs, role), role
    plain = render(helm, sets=("router.control=true",))  # a Redis without a password: the URL as a value
    url = chart_defaults()["redis"]["url"]
    for role in RECORDING:
        assert env_of(pods(plain)[role])["DIMEE_STATE"] == url, role
        assert redis_egress(plain, role) == {6379}, role


@pytest.mark.parametrize("values", [
    {},  # the controller off (the default): nobody reads the records
    {"router": {"control": True}, "auditRate": 0},  # no audits: no copies
    {"router": {"control": True}, "auditRate": 0.0},
])
def test_workers_get_no_redis_when_they_record_no_audit_copies(helm, tmp_path, values):
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    for files in ((), (GPU_VALUES,)):
        docs = render(helm, *files, tmp_path / "values.yaml")
        for role, pod in pods(docs).items():
            if role.startswith("worker-"):
                assert "DIMEE_STATE" not in env_of(pod), (files, role)
                assert not redis_egress(docs, role), (files, role)


def test_the_readme_worker_redis_user_reaches_only_the_audit_copy_keys():
    """The key pattern of the README's worker line covers the key a worker's store writes for a copy, and none of
    the other keys of the state store (docs/streaming.md's table)."""
    patterns = [rule[1:] for rule in readme_acl_lines()["dimee-worker"] if rule.startswith("~")]
    store = RedisCentroidStore("redis://localhost:6379/0", "dimee:{dimee/model-1234}", 60)  # connects to nothing
    try:
        def allowed(key: str) -> bool:
            return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)

        assert allowed(store._key("audit-copy", "sample-1"))
        for other in (store._key("meta"), store._key("pool", 0), store._key("seen", "sample-1"), store._key("control"),
                      store._key("control-seen", "sample-1"), "other:audit-copy:sample-1"):
            assert not allowed(other), other
    finally:
        store.close()


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_image_is_pinned(helm, value_sets, name):
    for role, pod in pods(render(helm, *value_sets[name])).items():
        for container in containers(pod):
            image = container["image"]
            last = image.rsplit("/", 1)[-1]
            assert "@sha256:" in image or (":" in last and not last.endswith(":latest")), (role, image)


@pytest.mark.parametrize("key", ["image.tag", "image.gpuTag", "artifacts.image.tag"])
def test_the_schema_refuses_latest(helm, key):
    done = render_text(helm, sets=(f"{key}=latest", "artifacts.image.repository=registry.example.com/work"))
    assert done.returncode != 0
    assert "/" + key.replace(".", "/") in done.stderr


def readme_acl_lines() -> dict[str, list[str]]:
    """The README's Redis ACL lines: user → the rules after `ACL SETUSER USER`."""
    lines = re.findall(r"^ +ACL SETUSER (\S+) (.+)$", README.read_text(), re.MULTILINE)
    return {user: rules.split() for user, rules in lines}


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def marked(marks: list[pytest.MarkDecorator]):
    def apply(test):
        for mark in marks:
            test = mark(test)
        return test
    return apply


@marked(needs("Redis", bool(REDIS)))
def test_the_readme_redis_users_do_their_roles_work_and_the_dashboard_writes_nothing():
    """The README's three ACL lines, as given, on the real Redis: the writer seeds, restores and moves centroids
    (the router's and the seed Job's commands, Lua scripts included); the dashboard's user reads them and the
    control, and is refused every write; the workers' user records an audit copy that the writer's controller
    then counts, and is refused everything else (reading, deleting, any other key)."""
    users = readme_acl_lines()
    assert set(users) == {"dimee", "dimee-dashboard", "dimee-worker"}
    admin, token = redis.Redis.from_url(REDIS), uuid.uuid4().hex
    names = {user: f"{user}-{token[:8]}" for user in users}
    for user, rules in users.items():
        admin.execute_command("ACL", "SETUSER", names[user], *(rule.replace("PASSWORD", token) for rule in rules))
    # A namespace of its own under dimee: (the keys the lines allow), whatever else the Redis holds.
    where = f"dimee:{{acl-test-{token[:8]}}}"
    writer, reader, worker = (RedisCentroidStore(with_user(REDIS, names[user], token), where, 60)
                              for user in ("dimee", "dimee-dashboard", "dimee-worker"))
    try:
        means, counts = [np.ones(4), None], [3, 0]
        writer.seed(means, counts)
        assert writer.is_seeded() and writer.restore(means, counts) == 0
        assert writer.apply([Update(0, np.zeros(4), "sample-1")]) == [True]
        writer.check_not_evicting()  # CONFIG is not granted: the check is skipped, not failed
        assert reader.snapshot().counts == [4, 0] and reader.control().version == 0
        for write in (lambda: reader.seed(means, counts), lambda: reader.restore(means, counts),
                      lambda: reader.apply([Update(0, np.zeros(4), "sample-2")]),
                      lambda: reader.client.delete(f"{reader.namespace}:meta")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                write()
        assert writer.snapshot().counts == [4, 0]
        # The workers' user: what a worker does (workers/audit_copies.py), and the controller counts it.
        answer = copy_mark("mobile", 1)
        worker.mark_audit_copies({"sample-3": answer})
        copy = f"{where}:audit-copy:sample-3"
        assert admin.get(copy) == answer.encode() and 0 < admin.ttl(copy) <= 60
        rule = ControlRule(target=0.1)
        steps = writer.apply_control([Verdict("sample-3", answer, True), Verdict("sample-4", answer, True)], rule)
        assert steps.refused == [None, NO_COPY] and not admin.exists(copy)  # counted once, its record consumed
        worker.mark_audit_copies({"sample-5": answer})
        for act in (lambda: worker.client.get(f"{where}:audit-copy:sample-5"),
                    lambda: worker.client.delete(f"{where}:audit-copy:sample-5"),
                    lambda: worker.client.expire(f"{where}:audit-copy:sample-5", 3600),
                    lambda: worker.client.set(f"{where}:control", "x"),
                    lambda: worker.client.set(f"{where}:seen:sample-6", "1"),
                    lambda: worker.client.set(f"{where}:control-seen:sample-6", "1"),
                    lambda: worker.client.set(f"{where}:pool:0", "x"),
                    lambda: worker.client.set(f"other:{where}:audit-copy:sample-6", "x"),
                    lambda: worker.client.hset(f"{where}:audit-copy:sample-6", "a", "b"),
                    worker.snapshot, lambda: worker.seed(means, counts), lambda: worker.restore(means, counts),
                    lambda: worker.apply([Update(0, np.zeros(4), "sample-7")])):
            with pytest.raises(redis.exceptions.NoPermissionError):
                act()
        assert writer.snapshot().counts == [4, 0] and writer.control() == steps.last
        assert admin.get(f"{where}:audit-copy:sample-5") == answer.encode()
    finally:
        writer.close()
        reader.close()
        worker.close()
        for key in admin.scan_iter(match=f"dimee:*acl-test-{token[:8]}*"):
            admin.delete(key)
        admin.execute_command("ACL", "DELUSER", *names.values())
        admin.close()


def readme_kafka_acls(prefix: str) -> dict[str, dict[str, set[str]]]:
    """The README's table of Kafka ACLs: role → its read topics and groups, written topics, transactional id
    prefixes (the backticked names of each column, P made `prefix`)."""
    section = README.read_text().split("### Kafka principals and their ACLs", 1)[1].split("###", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not line.startswith("| ") or set(cells[0]) <= {"-", " "} or cells[0].startswith("role"):
            continue
        names = [{name.replace("P.", f"{prefix}.", 1) for name in re.findall(r"`(P\.[^`]*)`", cell)} for cell in cells]
        reads = set() if cells[1].startswith("Describe only") else names[1]  # KEDA: reads no record
        table[cells[0].split()[0]] = {"read": reads, "write": names[2], "transactional": names[3]}
    return table


def test_the_readme_kafka_acls_cover_what_each_role_reads_and_writes(workdir, cal, monkeypatch):
    """A stream on the embedded broker with every path taken (feedback, escalation to every tier, audits of every
    answer, the live controller): each stage's transactional id has its role's prefix in the README's table, and
    the stage reads, in its group, and writes only topics that role's row grants."""
    from dimee.composition.pipeline import PipelineOptions, run_pipeline
    from dimee.streaming.config import Settings
    from dimee.streaming.transport import memory
    from tests.support.helpers import deployment, stream_records

    written: dict[str, set[str]] = {}
    read: dict[str, set[str]] = {}
    send, consumer = memory._MemoryTransactionalProducer.send, memory.InMemoryBroker.consumer

    def noting_send(self, topic, *args, **kwargs):
        written.setdefault(self.transactional_id, set()).add(topic)
        return send(self, topic, *args, **kwargs)

    def noting_consumer(self, topics, group_id, *args, **kwargs):
        read.setdefault(group_id, set()).update(topics)
        return consumer(self, topics, group_id, *args, **kwargs)

    monkeypatch.setattr(memory._MemoryTransactionalProducer, "send", noting_send)
    monkeypatch.setattr(memory.InMemoryBroker, "consumer", noting_consumer)
    settings = Settings(broker="memory://kafka-acls", state="memory://kafka-acls", topic_prefix="acls",
                        guarantee="exactly-once", audit_rate=1.0, control=True, control_target=0.05)
    run_pipeline(stream_records(60, seed=5), deployment(workdir, cal, "Feedback-adaptive+esc"), settings,
                 PipelineOptions(progress=False))
    table = readme_kafka_acls("acls")
    assert {"router", "worker-mobile", "worker-edge", "worker-cloud", "sink", "dashboard"} <= table.keys()
    assert written and read
    for transactional_id, topics in written.items():
        rows = [role for role, row in table.items()
                if any(transactional_id.startswith(prefix) for prefix in row["transactional"])]
        assert len(rows) == 1, transactional_id
        assert topics <= table[rows[0]]["write"], (rows[0], topics - table[rows[0]]["write"])
    for group, topics in read.items():
        rows = [role for role, row in table.items() if group in row["read"]]
        assert len(rows) == 1, group
        assert topics <= table[rows[0]]["read"], (rows[0], topics - table[rows[0]]["read"])
    audits = {role for role, row in table.items() if "acls.audits" in row["write"]}
    assert audits == {"worker-cloud"} and any("acls.audits" in topics for topics in written.values())
