#!/usr/bin/env bash
# Build the Helm CLI the chart tests render with (tests/deploy/test_helm_chart.py), from source through Go's
# module proxy: `go install helm.sh/helm/v4/cmd/helm@VERSION` into .services/helm/bin (gitignored). A binary
# there that already reports VERSION is kept, so only the first run builds: about 3 minutes on these 2-core
# machines, most of it compiling; Go's module and build caches in $HOME make a rebuild after a fresh clone
# quicker. Needs Go >= 1.26 (helm v4.3.2's go.mod).
#
#   deploy/install-helm.sh          build once; print the binary's path
#   HELM_VERSION=v4.3.2 (default)   the version; the tests accept only this one
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${HELM_VERSION:-v4.3.2}
BIN_DIR=$ROOT/.services/helm/bin  # where tests/deploy/test_helm_chart.py looks (or DIMEE_HELM)
HELM=$BIN_DIR/helm

say() { printf '[helm] %s\n' "$*" >&2; }
die() { printf '[helm] error: %s\n' "$*" >&2; exit 1; }

if [ -x "$HELM" ] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$VERSION"; then
  echo "$HELM"
  exit 0
fi

if ! command -v go >/dev/null; then
  [ -x /usr/local/go/bin/go ] && PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || die "go is not installed: install Go >= 1.26 (helm v4.3.2 needs it), then rerun"

say "building helm $VERSION with $(go version | cut -d' ' -f3) (first time: several minutes)"
mkdir -p "$BIN_DIR"
start=$(date +%s)
# CGO off: a static binary with no C toolchain needed; GOFLAGS from the environment are kept. The version is
# stamped as Helm's own Makefile stamps it (without it `helm version` says only the minor, "v4.3").
CGO_ENABLED=0 GOBIN=$BIN_DIR go install -trimpath -ldflags "-w -s -X helm.sh/helm/v4/internal/version.version=$VERSION" \
  "helm.sh/helm/v4/cmd/helm@$VERSION" || die "go install helm.sh/helm/v4/cmd/helm@$VERSION failed"
"$HELM" version --template '{{.Version}}' | grep -qx "$VERSION" || die "$HELM does not report $VERSION"
say "built $HELM in $(( $(date +%s) - start ))s"
echo "$HELM"
