#!/usr/bin/env bash
# Builds the cluster the tests and the local stack run (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy; kwok and its stages;
# CoreDNS; helm) from the Go modules pinned next to this script, into a cache outside the clone.
# Each module is a part cached under its own pins, so changing one rebuilds only that one; the
# bin dir printed is a set of links to the parts. A warm run builds nothing.
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
recipe=3
kube_version=v1.37.2
cache_root="${EXACTLY_ONCE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/exactly-once/k8s}"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod

# part_key MODULE_DIR : the cache key of one part, from the recipe and that module's pins.
part_key() { { echo "recipe=$recipe"; cat "$1/go.mod" "$1/go.sum"; } | sha256sum | cut -c1-16; }

# --- how each part is built (into $1, the part's staging dir) ------------------------------

build_kubernetes() {
  local tags=selinux,notest,grpcnotrace build_date minor kube_ldflags pkg
  build_date="$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
  minor="${kube_version#v1.}"; minor="${minor%%.*}"
  kube_ldflags="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  nice -n 19 go build -trimpath -tags "$tags" -ldflags "$kube_ldflags" -o "$1/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  nice -n 19 go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3
  # The real node's pause image is compiled from the source the kubernetes module ships.
  local pause_src
  pause_src="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  gcc -Os -static -DVERSION=v3.10-local -o "$1/pause" "$pause_src"
  strip "$1/pause"
}

build_kwok() {
  local kwok_version stage_dir f
  kwok_version="$(go list -m -f '{{.Version}}' sigs.k8s.io/kwok)"
  nice -n 19 go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" \
    -o "$1/kwok" sigs.k8s.io/kwok/cmd/kwok
  # The bare kwok binary has no stages; take the upstream ones from the pinned module
  # (node setup, lease heartbeat, pods become Ready, finish, and go away when deleted).
  stage_dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$stage_dir/$f"
  done > "$1/kwok-stages.yaml"
}

build_coredns() {
  local version
  version="$(go list -m -f '{{.Version}}' github.com/coredns/coredns)"
  nice -n 19 go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${version}" \
    -o "$1/coredns" .
}

build_helm() {
  local version
  version="$(go list -m -f '{{.Version}}' helm.sh/helm/v4)"
  nice -n 19 go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${version}" \
    -o "$1/helm" helm.sh/helm/v4/cmd/helm
}

# --- the parts: name, module dir, builder, what it must produce ----------------------------

parts=(
  "kubernetes|$here|build_kubernetes|etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy pause"
  "kwok|$here/kwok|build_kwok|kwok kwok-stages.yaml"
  "coredns|$here/coredns|build_coredns|coredns"
  "helm|$here/helm|build_helm|helm"
)

complete() { # complete DIR FILES... : every file is there and not empty
  local d=$1 f; shift
  for f in "$@"; do [[ -s "$d/$f" ]] || return 1; done
}

mkdir -p "$cache_root/parts"
bin_key="$(for p in "${parts[@]}"; do IFS='|' read -r name mod _ _ <<<"$p"; echo "$name $(part_key "$mod")"; done \
  | sha256sum | cut -c1-16)"
bin_dir="$cache_root/$bin_key/bin"

all=()
for p in "${parts[@]}"; do
  IFS='|' read -r name mod builder outputs <<<"$p"
  read -r -a files <<<"$outputs"
  all+=("${files[@]}")
  part_dir="$cache_root/parts/$name-$(part_key "$mod")"
  complete "$part_dir" "${files[@]}" && continue
  # Two test binaries may ask at once: one builds, the other waits and then finds it built.
  exec 9>"$part_dir.lock"
  flock 9
  if ! complete "$part_dir" "${files[@]}"; then
    command -v go >/dev/null || { echo "build.sh: go is not on PATH (need Go >= 1.26)" >&2; exit 1; }
    staging="$part_dir.partial.$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    start=$(date +%s)
    log "build.sh: building $name into $part_dir (cold Kubernetes: tens of minutes on 2 cores)"
    (cd "$mod" && "$builder" "$staging") >&2
    rm -rf "$part_dir"
    mv "$staging" "$part_dir"
    log "build.sh: built $name in $(( $(date +%s) - start ))s"
  fi
  flock -u 9
  exec 9>&-
done

if ! complete "$bin_dir" "${all[@]}"; then
  staging="$bin_dir.partial.$$"
  rm -rf "$staging"
  mkdir -p "$staging"
  for p in "${parts[@]}"; do
    IFS='|' read -r name mod _ outputs <<<"$p"
    for f in $outputs; do ln -s "$cache_root/parts/$name-$(part_key "$mod")/$f" "$staging/$f"; done
  done
  rm -rf "$bin_dir"
  mv "$staging" "$bin_dir"
fi

if [[ $quiet == 0 ]]; then
  log "build.sh: binaries in:"
fi
echo "$bin_dir"
