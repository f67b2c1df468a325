#!/usr/bin/env bash
# Build the real kube-apiserver, kube-controller-manager and etcd for the test suite.
#
# Called by tests/kube (`python -m tests.kube build`, tests.kube.build()) or by hand.
# The binaries go to a cache directory OUTSIDE the repository, keyed by the pinned
# Kubernetes version, the Go version and a hash of go.mod, go.sum, the main files and this
# script (its flags shape the binaries):
#   ${RECONCILER_KUBE_CACHE:-$HOME/.cache/intent-reconciler/kube}/<k8s>-<go>-<hash>/bin/
# A binary already there is reused, so a second run builds nothing.
# Progress goes to stderr, one line per binary; the bin directory alone goes to stdout.
set -euo pipefail

export LC_ALL=C  # the hash below concatenates a glob: sort it the same everywhere

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

go="${GO:-}"
if [[ -z "$go" ]]; then
    if command -v go >/dev/null 2>&1; then
        go="$(command -v go)"
    elif [[ -x /usr/local/go/bin/go ]]; then
        go=/usr/local/go/bin/go
    else
        echo "build.sh: go not found (install Go 1.26+ or set GO=/path/to/go)" >&2
        exit 127
    fi
fi

k8s_version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' go.mod)"
go_version="$("$go" env GOVERSION)"
hash="$(cat go.mod go.sum cmd/*/main.go build.sh | sha256sum | cut -c1-12)"
cache="${RECONCILER_KUBE_CACHE:-$HOME/.cache/intent-reconciler/kube}"
bin="$cache/$k8s_version-$go_version-$hash/bin"
mkdir -p "$bin"

# One build at a time per cache entry (two pytest sessions may start together).
exec 9>"$bin/.lock"
flock 9

export GOFLAGS=-mod=mod
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
version_pkg=k8s.io/component-base/version
ldflags="-s -w \
 -X $version_pkg.gitVersion=$k8s_version \
 -X $version_pkg.gitMajor=$major \
 -X $version_pkg.gitMinor=$minor \
 -X $version_pkg.gitTreeState=clean"

for name in kube-apiserver kube-controller-manager etcd; do
    if [[ -x "$bin/$name" ]]; then
        echo "kube build: $name $k8s_version is cached" >&2
        continue
    fi
    echo "kube build: building $name ($k8s_version, $go_version) ..." >&2
    start=$SECONDS
    "$go" build -trimpath -ldflags="$ldflags" -o "$bin/.$name.tmp" "./cmd/$name"
    mv -f "$bin/.$name.tmp" "$bin/$name"
    size="$(du -h "$bin/$name" | cut -f1)"
    echo "kube build: built $name in $((SECONDS - start))s ($size)" >&2
done

echo "$bin"
