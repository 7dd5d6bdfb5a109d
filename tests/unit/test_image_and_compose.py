"""The container image and the compose stack: hadolint-clean, hardened, and the same stack as `make run`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
CHIME_SERVICES = ("api", "recorder", "planner", "executor", "dlq")


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(ROOT / ".venv" / "bin" / name))
    assert Path(found).exists(), f"{name} is missing: `make install` installs it"
    return found


def test_hadolint_passes() -> None:
    done = subprocess.run([_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_is_multi_stage_pinned_and_non_root() -> None:
    stages = re.findall(r"^FROM (\S+) AS (\w+)", DOCKERFILE, re.M)
    assert [name for _, name in stages] == ["build", "runtime"]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and re.fullmatch(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", base.group(1)), "base not pinned by digest"
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M), "the runtime user must be numeric"
    assert re.search(r'^HEALTHCHECK .*CMD \["chime", "health"\]$', runtime, re.M)
    for label in ("title", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in runtime
    assert "gcc" not in runtime and "build-essential" not in runtime
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}\n" in runtime, "the image's VERSION must be the package version"


def test_build_context_leaves_out_local_state() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"], "ignore everything, then admit the sources"
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert admitted == {"pyproject.toml", "constraints.txt", "README.md", "shared", "services"}


def test_compose_validates_against_the_compose_specification() -> None:
    done = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_the_whole_stack_with_health_checks_and_order() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"kafka", "postgres", "setup", *CHIME_SERVICES, "demo"}
    for name, service in services.items():
        image = service.get("image", "")
        assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", image), f"{name}: image {image!r} is not pinned to a version"
        assert service.get("restart") in ("unless-stopped", "on-failure"), f"{name} has no restart policy"
        if name != "setup":
            assert "test" in service.get("healthcheck", {}), f"{name} has no health check"
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["setup"]["command"] == ["setup"]
    for name in ("kafka", "postgres"):
        assert services["setup"]["depends_on"][name]["condition"] == "service_healthy"
    for name in CHIME_SERVICES:
        assert services[name]["command"] == [name]
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert services["demo"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["api"]["ports"] == ["8000:8000"]
