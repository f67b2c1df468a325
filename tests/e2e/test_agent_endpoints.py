"""`reconciler run`'s endpoints end to end, the real command in a subprocess: a signed push
webhook fetches at once, metrics scraped and parsed after a real rollout, Events seen with
kubectl, JSON log lines, and progress lines while a wave waits."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler import contract
from reconciler.localcluster import controllers
from reconciler.site import state
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret"
WC_FILE = "sites/edge-sfo-01/manifests/10-workloadcluster.yaml"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


class Agent:
    """`reconciler run --log-format json` with its endpoints on free ports, its stderr read
    as it comes."""

    def __init__(self, site: Site, *extra: str) -> None:
        self.pod = f"test-{uuid.uuid4().hex[:8]}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run", "--repo", site.url, "--site", SITE,
             "--state-dir", str(site.state_dir), "--interval", "10m", "--no-file-watch",
             "--log-format", "json", "--metrics-port", "0", *extra],
            env={**os.environ, "KUBECONFIG": str(site.target.kubeconfig),
                 "RECONCILER_WEBHOOK_SECRET": SECRET, "POD_NAME": self.pod},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        assert self.process.stderr is not None
        stream = self.process.stderr
        self._reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._reader.start()
        wait_for("the endpoints", lambda: self.port is not None or self.process.poll() is not None)
        assert self.port is not None, self.text()

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    @property
    def port(self) -> int | None:
        for line in list(self.lines):
            found = re.search(r"/metrics.* on port (\d+)", line)
            if found:
                return int(found.group(1))
        return None

    def text(self) -> str:
        return "".join(self.lines)

    def messages(self, start: str) -> list[str]:
        return [r["message"] for r in self.records if r["message"].startswith(start)]

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, str]:
        assert self.port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        finally:
            self.process.kill()
            self.process.communicate()
            self._reader.join(5)
        return code


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            running.stop()


def succeeded(site: Site, intent_id: str | None = None) -> bool:
    if not site.store.path.exists():
        return False
    record = site.store.load().rollout
    return (record is not None and record.phase is state.Outcome.SUCCEEDED
            and intent_id in (None, record.intent_id))


def github_push(branch: str = "main", *, event: str = "push",
                secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": f"refs/heads/{branch}", "after": "0" * 40}).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={digest}",
                  "Content-Type": "application/json"}


def test_a_signed_push_webhook_fetches_at_once(local_cluster: ClusterUnderTest,
                                              remote: gitrepo.GitRemote, tmp_path: Path,
                                              agents: list[Agent]) -> None:
    """With a 10-minute poll and no file watch, only the webhook can explain a fetch: a
    badly signed push and a ping fetch nothing; a signed push to the branch makes the agent
    fetch and accept the new intent within seconds. Every log line is JSON with a time, a
    level, a message and the site."""
    site = Site(root=tmp_path, remote_url=remote.url, target=local_cluster)
    running = Agent(site, "--webhook-port", "0")
    agents.append(running)
    wait_for("the first rollout", lambda: succeeded(site), timeout=60)
    assert running.request("GET", "/readyz")[0] == 200
    threading.Event().wait(1.0)  # start() may have run a second pass: let it end
    fetches = len(running.messages("fetched main at"))
    assert fetches in (1, 2)

    gitrepo.restamp(remote, site=SITE, new_id="hooked", sequence=2)
    remote.commit_and_push("Intent hooked\n\nIntent-Id: hooked")
    body, headers = github_push()
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert running.request("POST", "/hooks/github", body, forged)[0] == 401
    ping_body, ping = github_push(event="ping")
    assert running.request("POST", "/hooks/github", ping_body, ping)[0] == 202
    other_body, other = github_push("feature")
    assert running.request("POST", "/hooks/github", other_body, other)[0] == 202
    threading.Event().wait(2.0)
    assert len(running.messages("fetched main at")) == fetches  # nothing triggered

    sent = time.monotonic()
    status, answer = running.request("POST", "/hooks/github", body, headers)
    assert (status, json.loads(answer)["result"]) == (200, "triggered")
    wait_for("the pushed intent", lambda: succeeded(site, "hooked"), timeout=20)
    assert len(running.messages("fetched main at")) == fetches + 1
    assert time.monotonic() - sent < 15

    assert running.stop() == 0
    records = running.records
    assert records, running.text()
    for record in records:
        assert {"time", "level", "message", "site"} <= set(record), record
        assert record["site"] == SITE
    assert SECRET not in running.text()


def test_metrics_events_and_progress_of_a_real_rollout(any_cluster: ClusterUnderTest,
                                                       remote: gitrepo.GitRemote,
                                                       tmp_path: Path,
                                                       agents: list[Agent]) -> None:
    """After a rollout whose wave 10 waits several seconds: progress lines name the object
    waited on; /metrics parses and holds the accepted intent, one succeeded rollout, an
    apply and a wait per wave; the Accepted and Succeeded Events are there for kubectl."""
    text = remote.read(WC_FILE)
    remote.write(WC_FILE, text.replace(
        '    reconciler.dev/wave: "10"',
        f'    reconciler.dev/wave: "10"\n    {controllers.DELAY_ANNOTATION}: "7"'))
    remote.commit_and_push("A slow workload cluster")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    running = Agent(site)
    agents.append(running)
    wait_for("the rollout", lambda: succeeded(site), timeout=90)

    progress = running.messages("wave 10: waiting on 1 object(s)")
    assert progress, running.text()
    assert "WorkloadCluster/sfo-ran/sfo-wc-01" in progress[0]

    status, body = running.request("GET", "/metrics")
    assert status == 200
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    accepted = site.store.load().accepted
    assert accepted is not None
    info = [dict(labels) for name, labels in samples if name == "reconciler_intent_info"]
    assert info == [{"site": SITE, "intent_id": accepted.id, "commit": accepted.commit,
                     "sequence": str(accepted.sequence)}]

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset({"site": SITE, **labels}.items())))

    assert value("reconciler_rollouts_total", outcome="succeeded") == 1
    assert value("reconciler_apply_duration_seconds_count") == 3
    assert value("reconciler_wait_duration_seconds_count") == 3
    assert (value("reconciler_wait_duration_seconds_sum") or 0) >= 5
    assert (value("reconciler_last_successful_sync_timestamp_seconds") or 0) > time.time() - 120
    assert running.request("GET", "/healthz")[0] == 200
    assert running.request("GET", "/readyz")[0] == 200

    def ours() -> list[dict[str, Any]]:
        found = kubectl(any_cluster, "get", "events", "-n", "default", "-l",
                        f"{contract.LABEL_SITE}={SITE}", "-o", "json")["items"]
        return [e for e in found if e.get("reportingInstance", "").startswith(running.pod)]

    wait_for("the Events", lambda: {"Accepted", "Succeeded"} <= {e["reason"] for e in ours()})
    assert running.stop() == 0
    accepted_event = next(e for e in ours() if e["reason"] == "Accepted")
    assert accepted_event["type"] == "Normal"
    assert accepted_event["involvedObject"]["kind"] == "Namespace"
    assert f"accepted intent {accepted.id}" in accepted_event["message"]
    assert accepted_event["count"] == 1
