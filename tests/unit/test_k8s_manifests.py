"""deploy/k8s: every overlay renders with kustomize, every object is valid against the Kubernetes schemas (and the
KEDA and Prometheus Operator CRDs for the optional components), and every workload is hardened."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "crds"
KUBERNETES_VERSION = "1.33.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
CHIME = ("chime-api", "chime-planner", "chime-executor", "chime-recorder", "chime-dlq")


def _kustomize() -> str:
    found = os.environ.get("CHIME_KUSTOMIZE") or next(iter(sorted((ROOT / ".chime" / "bin").glob("kustomize-*"))), None)
    found = found or shutil.which("kustomize")
    assert found, "kustomize is missing: `make install` builds it into .chime/bin"
    return str(found)


def _render(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run([_kustomize(), "build", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    # The optional KEDA component, added to the prod overlay as its comment tells a user to.
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree)
    prod = tree / "overlays" / "prod" / "kustomization.yaml"
    overlay = yaml.safe_load(prod.read_text())
    overlay["components"].append("../../components/keda")
    prod.write_text(yaml.safe_dump(overlay))
    return {
        "dev": _render(K8S / "overlays" / "dev"),
        "prod": _render(K8S / "overlays" / "prod"),
        "prod+keda": _render(tree / "overlays" / "prod"),
    }


def _objects(rendered: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for overlay, objects in rendered.items():
        for obj in objects:
            yield overlay, obj


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def test_every_object_is_valid(rendered: dict[str, list[dict[str, Any]]]) -> None:
    crds = _crd_schemas()
    for overlay, obj in _objects(rendered):
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        schema = crds.get((obj["apiVersion"], obj["kind"]))
        if schema is not None:
            jsonschema.validate(obj, schema)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message}")


def test_overlays_hold_what_they_promise(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {overlay: {(o["kind"], o["metadata"]["name"]) for o in objs} for overlay, objs in rendered.items()}
    for name in CHIME:
        assert any(k in WORKLOADS and n == name for k, n in kinds["prod"]), name
    assert ("StatefulSet", "chime-kafka") in kinds["dev"] and ("StatefulSet", "chime-postgres") in kinds["dev"]
    assert not any(n in ("chime-kafka", "chime-postgres") for _, n in kinds["prod"]), "prod uses external ones"
    assert ("ServiceMonitor", "chime") in kinds["prod"]
    assert not any(k in ("ScaledObject", "TriggerAuthentication") for k, _ in kinds["prod"] | kinds["dev"])
    assert ("ScaledObject", "chime-executor") in kinds["prod+keda"]
    config = next(
        o for o in rendered["prod"] if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("chime-")
    )
    assert config["data"]["CHIME_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["data"]["CHIME_ENV"] == "prod"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_container_is_hardened_and_sized(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    workloads = [o for o in rendered[overlay] if o["kind"] in WORKLOADS]
    assert workloads
    for obj in workloads:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        pod = _pod_spec(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["serviceAccountName"] == "chime", where
        scratch = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in scratch, f"{where}: no writable /tmp"  # noqa: S108 - the pod's path
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where}: {kind}"


def test_chime_workloads_spread_and_read_the_hashed_config(rendered: dict[str, list[dict[str, Any]]]) -> None:
    config = next(
        o for o in rendered["prod"] if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("chime-")
    )
    for obj in rendered["prod"]:
        if obj["kind"] not in WORKLOADS:
            continue
        pod = _pod_spec(obj)
        refs = [e["configMapRef"]["name"] for c in pod["containers"] for e in c["envFrom"] if "configMapRef" in e]
        assert refs == [config["metadata"]["name"]], "a config edit must roll the pods"
        if obj["kind"] != "Job":
            keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
            assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, obj["metadata"]["name"]
    job = next(o for o in rendered["prod"] if o["kind"] == "Job")
    assert job["spec"]["ttlSecondsAfterFinished"] > 0, "the setup Job must be re-creatable on the next apply"


def test_network_policies_open_only_the_api(rendered: dict[str, list[dict[str, Any]]]) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in rendered["prod"] if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    open_ingress = [
        spec["podSelector"] for spec in policies.values() for rule in spec.get("ingress", []) if "from" not in rule
    ]
    assert open_ingress == [{"matchLabels": {"app.kubernetes.io/name": "chime-api"}}]
    egress_anywhere = [
        spec["podSelector"]
        for spec in policies.values()
        for rule in spec.get("egress", [])
        if any("ipBlock" in peer for peer in rule.get("to", []))
    ]
    assert egress_anywhere == [{"matchLabels": {"app.kubernetes.io/name": "chime-executor"}}]


def test_keda_takes_the_bootstrap_from_config_and_authenticates(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["prod+keda"]
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    auth = next(o for o in objects if o["kind"] == "TriggerAuthentication")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["metadata"]["bootstrapServersFromEnv"] == "CHIME_KAFKA_BOOTSTRAP"
    assert "bootstrapServers" not in trigger["metadata"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert scaled["metadata"]["namespace"] == auth["metadata"]["namespace"] == "chime"


def test_the_service_monitor_finds_a_metrics_port_on_every_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    monitor = next(o for o in rendered["prod"] if o["kind"] == "ServiceMonitor")
    port = monitor["spec"]["endpoints"][0]["port"]
    services = {o["metadata"]["name"]: o for o in rendered["prod"] if o["kind"] == "Service"}
    for name in CHIME:
        assert port in {p["name"] for p in services[name]["spec"]["ports"]}, name
