# intent-reconciler: the site agent and the manager's tools in one image.
#
# The base is a build argument so the image can be built from a locally made Debian base
# where the official image cannot be pulled (see ../shared/tools/container-check).
ARG BASE=python:3.12-slim
FROM ${BASE}

# git (and ssh for ssh:// remotes) is what GitPython drives; the official python image
# lacks it, a local Debian base may already have it.
RUN command -v git >/dev/null 2>&1 \
    || (apt-get update \
        && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
        && rm -rf /var/lib/apt/lists/*)

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RECONCILER_HOME=/opt/reconciler \
    RECONCILER_STATE_DIR=/var/lib/reconciler

RUN python3 -m venv /opt/venv

# The project, installed non-editable; schemas/ and sample-repo/ stay in RECONCILER_HOME,
# where reconciler.contract.home() finds them.
COPY pyproject.toml README.md /opt/reconciler/
COPY reconciler/ /opt/reconciler/reconciler/
COPY schemas/ /opt/reconciler/schemas/
COPY sample-repo/ /opt/reconciler/sample-repo/
RUN pip install --no-cache-dir /opt/reconciler \
    && rm -rf /opt/reconciler/build /opt/reconciler/*.egg-info

# An unprivileged user owning the state directory (the default --state-dir in the image).
RUN groupadd --gid 10001 reconciler \
    && useradd --no-log-init --no-create-home --uid 10001 --gid 10001 \
        --home-dir /var/lib/reconciler --shell /usr/sbin/nologin reconciler \
    && mkdir -p /var/lib/reconciler \
    && chown 10001:10001 /var/lib/reconciler

WORKDIR /var/lib/reconciler
USER 10001

ENTRYPOINT ["reconciler"]
CMD ["--help"]
