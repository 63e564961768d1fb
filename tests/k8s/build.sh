#!/usr/bin/env bash
# Builds the control plane the operator tests run against (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, plus kwok-stages.yaml) from the Go modules pinned next to
# this script, into a cache outside the clone keyed by those pins. A warm run builds nothing.
#
#   tests/k8s/build.sh                  build if needed, then print the bin dir (with progress)
#   tests/k8s/build.sh --print-bin-dir  build if needed, print only the bin dir on stdout
#
# Env: EXACTLY_ONCE_K8S_CACHE overrides the cache root
#      (default ${XDG_CACHE_HOME:-$HOME/.cache}/exactly-once/k8s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
quiet=0
case "${1:-}" in
  --print-bin-dir) quiet=1 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin-dir]" >&2; exit 2 ;;
esac
log() { if [[ $quiet == 0 ]]; then echo "$@" >&2; fi; }

# Bump when the flags below change, so old caches are not mistaken for new ones.
recipe=1
kube_version=v1.37.2

key="$( { echo "recipe=$recipe"; cat "$here/go.mod" "$here/go.sum" "$here/kwok/go.mod" "$here/kwok/go.sum"; } \
  | sha256sum | cut -c1-16)"
cache_root="${EXACTLY_ONCE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/exactly-once/k8s}"
bin_dir="$cache_root/$key/bin"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

complete() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
  [[ -s "$bin_dir/kwok-stages.yaml" ]]
}

if ! complete; then
  mkdir -p "$cache_root"
  # Two test binaries may ask at once: one builds, the other waits and then finds it built.
  exec 9>"$cache_root/$key.lock"
  flock 9
  if ! complete; then
    command -v go >/dev/null || { echo "build.sh: go is not on PATH (need Go >= 1.26)" >&2; exit 1; }
    staging="$cache_root/$key/bin.partial.$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
    tags=selinux,notest,grpcnotrace
    build_date="$(cd "$here" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
    minor="${kube_version#v1.}"; minor="${minor%%.*}"
    kube_ldflags="-s -w"
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    done
    start=$(date +%s)
    log "build.sh: building Kubernetes $kube_version into $bin_dir (cold: tens of minutes on 2 cores)"
    (
      cd "$here"
      nice -n 19 go build -trimpath -tags "$tags" -ldflags "$kube_ldflags" -o "$staging/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
      nice -n 19 go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3
    ) >&2
    (
      cd "$here/kwok"
      kwok_version="$(go list -m -f '{{.Version}}' sigs.k8s.io/kwok)"
      nice -n 19 go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" \
        -o "$staging/kwok" sigs.k8s.io/kwok/cmd/kwok
      # The bare kwok binary has no stages; take the upstream ones from the pinned module
      # (node setup, lease heartbeat, pods become Ready, finish, and go away when deleted).
      stage_dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
      for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
               pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        echo "---"
        cat "$stage_dir/$f"
      done > "$staging/kwok-stages.yaml"
    ) >&2
    rm -rf "$bin_dir"
    mv "$staging" "$bin_dir"
    log "build.sh: built in $(( $(date +%s) - start ))s"
  fi
  flock -u 9
fi

if [[ $quiet == 0 ]]; then
  log "build.sh: binaries in:"
fi
echo "$bin_dir"
