#!/usr/bin/env bash
# Regenerates deploy/'s generated files:
#   deploy/crds/*.yaml and deploy/chart/rackd/crds/*.yaml   from rackd-model's types (gen-crds)
#   deploy/manifests/rackd.yaml                              the chart rendered by helm (gen-manifests)
# helm: $HELM, else $RACKD_K8S_BIN_DIR/helm, else the one scripts/k8s-build.sh builds (cached).
# The tests in deploy/tests fail, naming this script, when a committed file is stale.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run -q -p rackd-deploy --bin gen-crds
if [ -z "${HELM:-}" ] && [ -z "${RACKD_K8S_BIN_DIR:-}" ]; then
  RACKD_K8S_BIN_DIR=$(./scripts/k8s-build.sh | tail -n 1)
  export RACKD_K8S_BIN_DIR
fi
cargo run -q -p rackd-deploy --bin gen-manifests
