"""The public contract between the manager and the sites: keys, kinds, and the repo layout.

Every other module imports these names from here; nothing else spells them out.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from pathlib import Path, PurePosixPath

from reconciler import errors

# Annotations the manager puts on manifests.
ANNOTATION_PREFIX = "reconciler.dev/"
ANNOTATION_INTENT_ID = ANNOTATION_PREFIX + "intent-id"
ANNOTATION_WAVE = ANNOTATION_PREFIX + "wave"
ANNOTATION_PRUNE = ANNOTATION_PREFIX + "prune"
ANNOTATION_HEALTH = ANNOTATION_PREFIX + "health"
# `enabled`: an apply refused for an immutable field deletes and recreates the object.
ANNOTATION_REPLACE = ANNOTATION_PREFIX + "replace"
REPLACE_ENABLED = "enabled"
# `enabled`: an object that exists but was not applied for this site (no
# `reconciler.dev/site: <site>` label) is taken over; without it the rollout refuses it
# (rule `adoption`, docs/policy.md). Not the `--adopt` flag, which is about a lost state.
ANNOTATION_ADOPT = ANNOTATION_PREFIX + "adopt"
ADOPT_ENABLED = "enabled"

# Labels the reconciler adds to everything it applies.
LABEL_SITE = ANNOTATION_PREFIX + "site"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "reconciler"

# Server-side apply field managers. Each site applies its manifests as
# `reconciler/<site>` (field_manager()), so two sites that claim one object conflict
# instead of taking it from each other. SHARED_FIELD_MANAGER applies what every site
# shares (the CRDs of crds/); it was every site's manager before, so a site migrates the
# Apply entries it finds under it on its own objects (site/managers.py).
SHARED_FIELD_MANAGER = "reconciler"
LEGACY_FIELD_MANAGER = SHARED_FIELD_MANAGER
FIELD_MANAGER_PREFIX = SHARED_FIELD_MANAGER + "/"

# The Intent document.
INTENT_API_VERSION = "reconciler.dev/v1alpha1"
INTENT_KIND = "Intent"
INTENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,63}$")

# Commit trailers the manager writes.
TRAILER_INTENT_ID = "Intent-Id"
TRAILER_SITE = "Site"

# Repository layout.
SITES_DIR = PurePosixPath("sites")
CRDS_DIR = PurePosixPath("crds")
INTENT_FILE = "intent.yaml"
MANIFESTS_DIR = "manifests"
MANIFEST_SUFFIXES = (".yaml", ".yml")

# Defaults.
DEFAULT_STATE_DIR = Path(os.environ.get("RECONCILER_STATE_DIR", ".reconciler/state"))
CACHE_DIR_NAME = ".git-cache"  # inside the state dir unless --cache-dir says otherwise
DEFAULT_CACHE_DIR = DEFAULT_STATE_DIR / CACHE_DIR_NAME
DEFAULT_BRANCH = "main"

# What deploy/ installs (docs/deploy.md): the names a permission error and `reconciler rbac`
# cite. SITE_CLUSTER_ROLE grants the kinds the sites' manifests hold (`reconciler rbac`
# prints it); OWN_ROLE is the reconciler's own: a Role in its namespace (the state
# ConfigMaps, the Leases) and a ClusterRole (Events).
DEPLOY_NAMESPACE = "reconciler-system"
SERVICE_ACCOUNT = "intent-reconciler"
SITE_CLUSTER_ROLE = "intent-reconciler-site"
OWN_ROLE = "intent-reconciler"

SITE_NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


def field_manager(site: str) -> str:
    """The server-side apply field manager of one site: `reconciler/<site>`."""
    return FIELD_MANAGER_PREFIX + site


def site_dir(site: str) -> PurePosixPath:
    """The folder of one site in the repository: `sites/<site>`."""
    return SITES_DIR / site


def intent_path(site: str) -> PurePosixPath:
    """The site's commit point: `sites/<site>/intent.yaml`."""
    return site_dir(site) / INTENT_FILE


def manifests_dir(site: str) -> PurePosixPath:
    """Where the site's desired manifests live: `sites/<site>/manifests`."""
    return site_dir(site) / MANIFESTS_DIR


def data_dir() -> Path:
    """The data shipped inside the package, `reconciler/data/`: the JSON Schemas and the
    sample repository.

    Found through importlib.resources, so it is there wherever the package is installed:
    a wheel, a Git URL, the container image, an editable checkout.
    """
    found = importlib.resources.files("reconciler") / "data"
    if not isinstance(found, Path):  # a zipped install: the demo needs real folders
        raise errors.ReconcilerError(
            f"reconciler's data is not on the file system ({found}); install the package "
            "unzipped (pip does)")
    return found


def schemas_dir() -> Path:
    """The folder of JSON Schemas: intent, state, and the sample kinds."""
    return data_dir() / "schemas"


def sample_repo_dir() -> Path:
    """The telco sample repository the demo and the tests start from."""
    return data_dir() / "sample-repo"
