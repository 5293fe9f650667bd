#!/usr/bin/env bash
# Builds the Kubernetes test infrastructure that kubelab (tests/kubelab) runs: kube-apiserver,
# kube-controller-manager and kubectl from k8s.io/kubernetes (its staging modules replaced by
# their published versions), etcd (a small main around go.etcd.io/etcd/server/v3/embed) and
# helm, all from the Go modules under tests/kubelab/go/, with the machine's Go and the Go
# module proxy. Go is for this test infrastructure only; the product stays Rust.
#
# The binaries are cached in
#   ${RACKD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rackd}/k8s-<v>-etcd-<v>-helm-<v>/bin/
# and rebuilt only when a binary is missing or the stamp (a hash of the go.mod, go.sum and
# .go sources, this script and the Go version) differs. The bin dir is the last line on
# stdout; progress goes to stderr. Concurrent runs wait for each other (flock).
#
# Environment: RACKD_CACHE_DIR (see above), K8S_BUILD_JOBS (go build -p, default 2),
# K8S_BUILD_FORCE=1 (rebuild even when the stamp matches).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO_DIR="$ROOT/tests/kubelab/go"

log() { echo "k8s-build: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "no 'go' on PATH: the Kubernetes test binaries are built from Go modules (Go >= 1.26)"
  exit 1
fi

# The version a go.mod requires of a module (the first "require" line naming it).
modver() { awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == m ? $2 : $3); exit }' "$1"; }
K8S_VERSION=$(modver "$GO_DIR/k8s/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(modver "$GO_DIR/etcd/go.mod" go.etcd.io/etcd/server/v3)
HELM_VERSION=$(modver "$GO_DIR/helm/go.mod" helm.sh/helm/v4)
for v in K8S_VERSION ETCD_VERSION HELM_VERSION; do
  if [ -z "${!v}" ]; then log "could not read $v from $GO_DIR/*/go.mod"; exit 1; fi
done

CACHE_ROOT=${RACKD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rackd}
DIR="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
BIN="$DIR/bin"
BINARIES=(kube-apiserver kube-controller-manager kubectl etcd helm)

stamp() {
  {
    go env GOVERSION GOOS GOARCH
    # Relative paths only: the stamp must not depend on where the checkout is.
    (cd "$ROOT" && sha256sum scripts/k8s-build.sh)
    (cd "$GO_DIR" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | awk '{print $1}'
}
STAMP=$(stamp)

up_to_date() {
  [ "${K8S_BUILD_FORCE:-0}" != 1 ] || return 1
  [ -f "$DIR/stamp" ] && [ "$(cat "$DIR/stamp")" = "$STAMP" ] || return 1
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

mkdir -p "$DIR"
exec 9>"$DIR/lock"
if ! up_to_date; then
  # Another run may be building the same versions right now: wait for it, then look again.
  flock 9
  if ! up_to_date; then
    log "building k8s $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION into $BIN ($(go env GOVERSION), -p ${K8S_BUILD_JOBS:-2}); a cold build takes a while"
    start=$(date +%s)
    NEW="$DIR/bin.new"
    rm -rf "$NEW"
    mkdir -p "$NEW"
    export CGO_ENABLED=0
    # The module files are committed: the build must not change them (a mismatch is an error,
    # not a silent update). No VCS stamping: the binaries do not depend on this checkout's git.
    export GOFLAGS="-mod=readonly -buildvcs=false"
    build=(go build -trimpath -p "${K8S_BUILD_JOBS:-2}")

    # What Kubernetes' own build (hack/lib/version.sh) stamps into its binaries, so that
    # `kubectl version` and /version report the release instead of v0.0.0-master.
    minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
    major=${K8S_VERSION#v}; major=${major%%.*}
    kver=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      kver+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
      kver+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=$K8S_VERSION"
    done
    (cd "$GO_DIR/k8s" && "${build[@]}" -ldflags "-s -w$kver" -o "$NEW/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl)
    log "kubernetes built ($(( $(date +%s) - start ))s)"
    (cd "$GO_DIR/etcd" && "${build[@]}" -ldflags "-s -w" -o "$NEW/etcd" .)
    log "etcd built ($(( $(date +%s) - start ))s)"
    (cd "$GO_DIR/helm" && "${build[@]}" \
      -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
      -o "$NEW/helm" helm.sh/helm/v4/cmd/helm)
    log "helm built ($(( $(date +%s) - start ))s)"

    rm -rf "$BIN"
    mv "$NEW" "$BIN"
    echo "$STAMP" >"$DIR/stamp"
    log "done in $(( $(date +%s) - start ))s"
  fi
  flock -u 9
fi
echo "$BIN"
