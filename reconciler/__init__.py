"""intent-reconciler: an intent-fenced GitOps reconciler for fleets of edge sites."""

__version__ = "0.1.0"
