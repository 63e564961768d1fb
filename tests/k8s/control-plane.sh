#!/usr/bin/env bash
# A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and either KWOK with one fake node on 127.0.0.1 or,
# with --node-ip, nothing else: real-node.sh runs this script inside its network namespace and
# adds a real kubelet. This script is the one place that knows these components' flags; the
# Rust harness (tests/src/control_plane.rs) and real-node.sh call it.
#
#   tests/k8s/control-plane.sh up DIR [--owner-pid PID] [--node-ip IP]
#                                                         start, wait until usable, write DIR/env
#   tests/k8s/control-plane.sh down DIR                   stop exactly the PIDs `up` started
#   tests/k8s/control-plane.sh logs DIR [LINES]           tail of every component's log
#
# After `up`: `source DIR/env` sets KUBECONFIG and KUBECTL (our kubectl, not the one on PATH).
# With --owner-pid, a watchdog runs `down` as soon as that process exits, however it exits.
# Env: K8S_BIN_DIR (default: from build.sh), K8S_START_TIMEOUT seconds per component (180).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
timeout_s="${K8S_START_TIMEOUT:-180}"
node_name=kwok-node-0

die() { echo "control-plane.sh: $*" >&2; exit 1; }

# --- helpers -------------------------------------------------------------------------------

free_port() {
  # A random unprivileged port nobody listens on, not already handed out by this run.
  local port
  while :; do
    port=$(( 20000 + RANDOM % 40000 ))
    [[ " ${taken_ports:-} " == *" $port "* ]] && continue
    ss -Htan "sport = :$port" 2>/dev/null | grep -q . && continue
    taken_ports="${taken_ports:-} $port"
    echo "$port"
    return
  done
}

start() { # start NAME CMD... : run in the background, log to DIR/logs/NAME.log, record the PID
  local name=$1; shift
  "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$dir/pids"
}

pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$dir/pids"; }

# wait_for NAME DESCRIPTION CMD... : poll CMD until it succeeds; fail if NAME's process dies or
# the deadline passes.
wait_for() {
  local name=$1 what=$2; shift 2
  local pid deadline=$(( $(date +%s) + timeout_s ))
  pid=$(pid_of "$name")
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      fail "$name exited before $what"
    fi
    if (( $(date +%s) >= deadline )); then
      fail "$name: timed out after ${timeout_s}s waiting for $what"
    fi
    sleep 0.2
  done
}

logs() {
  local lines=${1:-40} f
  for f in "$dir"/logs/*.log; do
    [[ -e "$f" && "$f" != */pki.log ]] || continue
    echo "----- $(basename "$f" .log): last $lines lines of $f -----"
    tail -n "$lines" "$f"
  done
}

fail() {
  echo "control-plane.sh: $*" >&2
  logs 40 >&2
  down >&2 || true
  exit 1
}

ours() { # ours PID : is PID still a process we started (its command line names DIR)?
  local cmdline
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$cmdline" == *"$dir/"* ]]
}

down() {
  [[ -f "$dir/pids" ]] || return 0
  local name pid deadline
  # Newest first, one at a time, so the apiserver outlives its clients and etcd outlives the
  # apiserver: an apiserver whose etcd is gone spends its whole grace period retrying it.
  tac "$dir/pids" | while read -r name pid; do
    [[ "$pid" == "$$" ]] && continue
    ours "$pid" && kill -TERM "$pid" 2>/dev/null || true
    deadline=$(( $(date +%s) + 15 ))
    while ours "$pid" && (( $(date +%s) < deadline )); do sleep 0.1; done
    if ours "$pid"; then
      echo "control-plane.sh: $name ($pid) ignored SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$dir/pids"
  rm -rf "$dir/etcd-data"
}

# --- certificates --------------------------------------------------------------------------

make_pki() {
  local p="$dir/pki"
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 365 \
      -subj "/CN=exactly-once-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    sign() { # sign NAME SUBJECT SAN
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
      printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
        -out "$1.crt" -extfile "$1.ext"
    }
    # 10.96.0.1 is the `kubernetes` Service that in-cluster clients (the operator's pods) dial.
    sign serving "/CN=kube-apiserver" \
      "IP:127.0.0.1,IP:10.96.0.1${node_ip:+,IP:$node_ip},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin "/O=system:masters/CN=exactly-once-admin" "IP:127.0.0.1,DNS:localhost"
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$dir/logs/pki.log" 2>&1 || fail "openssl failed making certificates: $(tail -n 20 "$dir/logs/pki.log")"
}

write_kubeconfig() {
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: exactly-once-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $dir/pki/admin.crt
    client-key: $dir/pki/admin.key
contexts:
- name: exactly-once-test
  context:
    cluster: exactly-once-test
    user: admin
    namespace: default
current-context: exactly-once-test
EOF
}

# --- up ------------------------------------------------------------------------------------

up() {
  local owner_pid=${1:-} node_ip=${2:-}
  [[ -f "$dir/pids" ]] && die "$dir/pids exists: a control plane from this dir may still run (down it first)"
  local bin="${K8S_BIN_DIR:-}"
  [[ -n "$bin" ]] || bin="$("$here/build.sh" --print-bin-dir)" || die "build.sh failed"
  local b
  local need=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
  [[ -n "$node_ip" ]] || need+=(kwok)
  for b in "${need[@]}"; do
    [[ -x "$bin/$b" ]] || die "$bin/$b missing (run tests/k8s/build.sh)"
  done
  [[ -n "$node_ip" || -s "$bin/kwok-stages.yaml" ]] || die "$bin/kwok-stages.yaml missing (run tests/k8s/build.sh)"
  command -v openssl >/dev/null || die "openssl is not on PATH"
  command -v curl >/dev/null || die "curl is not on PATH"

  mkdir -p "$dir/logs"
  rm -rf "$dir/etcd-data"
  : >"$dir/pids"
  if [[ -n "$owner_pid" ]]; then
    # Runs `down` when the owner (the test binary) exits, even if it panicked or was killed.
    "$self" _watch "$dir" "$owner_pid" >"$dir/logs/watchdog.log" 2>&1 </dev/null &
    echo "watchdog $!" >>"$dir/pids"
  fi

  etcd_port=$(free_port); etcd_peer_port=$(free_port); api_port=$(free_port)
  kcm_port=$(free_port); sched_port=$(free_port); kwok_port=$(free_port)
  make_pki
  write_kubeconfig
  local kc="$dir/kubeconfig" pki="$dir/pki"
  local curl_admin=(curl -sf --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
  export KUBECACHEDIR="$dir/kube-cache"
  kubectl() { "$bin/kubectl" --kubeconfig "$kc" "$@"; }

  start etcd "$bin/etcd" --name=default --data-dir="$dir/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="default=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync=true
  wait_for etcd "/health" sh -c "curl -sf --max-time 5 http://127.0.0.1:$etcd_port/health | grep -q '\"health\":\"true\"'"

  # With a real node, pods reach the API server through the `kubernetes` Service, so it
  # advertises the node's address and keeps that Service's endpoints. It binds every address of
  # the node's network namespace, which has no link out. With KWOK it stays on loopback (1.37
  # refuses a loopback advertise address unless the endpoint reconciler is off).
  local api_net=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
  [[ -z "$node_ip" ]] || api_net=(--bind-address=0.0.0.0 --advertise-address="$node_ip")
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    "${api_net[@]}" --secure-port="$api_port" \
    --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=RBAC \
    --enable-admission-plugins=PodSecurity \
    --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP \
    --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key"
  wait_for kube-apiserver "/readyz" sh -c "$(printf '%q ' "${curl_admin[@]}") https://127.0.0.1:$api_port/readyz | grep -qx ok"

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --leader-elect=false --controllers='*' --use-service-account-credentials=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --kube-api-qps=100 --kube-api-burst=200
  wait_for kube-controller-manager "/healthz" sh -c "curl -skf --max-time 5 https://127.0.0.1:$kcm_port/healthz | grep -qx ok"

  cat >"$dir/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $kc
  qps: 100
  burst: 200
leaderElection:
  leaderElect: false
EOF
  start kube-scheduler "$bin/kube-scheduler" --config="$dir/scheduler.yaml" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$sched_port"
  wait_for kube-scheduler "/healthz" sh -c "curl -skf --max-time 5 https://127.0.0.1:$sched_port/healthz | grep -qx ok"

  if [[ -z "$node_ip" ]]; then start_kwok_node; fi
  # Pods in the default namespace need its ServiceAccount (the serviceaccount controller).
  wait_for kube-controller-manager "serviceaccount default/default" kubectl get serviceaccount default -n default

  cat >"$dir/env" <<EOF
export KUBECONFIG=$kc
export KUBECTL=$bin/kubectl
export KUBECACHEDIR=$dir/kube-cache
export K8S_BIN_DIR=$bin
export K8S_APISERVER=https://127.0.0.1:$api_port
export K8S_API_PORT=$api_port
EOF
  echo "control-plane.sh: up in $dir (apiserver https://127.0.0.1:$api_port); source $dir/env" >&2
}

# KWOK and its one fake node: scheduled pods become Running/Ready without running anything.
start_kwok_node() {
  start kwok "$bin/kwok" --kubeconfig="$kc" --config="$bin/kwok-stages.yaml" \
    --manage-all-nodes=true --node-ip=127.0.0.1 --node-port="$kwok_port" \
    --server-address="127.0.0.1:$kwok_port" \
    --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
    --cidr=10.244.0.1/16 --node-lease-duration-seconds=40

  kubectl apply -f - >"$dir/logs/node.log" 2>&1 <<EOF || fail "creating node $node_name failed: $(cat "$dir/logs/node.log")"
apiVersion: v1
kind: Node
metadata:
  name: $node_name
  labels:
    kubernetes.io/hostname: $node_name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
spec: {}
EOF
  wait_for kwok "node $node_name Ready" sh -c \
    "$(printf '%q ' "$bin/kubectl" --kubeconfig "$kc") get node $node_name -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  # node-lifecycle controller lifts the not-ready taint once the node is Ready; nothing
  # schedules before that.
  wait_for kube-controller-manager "node $node_name untainted" sh -c \
    "test -z \"\$($(printf '%q ' "$bin/kubectl" --kubeconfig "$kc") get node $node_name -o jsonpath='{.spec.taints}')\""
}

# --- main ----------------------------------------------------------------------------------

cmd=${1:-}; dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || die "usage: $0 up DIR [--owner-pid PID] [--node-ip IP] | down DIR | logs DIR [LINES]"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$cmd" in
  up)
    owner="" node_ip=""
    shift 2
    while (( $# )); do
      case "$1" in
        --owner-pid) owner=${2:?--owner-pid needs a PID}; shift 2 ;;
        --node-ip) node_ip=${2:?--node-ip needs an address}; shift 2 ;;
        *) die "unknown option $1" ;;
      esac
    done
    up "$owner" "$node_ip"
    ;;
  down) down ;;
  logs) logs "${3:-40}" ;;
  _watch)
    owner=${3:?}
    while kill -0 "$owner" 2>/dev/null && [[ -f "$dir/pids" ]]; do sleep 1; done
    down
    ;;
  *) die "unknown command $cmd" ;;
esac
