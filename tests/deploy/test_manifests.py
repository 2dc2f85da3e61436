"""What ships for deployment: the Kubernetes overlays, docker-compose.yml, the Dockerfile and
every NATS configuration.

Kubernetes: each overlay under deploy/k8s/overlays is rendered by tests/deploy/kustomize_lite.py
and, when kubectl (with kustomize v5) is installed, by ``kubectl kustomize`` too; both must
give the same objects. The rendering validated below is kubectl's when there is one, else
kustomize_lite's: the test ids say which (``[dev-kubectl]`` / ``[dev-kustomize_lite]``). The
objects must pass the Kubernetes schema of K8S_VERSION in strict mode (kubernetes-validate,
offline) and checkov with no failed check except those in SKIPPED_CHECKS, each with its
reason; then the properties the runbook promises are checked one by one (hardening,
probes, secrets, scaling, and the network policies evaluated as a connectivity matrix).

docker-compose.yml is parsed and its references checked; the Dockerfile is checked
statically and by checkov. Every NATS configuration must set ``sync_interval: always``,
and the shipped configuration files are started with a real nats-server, which must say
so in /varz.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from runtime.config import Settings
from runtime.natsserver import CONFIG_TEMPLATE, free_port, nats_server_binary
from tests.deploy import checkov_env, kustomize_lite

Resource = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = {"dev": "baton-dev", "prod": "baton"}  # overlay -> namespace
SERVICES = {"intake": 8000, "routing": 8001, "followup": 8002}
IMAGE_UID = 10001
# The oldest Kubernetes the manifests target (lifecycle.preStop.sleep needs 1.30+).
K8S_VERSION = "1.32.0"
ALL = frozenset(OVERLAYS)

# checkov checks that fail on purpose: check id -> (overlays where allowed, why).
SKIPPED_CHECKS: dict[str, tuple[frozenset[str], str]] = {
    "CKV_K8S_43": (ALL, "images are pinned by tag in git; a release pins prod by digest (kustomize edit set image)"),
    "CKV_K8S_35": (ALL, "settings are environment variables by design (runtime/config.py); secrets via secretKeyRef"),
    "CKV_K8S_15": (frozenset({"dev"}), "dev runs a locally loaded image, which Always would try to pull; prod: Always"),
}


# --- rendering ----------------------------------------------------------------------------


def _kubectl() -> tuple[str | None, str]:
    """(kubectl path, why not) — a kubectl whose embedded kustomize is v5 or newer."""
    beside = Path(sys.executable).parent / "kubectl"  # e.g. from a wheel in the venv
    path = str(beside) if beside.is_file() else shutil.which("kubectl")
    if path is None:
        return None, "kubectl not found: rendered by tests/deploy/kustomize_lite.py only"
    try:
        out = subprocess.run(
            [path, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        kustomize = json.loads(out).get("kustomizeVersion", "")
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return None, f"kubectl at {path} unusable ({exc}): rendered by kustomize_lite only"
    major = re.match(r"v(\d+)", kustomize)
    if not major or int(major.group(1)) < 5:
        return None, f"kubectl at {path} embeds kustomize {kustomize or '?'} (< v5): rendered by kustomize_lite only"
    return path, ""


KUBECTL, NO_KUBECTL_REASON = _kubectl()
RENDERER = "kubectl" if KUBECTL else "kustomize_lite"


def _kubectl_render(overlay: str) -> list[Resource]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return kustomize_lite.load_all(out.stdout)


@pytest.fixture(scope="module")
def lite() -> dict[str, list[Resource]]:
    return {o: kustomize_lite.build(K8S / "overlays" / o) for o in OVERLAYS}


@pytest.fixture(scope="module")
def rendered(lite: dict[str, list[Resource]]) -> dict[str, list[Resource]]:
    """Each overlay's objects, from kubectl when present, else from kustomize_lite."""
    return {o: _kubectl_render(o) for o in OVERLAYS} if KUBECTL else lite


def by_kind(objs: list[Resource], kind: str) -> dict[str, Resource]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def one(objs: list[Resource], kind: str, name: str) -> Resource:
    found = by_kind(objs, kind)
    assert name in found, f"no {kind} {name}"
    return found[name]


def pod_templates(objs: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    """(workload, pod template) for every Deployment, StatefulSet and Job."""
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]


def env_names() -> set[str]:
    return {f"BATON_{name.upper()}" for name in Settings.model_fields}


OVERLAY_PARAMS = [pytest.param(o, id=f"{o}-{RENDERER}") for o in OVERLAYS]


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_kustomize_lite_matches_kubectl(overlay: str, lite: dict[str, list[Resource]]) -> None:
    """Both renderers give the same objects (so a machine without kubectl validates the same)."""
    if KUBECTL is None:
        pytest.skip(NO_KUBECTL_REASON)
    real = {kustomize_lite.resource_id(o): o for o in _kubectl_render(overlay)}
    mine = {kustomize_lite.resource_id(o): o for o in lite[overlay]}
    assert sorted(mine) == sorted(real)
    for rid, obj in real.items():
        assert mine[rid] == obj, f"{rid} differs between kustomize_lite and kubectl kustomize"


# --- schema and security scanner ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("overlay", OVERLAY_PARAMS)
def test_objects_pass_the_kubernetes_schema_strictly(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    objs = rendered[overlay]
    assert len(objs) >= 15
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {name} invalid for Kubernetes {K8S_VERSION} at {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{overlay}: {name}: {exc.message}")


def _checkov(args: list[str]) -> list[dict[str, Any]]:
    checkov = checkov_env.ensure()
    out = subprocess.run(
        [str(checkov), *args, "--quiet", "--compact", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    assert out.returncode in (0, 1), f"checkov failed to run:\n{out.stderr[-3000:]}"
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report
        assert report["summary"]["resource_count"] > 0, report
    return reports


@pytest.mark.slow
@pytest.mark.parametrize("renderer", [RENDERER])
def test_checkov_finds_nothing_unexplained(renderer: str, rendered: dict[str, list[Resource]], tmp_path: Path) -> None:
    """checkov (kubernetes) over every overlay, as rendered by ``renderer``."""
    for overlay, objs in rendered.items():
        (tmp_path / f"{overlay}.yaml").write_text(kustomize_lite.dump(objs), encoding="utf-8")
    failures: list[str] = []
    used: set[str] = set()
    for report in _checkov(["-d", str(tmp_path), "--framework", "kubernetes"]):
        for check in report["results"]["failed_checks"]:
            overlay = Path(check["file_path"]).stem
            allowed, _ = SKIPPED_CHECKS.get(check["check_id"], (frozenset(), ""))
            if overlay in allowed:
                used.add(check["check_id"])
            else:
                failures.append(f"{overlay}: {check['check_id']} {check['check_name']} on {check['resource']}")
    assert not failures, f"checkov (rendered by {renderer}):\n" + "\n".join(failures)
    assert used == set(SKIPPED_CHECKS), f"skip entries no longer needed: {set(SKIPPED_CHECKS) - used}"


@pytest.mark.slow
def test_checkov_passes_the_dockerfile() -> None:
    failures = [
        f"{c['check_id']} {c['check_name']}"
        for report in _checkov(["-f", str(REPO / "Dockerfile"), "--framework", "dockerfile"])
        for c in report["results"]["failed_checks"]
    ]
    assert not failures


# --- the properties the manifests promise --------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAY_PARAMS)
def test_every_object_is_labelled_and_namespaced(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    namespace = OVERLAYS[overlay]
    assert list(by_kind(rendered[overlay], "Namespace")) == [namespace]
    for obj in rendered[overlay]:
        meta = obj["metadata"]
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "baton", meta["name"]
        assert labels.get("app.kubernetes.io/managed-by") == "kustomize", meta["name"]
        assert labels.get("app.kubernetes.io/instance") == namespace, meta["name"]
        if obj["kind"] != "Namespace":
            assert meta.get("namespace") == namespace, meta["name"]
    ns_labels = one(rendered[overlay], "Namespace", namespace)["metadata"]["labels"]
    assert ns_labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAY_PARAMS)
def test_every_pod_is_hardened(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    objs = rendered[overlay]
    accounts = by_kind(objs, "ServiceAccount")
    for workload, template in pod_templates(objs):
        name = workload["metadata"]["name"]
        spec = template["spec"]
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == IMAGE_UID, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        account = accounts[spec["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False, name
        mounts = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == IMAGE_UID, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (name, c["name"])
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, (name, c["name"])
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) >= {"cpu", "memory"}, (name, c["name"], kind)
            image = c["image"]
            assert re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", image.split("/")[-1]), image
            assert not image.endswith(":latest"), image
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in mounts or mount["name"] in {
                    t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
                }, (name, mount)


@pytest.mark.parametrize("overlay", OVERLAY_PARAMS)
def test_services_run_the_image_with_probes_and_graceful_shutdown(
    overlay: str, rendered: dict[str, list[Resource]]
) -> None:
    objs = rendered[overlay]
    deployments = by_kind(objs, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, port in SERVICES.items():
        spec = deployments[name]["spec"]
        pod = spec["template"]["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        assert REPO.joinpath("services", name, "__main__.py").is_file()
        (c,) = pod["containers"]
        assert c["args"] == [f"services.{name}"], "the image's ENTRYPOINT is python -m"
        assert [p["containerPort"] for p in c["ports"]] == [port]
        assert port == Settings.model_fields[f"{name}_port"].default
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        # SIGTERM exits within 10 s; preStop waits before it; the grace covers both.
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] == 20
        assert pre_stop + 10 <= pod["terminationGracePeriodSeconds"]
        tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        env = {e["name"]: e for e in c["env"]}
        assert env["BATON_STORE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "baton-store", "key": "url"}
        assert env["BATON_NATS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "baton-nats", "key": "url"}
        assert set(env) <= env_names()
        assert c["envFrom"] == [{"configMapRef": {"name": "baton-config"}}]
        service = one(objs, "Service", name)
        assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        pdb = one(objs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
        assert one(objs, "ServiceAccount", name)["automountServiceAccountToken"] is False
    config = one(objs, "ConfigMap", "baton-config")["data"]
    assert set(config) <= env_names(), f"not settings of runtime/config.py: {set(config) - env_names()}"
    assert config["BATON_HOST"] == "0.0.0.0"
    assert config["BATON_DATA_DIR"].startswith("/tmp/")
    hpa = one(objs, "HorizontalPodAutoscaler", "intake")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "intake"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in deployments["intake"]["spec"], "the HPA owns intake's replica count"


def test_prod_runs_three_of_everything_against_operator_secrets(rendered: dict[str, list[Resource]]) -> None:
    objs = rendered["prod"]
    assert not by_kind(objs, "Secret"), "prod Secrets are created by the operator, never generated"
    assert not by_kind(objs, "StatefulSet"), "prod uses external MongoDB and NATS"
    deployments = by_kind(objs, "Deployment")
    assert deployments["routing"]["spec"]["replicas"] == 3
    assert deployments["followup"]["spec"]["replicas"] == 3
    assert one(objs, "HorizontalPodAutoscaler", "intake")["spec"]["minReplicas"] == 3
    for name in SERVICES:
        assert one(objs, "PodDisruptionBudget", name)["spec"] == {
            "minAvailable": 2,
            "selector": deployments[name]["spec"]["selector"],
        }
        (c,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert c["imagePullPolicy"] == "Always"
        assert not c["image"].startswith("baton:"), "prod pins a registry image"


def test_dev_runs_nats_and_a_mongodb_replica_set_in_the_namespace(rendered: dict[str, list[Resource]]) -> None:
    objs = rendered["dev"]
    sets = by_kind(objs, "StatefulSet")
    assert set(sets) == {"nats", "mongo"}
    for sts in sets.values():
        assert sts["spec"]["volumeClaimTemplates"], "data on a PersistentVolumeClaim"
        assert one(objs, "Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    secrets = by_kind(objs, "Secret")
    store_url = base64.b64decode(secrets["baton-store"]["data"]["url"]).decode()
    nats_url = base64.b64decode(secrets["baton-nats"]["data"]["url"]).decode()
    assert nats_url == "nats://nats:4222"
    match = re.fullmatch(r"mongodb://(mongo-0\.mongo:27017)/\?replicaSet=(\w+)", store_url)
    assert match, store_url
    member, replica_set = match.groups()
    (mongod,) = sets["mongo"]["spec"]["template"]["spec"]["containers"]
    assert mongod["args"][:2] == ["--replSet", replica_set]
    (init,) = one(objs, "Job", "mongo-init-replica-set")["spec"]["template"]["spec"]["containers"]
    script = init["args"][-1]
    assert f"_id: '{replica_set}'" in script and f"host: '{member}'" in script and "rs.initiate" in script
    (nats,) = sets["nats"]["spec"]["template"]["spec"]["containers"]
    config_volume = next(v for v in sets["nats"]["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    config = one(objs, "ConfigMap", config_volume["configMap"]["name"])["data"]
    mount = next(m for m in nats["volumeMounts"] if m["name"] == config_volume["name"])
    assert nats["args"] == ["--config", f"{mount['mountPath']}/nats-server.conf"]
    assert jetstream_syncs_always(config["nats-server.conf"])


# --- network policies, evaluated ----------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A traffic endpoint: a pod (namespace, labels) or somewhere outside the cluster."""

    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    external: bool = False

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(rule_peers: list[dict[str, Any]] | None, peer: Peer, namespace: str) -> bool:
    if rule_peers is None:
        return True
    for p in rule_peers:
        if "ipBlock" in p:
            if peer.external:
                return True
            continue
        if peer.external:
            continue
        in_ns = (
            _selects(p["namespaceSelector"], peer.namespace_labels)
            if "namespaceSelector" in p
            else peer.namespace == namespace
        )
        if in_ns and _selects(p.get("podSelector"), peer.labels):
            return True
    return False


def _side_allows(
    policies: list[Resource], namespace: str, me: Peer, other: Peer, port: int, protocol: str, kind: str
) -> bool:
    if me.external or me.namespace != namespace:
        return True  # not governed by this namespace's policies
    direction, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
    selecting = [
        p for p in policies if kind in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], me.labels)
    ]
    if not selecting:
        return True
    return any(
        _peer_matches(rule.get(peers_key), other, namespace)
        and (
            "ports" not in rule
            or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in rule["ports"])
        )
        for policy in selecting
        for rule in policy["spec"].get(direction) or []
    )


def allowed(objs: list[Resource], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    policies = list(by_kind(objs, "NetworkPolicy").values())
    namespace = policies[0]["metadata"]["namespace"]
    return _side_allows(policies, namespace, src, dst, port, protocol, "Egress") and _side_allows(
        policies, namespace, dst, src, port, protocol, "Ingress"
    )


@pytest.mark.parametrize("overlay", OVERLAY_PARAMS)
def test_network_policies_let_only_what_must_talk_talk(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    objs = rendered[overlay]
    ns = OVERLAYS[overlay]
    pods = {w["metadata"]["name"]: Peer(ns, t["metadata"]["labels"]) for w, t in pod_templates(objs)}
    if overlay == "dev":
        pods["mongo-init"] = pods.pop("mongo-init-replica-set")
    internet = Peer(external=True)
    dns = Peer("kube-system", {"k8s-app": "kube-dns"})
    scraper = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
    stranger = Peer("elsewhere", {"app": "curious"})
    a = lambda src, dst, port, proto="TCP": allowed(objs, src, dst, port, proto)  # noqa: E731
    deny_all = next(p for p in by_kind(objs, "NetworkPolicy").values() if p["spec"]["podSelector"] == {})
    assert sorted(deny_all["spec"]["policyTypes"]) == ["Egress", "Ingress"] and "ingress" not in deny_all["spec"]

    assert a(internet, pods["intake"], 8000)
    assert a(stranger, pods["intake"], 8000)
    assert not a(internet, pods["intake"], 9999)
    for name in ("routing", "followup"):
        port = SERVICES[name]
        assert not a(internet, pods[name], port) and not a(stranger, pods[name], port)
        assert a(scraper, pods[name], port), "metrics scraping from the monitoring namespace"
    for name in SERVICES:
        svc = pods[name]
        assert a(svc, dns, 53, "UDP") and a(svc, dns, 53, "TCP")
        assert a(svc, internet, 443) == (name == "followup"), "only followup calls webhooks"
        assert not a(svc, internet, 80) and not a(svc, stranger, 53, "UDP")
        for other, port in SERVICES.items():
            if other != name:
                assert not a(svc, pods[other], port), "the services talk over NATS, not HTTP"
    if overlay == "prod":  # external NATS and MongoDB
        for name in SERVICES:
            assert a(pods[name], internet, 4222) and a(pods[name], internet, 27017)
        return
    nats, mongo, init = pods["nats"], pods["mongo"], pods["mongo-init"]
    for name in SERVICES:
        assert a(pods[name], nats, 4222) and a(pods[name], mongo, 27017)
        assert not a(pods[name], internet, 4222) and not a(pods[name], internet, 27017)
        assert not a(pods[name], nats, 8222)
    assert a(init, mongo, 27017) and a(mongo, mongo, 27017) and a(init, dns, 53, "UDP")
    assert a(scraper, nats, 8222) and not a(internet, nats, 4222) and not a(stranger, mongo, 27017)
    assert not a(nats, mongo, 27017) and not a(init, nats, 4222)
    assert not a(nats, internet, 443) and not a(mongo, internet, 443)


# --- docker-compose.yml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    return doc


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_references_resolve(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes, configs = compose.get("volumes") or {}, compose.get("configs") or {}
    for name, svc in services.items():
        for dep in _depends_on(svc):
            assert dep in services, f"{name} depends on unknown {dep}"
            if not svc.get("profiles"):
                assert not services[dep].get("profiles"), f"{name} depends on optional {dep}"
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name}: volume {source} not declared"
        for cfg in svc.get("configs") or []:
            source = cfg if isinstance(cfg, str) else cfg["source"]
            assert source in configs, f"{name}: config {source} not declared"
        build = svc.get("build")
        if build:
            build = {"context": build} if isinstance(build, str) else build
            dockerfile = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    for name, cfg in configs.items():
        assert (REPO / cfg["file"]).is_file(), f"config {name}: {cfg['file']} missing"


def test_compose_services_have_healthchecks_and_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if svc.get("profiles"):
            assert check.get("test") or check.get("disable") is True, name
        else:
            assert check.get("test") and not check.get("disable"), f"{name}: core services need a real check"
    for name, port in SERVICES.items():
        svc = services[name]
        assert _depends_on(svc) == {"nats": "service_healthy", "mongo": "service_healthy"}, name
        assert svc["command"] == [f"services.{name}"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"])
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert svc["stop_grace_period"] == "20s"


def test_compose_configures_services_by_baton_environment_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        env = _env(services[name])
        assert set(env) <= env_names(), f"{name}: {set(env) - env_names()} are not BATON_* settings"
        assert env["BATON_STORE_URL"] == "mongodb://mongo:27017/?replicaSet=rs0"
        assert env["BATON_NATS_URL"] == "nats://nats:4222"
        assert env["BATON_HOST"] == "0.0.0.0"
        assert "env_file" not in services[name]
    mongo = services["mongo"]
    command = mongo["command"]
    assert command[command.index("--replSet") + 1] == "rs0", "MongoDB runs as a replica set"
    script = mongo["healthcheck"]["test"][-1]
    assert "rs.initiate" in script and "_id: 'rs0'" in script and "host: 'mongo:27017'" in script
    assert "isWritablePrimary" in script, "healthy only once primary"
    nats = services["nats"]
    (cfg,) = nats["configs"]
    assert nats["command"][-1] == cfg["target"]
    conf = (REPO / compose["configs"][cfg["source"]]["file"]).read_text(encoding="utf-8")
    assert jetstream_syncs_always(conf)
    assert any(v.endswith(":/data") for v in nats["volumes"]) and 'store_dir: "/data"' in conf


def test_compose_observability_profile_is_optional(compose: dict[str, Any]) -> None:
    services = compose["services"]
    optional = {n for n, s in services.items() if s.get("profiles")}
    assert optional == {"otel-collector", "jaeger"}
    assert all(services[n]["profiles"] == ["observability"] for n in optional)
    for name in SERVICES:
        assert not any(k.startswith("OTEL_") for k in _env(services[name])), "tracing is off by default"
    override = yaml.safe_load((REPO / "deploy/compose/observability.yml").read_text(encoding="utf-8"))
    assert set(override["services"]) == set(SERVICES)
    for name, svc in override["services"].items():
        assert set(svc) == {"environment"}, name
        env = _env(svc)
        assert set(env) and all(k.startswith("OTEL_") for k in env)
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"
        host = re.match(r"https?://([\w-]+):\d+$", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert host and host.group(1) in optional
    collector = yaml.safe_load((REPO / "deploy/otel/otel-collector.yaml").read_text(encoding="utf-8"))
    exporters = collector["service"]["pipelines"]["traces"]["exporters"]
    assert any(collector["exporters"][e].get("endpoint", "").startswith("jaeger:") for e in exporters)


# --- the Dockerfile ------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", joined, re.M)]


def test_dockerfile_runs_one_service_per_container_as_non_root() -> None:
    steps = _instructions((REPO / "Dockerfile").read_text(encoding="utf-8"))
    froms = [arg for op, arg in steps if op == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim AS runtime"]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert ("USER", f"{IMAGE_UID}:{IMAGE_UID}") in final
    exec_form = {op: json.loads(arg) for op, arg in final if op in ("ENTRYPOINT", "CMD")}
    assert exec_form == {"ENTRYPOINT": ["python", "-m"], "CMD": ["services.intake"]}
    health = next(arg for op, arg in final if op == "HEALTHCHECK")
    probe = json.loads(health.split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "HEALTHCHECK", "exec")
    copies = [src for op, arg in steps if op == "COPY" and not arg.startswith("--from") for src in arg.split()[:-1]]
    allowed_context = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    assert {"pyproject.toml", "requirements.lock", "contracts", "runtime", "services"} <= set(copies)
    for source in copies:
        assert source in allowed_context, f"COPY {source}: excluded by .dockerignore"
        assert (REPO / source).exists()
    assert "*" in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines(), "deny by default"


# --- NATS: every configuration we ship syncs JetStream to disk before acknowledging ---------


def jetstream_syncs_always(conf: str) -> bool:
    """Whether the jetstream block of a nats-server configuration sets sync_interval: always."""
    block = re.search(r"^\s*jetstream\s*[:=]?\s*\{(.*?)^\s*\}", conf, re.M | re.S)
    return bool(block and re.search(r"^\s*sync_interval\s*[:=]\s*[\"']?always[\"']?\s*$", block.group(1), re.M))


def shipped_nats_configs(rendered: dict[str, list[Resource]]) -> dict[str, str]:
    """Every NATS configuration Baton ships, by where it comes from."""
    configs = {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in REPO.glob("deploy/**/*.conf")}
    configs["runtime/natsserver.py CONFIG_TEMPLATE"] = CONFIG_TEMPLATE
    for overlay, objs in rendered.items():
        for cm in by_kind(objs, "ConfigMap").values():
            for key, value in (cm.get("data") or {}).items():
                if "jetstream" in value:
                    configs[f"{overlay} ConfigMap {cm['metadata']['name']}/{key}"] = value
    return configs


def test_every_nats_config_we_ship_syncs_always(rendered: dict[str, list[Resource]]) -> None:
    configs = shipped_nats_configs(rendered)
    assert {"deploy/nats/nats-server.conf", "runtime/natsserver.py CONFIG_TEMPLATE"} <= set(configs)
    assert any(k.startswith("dev ConfigMap") for k in configs)
    assert not jetstream_syncs_always("jetstream {\n  store_dir: x\n}\n"), "the check itself"
    missing = [name for name, conf in configs.items() if not jetstream_syncs_always(conf)]
    assert not missing, f"without sync_interval: always in the jetstream block: {missing}"


def _loopback_copy(conf: str, store: Path) -> tuple[str, int]:
    """The configuration with its addresses on free loopback ports and its store in ``store``."""
    port, monitor = free_port(), free_port()
    out, n_listen = re.subn(r"^listen:.*$", f"listen: 127.0.0.1:{port}", conf, flags=re.M)
    out, n_http = re.subn(r"^http:.*$", f"http: 127.0.0.1:{monitor}", out, flags=re.M)
    out, n_store = re.subn(r"^(\s*)store_dir:.*$", rf'\1store_dir: "{store}"', out, flags=re.M)
    assert (n_listen, n_http, n_store) == (1, 1, 1), "expected one listen, http and store_dir line"
    return out, monitor


@pytest.mark.slow
@pytest.mark.nats
@pytest.mark.parametrize("conf_path", sorted(str(p.relative_to(REPO)) for p in REPO.glob("deploy/**/*.conf")))
def test_a_real_nats_server_runs_the_shipped_config_with_sync_always(conf_path: str, tmp_path: Path) -> None:
    conf, monitor = _loopback_copy((REPO / conf_path).read_text(encoding="utf-8"), tmp_path / "js")
    (tmp_path / "nats.conf").write_text(conf, encoding="utf-8")
    binary = nats_server_binary()
    check = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nats.conf")], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    with open(tmp_path / "nats.log", "wb") as log:
        proc = subprocess.Popen([binary, "-c", str(tmp_path / "nats.conf")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "nats.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=1) as resp:
                    varz = json.load(resp)
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not come up"
                time.sleep(0.05)
        assert varz["jetstream"]["config"]["sync_always"] is True
    finally:
        proc.terminate()
        proc.wait(10)
