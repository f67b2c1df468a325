"""Fixtures for the real-cluster tests: one etcd + kube-apiserver + controller manager a session."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import tests.kube

KUBECTL = shutil.which("kubectl")

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(real_cluster: tests.kube.RealCluster) -> Kubectl:
    """Run the real kubectl against real_cluster: kubectl("get", "ns", input=None, check=True)."""
    if KUBECTL is None:
        pytest.skip("kubectl not on PATH")
    kubeconfig: Path = real_cluster.kubeconfig

    def run(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        command = [str(KUBECTL), f"--kubeconfig={kubeconfig}", *args]
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`kubectl {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    return run
