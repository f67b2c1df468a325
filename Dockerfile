# intent-reconciler: the site agent and the manager's tools in one image.
#
#   build:  docker build -t intent-reconciler .     (or ../shared/tools/container-check)
#   run:    docker run --read-only -v reconciler-state:/var/lib/reconciler --tmpfs /tmp \
#             intent-reconciler run --repo https://git.example.com/fleet.git --site edge-sfo-01
#
# Stages on one base: `build` makes a virtual environment with the project and its pinned
# dependencies (constraints.txt); `runtime` is that environment with what runs it (python3,
# git, ssh, tini) and no pip, setuptools or compiler; the image is `runtime` as one layer.
# The base is a build argument so the image can be built from a locally made Debian base
# where the official image cannot be pulled (see ../shared/tools/container-check).
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/src/constraints.txt
# The constraints pin the dependencies, and setuptools in pip's isolated build too.
COPY constraints.txt pyproject.toml README.md /src/
COPY reconciler/ /src/reconciler/
# Then what never runs goes: the installers; the kubernetes client's asyncio twin
# (kubernetes.aio, which nothing imports) with the aiohttp stack only it uses; and the
# non-strict schema variants of kubernetes-validate (validate reads the -strict ones).
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install /src \
    && /opt/venv/bin/pip uninstall -y aiohttp aiohttp-retry aiosignal aiohappyeyeballs \
        yarl multidict frozenlist propcache \
    && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
    && site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && rm -rf "$site/kubernetes/aio" "$site"/kubernetes_validate/kubernetes-json-schema/*-local \
    && /opt/venv/bin/python -c 'import kubernetes.client, reconciler.kube, reconciler.contract as c; c.schemas_dir().is_dir() or exit(1)' \
    && /opt/venv/bin/reconciler validate -q /src/reconciler/data/sample-repo

# The final file system, made on the same base: what runs (python3, git, ssh for ssh://
# remotes, CA certificates for https://, tini as PID 1 to forward SIGTERM and reap git's
# children), the environment above, the user. A local Debian base has them already; the
# official python image gets them from apt. Then what does not run goes: pip, setuptools
# and wheel wherever the base put them, perl (git's core commands are C), apt's caches,
# documentation, locales, time zones (the tzdata package has them), iconv's converters
# (nothing here re-encodes), git's shell and scalar.
FROM ${BASE} AS runtime
RUN set -eu; \
    missing=""; \
    command -v git >/dev/null || missing="$missing git"; \
    command -v ssh >/dev/null || missing="$missing openssh-client"; \
    command -v tini >/dev/null || missing="$missing tini"; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"; \
    if [ -n "$missing" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $missing; \
    fi; \
    installed() { dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' "$@" 2>/dev/null \
                  | awk '$1 == "ii" { print $2 }' || true; }; \
    installers=$(installed 'python3-pip*' 'python3-setuptools*' 'python3-wheel*' \
                 'python3-venv' 'python3.*-venv'); \
    if [ -n "$installers" ]; then apt-get purge -y $installers; fi; \
    perl=$(installed perl 'perl-modules-*' 'libperl5*'); \
    if [ -n "$perl" ]; then dpkg --purge --force-depends $perl; fi; \
    rm -rf /usr/local/lib/python3*/site-packages/pip /usr/local/lib/python3*/site-packages/pip-* \
        /usr/local/lib/python3*/site-packages/setuptools* /usr/local/lib/python3*/site-packages/wheel* \
        /usr/local/lib/python3*/ensurepip /usr/lib/python3*/ensurepip \
        /usr/local/bin/pip* /usr/bin/pip* \
        /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* \
        /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
        /usr/share/lintian /usr/share/bash-completion /usr/share/zoneinfo /usr/share/perl5 \
        /usr/share/gitweb /usr/bin/scalar /usr/bin/git-shell /usr/lib/git-core/git-shell \
        /usr/lib/x86_64-linux-gnu/gconv /usr/lib/python3*/pydoc_data /usr/lib/python3*/lib2to3
COPY --from=build /opt/venv /opt/venv
# An unprivileged numeric user owning the state directory (the default --state-dir in
# the image, where the Git cache lives too).
RUN groupadd --gid 10001 reconciler \
    && useradd --no-log-init --no-create-home --uid 10001 --gid 10001 \
        --home-dir /var/lib/reconciler --shell /usr/sbin/nologin reconciler \
    && mkdir -p /var/lib/reconciler \
    && chown 10001:10001 /var/lib/reconciler \
    && chmod 0750 /var/lib/reconciler \
    && git --version && ssh -V && tini --version && /opt/venv/bin/reconciler --version

# One layer: what was removed above takes no space.
FROM scratch
COPY --from=runtime / /

# OCI labels; the revision and the source URL are given at build time, e.g.
#   --build-arg REVISION=$(git rev-parse HEAD) --build-arg SOURCE=https://git.example.com/...
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="intent-reconciler" \
      org.opencontainers.image.description="An intent-fenced GitOps reconciler for fleets of edge sites" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/reconciler \
    RECONCILER_STATE_DIR=/var/lib/reconciler

# The root file system can be read-only: everything written goes to these two.
VOLUME ["/var/lib/reconciler", "/tmp"]
WORKDIR /var/lib/reconciler
USER 10001:10001

# tini is PID 1: SIGTERM reaches the reconciler, which records its state and exits within
# 5 s; the reconciler handles SIGTERM itself too, should it be PID 1 (command: overridden).
ENTRYPOINT ["tini", "--", "reconciler"]
CMD ["--help"]
