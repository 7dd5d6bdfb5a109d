"""Drives ``deploy/kafka/kafka.sh``: the one implementation of the local broker, shared by make and tests."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"


@dataclass(frozen=True, slots=True)
class LocalKafka:
    """One broker: its client port, controller port and state directory."""

    port: int = 9092
    controller_port: int = 9093
    state_dir: Path = REPO_ROOT / ".chime" / "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_STATE_DIR": str(self.state_dir),
        }
        return subprocess.run(
            ["bash", str(KAFKA_SH), action], env=env, text=True, capture_output=True, timeout=timeout, check=False
        )

    def is_running(self) -> bool:
        return self._run("status", timeout=10).returncode == 0

    def start(self) -> None:
        result = self._run("start")
        if result.returncode != 0:
            raise RuntimeError(f"Kafka did not start:\n{result.stderr}")

    def stop(self) -> None:
        result = self._run("stop", timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"Kafka did not stop:\n{result.stderr}")
