#!/usr/bin/env bash
# The local stack: a real single-node Kubernetes cluster on this machine (tests/k8s/real-node.sh:
# kubelet, containerd, kube-proxy, CoreDNS and the control plane in a network namespace with no
# link out), this workspace's images built and imported, everything installed from deploy/ with
# kustomize (operator, order service, Redis, the sample fleet `inventory`), the order service
# forwarded to 127.0.0.1:3001, and one sample order with the consumer pod that applied it.
# Stays up until Ctrl-C; --once exits after the sample. Tears down by PID what it started.
#
#   scripts/local-stack.sh [--once] [--streams]
#
# Needs root (namespaces, mounts, cgroups), Rust and Go; installs the rest (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "$0 runs a real Kubernetes node (namespaces, mounts, cgroups): run it as root" >&2; exit 1; }

once=false; variant=deploy
for arg in "$@"; do
  case "$arg" in
    --once) once=true ;;
    --streams) variant=deploy/variants/streams ;;
    *) echo "usage: $0 [--once] [--streams]" >&2; exit 2 ;;
  esac
done
ORDER_PORT=${ORDER_PORT:-3001}
started=$(date +%s)
state=$(mktemp -d -t exactly-once-stack-XXXXXX)
ns=exactly-once

scripts/install-deps.sh
echo "building the cluster's binaries (cached after the first run) and the release binaries..."
bin=$(tests/k8s/build.sh --print-bin-dir)
cargo build --quiet --release -p operator -p order -p consumer --bins

forward_pid=""
stop() {
  trap - EXIT INT TERM
  echo "stopping..."
  if [[ -n "$forward_pid" ]]; then
    pkill -TERM -P "$forward_pid" 2>/dev/null || true
    kill "$forward_pid" 2>/dev/null || true
  fi
  tests/k8s/real-node.sh down "$state" || true
  echo "stopped; logs were in $state/logs"
}
trap stop EXIT
trap 'exit 130' INT TERM

K8S_BIN_DIR=$bin tests/k8s/real-node.sh up "$state" --owner-pid $$
# shellcheck source=/dev/null
source "$state/env"
kubectl() { "$KUBECTL" "$@"; }

scripts/build-images.sh --no-build --out "$state/images" >/dev/null
tests/k8s/real-node.sh import "$state" "$state"/images/*.tar

# The CRD first: the sample fleet can only be applied once its CRD is served (deploy/README.md).
kubectl apply --server-side -k crds/ >/dev/null
kubectl wait --for=condition=Established crd/exactlyonceconsumers.exactlyonce.dev --timeout=60s >/dev/null
kubectl apply --server-side -k "$variant" >/dev/null
kubectl -n $ns rollout status statefulset/redis --timeout=180s >/dev/null
kubectl -n $ns rollout status deployment/order-service --timeout=180s >/dev/null
kubectl -n $ns rollout status deployment/exactly-once-operator --timeout=180s >/dev/null
for _ in $(seq 900); do
  ready=$(kubectl -n $ns get eoc/inventory -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
  [[ "$ready" == 3 ]] && break
  sleep 0.2
done
[[ "$ready" == 3 ]] || { echo "eoc/inventory never had 3 ready consumers" >&2; kubectl -n $ns get pods >&2; exit 1; }

# kubectl port-forward binds one pod and exits when it goes away; start it again if it does.
(
  while :; do
    kubectl -n $ns port-forward svc/order-service "$ORDER_PORT:3001" --address 127.0.0.1 \
      >>"$state/logs/port-forward.log" 2>&1 || true
    sleep 1
  done
) &
forward_pid=$!
api="http://127.0.0.1:$ORDER_PORT"
for _ in $(seq 300); do curl -fsS -o /dev/null "$api/readyz" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "$api/readyz" || { echo "no answer from $api/readyz; see $state/logs" >&2; exit 1; }
echo "up in $(( $(date +%s) - started ))s: node eo-node, namespace $ns, order service on $api"
kubectl get eoc -A

sample=$(scripts/sample-order.sh "$api")
echo "$sample"
consumer=$(tail -n 1 <<<"$sample" | sed 's/^applied by: //')
echo "that pod: $(kubectl -n $ns get pod "$consumer" -o jsonpath='{.metadata.name}, {.status.podIP} on node {.spec.nodeName}' 2>/dev/null)"
$once && exit 0
cat <<TRY

Try, from another shell:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$KUBECTL
  kubectl get eoc -n $ns
  kubectl scale eoc/inventory -n $ns --replicas=5
  curl -X POST localhost:$ORDER_PORT/orders -H content-type:application/json -d '{"items":[{"id":"001","quantity":1}]}'
  kubectl logs -n $ns -l app.kubernetes.io/instance=inventory --tail=5
Ctrl-C stops everything.
TRY
while :; do sleep 1; done
