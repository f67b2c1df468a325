"""An embedded Kubernetes API server for the demo and the tests, with simulated controllers.

The public surface: `LocalCluster`, `Fault`, `RequestRecord` and `run()` (the
`reconciler local-cluster` command). The simulated controllers live in
`reconciler.localcluster.controllers`, the only module here that imports `kubernetes`.
"""

from __future__ import annotations

from reconciler.localcluster.faults import Fault, FaultHandle, FaultSet
from reconciler.localcluster.requestlog import RequestRecord
from reconciler.localcluster.server import LocalCluster, run

__all__ = ["Fault", "FaultHandle", "FaultSet", "LocalCluster", "RequestRecord", "run"]
