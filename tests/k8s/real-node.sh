#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine: containerd + runc + CNI, kubelet,
# kube-proxy and CoreDNS, with control-plane.sh's control plane, ALL inside a network namespace
# this script creates. The namespace's only interfaces are its loopback and a bridge that carries
# the node and pod addresses, with no link out, so no pod or service address is reachable from,
# or routes out of, the host. The host reaches the API server only through a loopback forwarder,
# so kubectl (port-forward, logs, exec) works from the host shell. Needs root (namespaces,
# mounts, cgroups). This script is the one place that knows these components' flags.
#
#   tests/k8s/real-node.sh up DIR [--owner-pid PID]   start, wait for the node Ready, write DIR/env
#   tests/k8s/real-node.sh import DIR ARCHIVE...      import OCI image archives into the node
#   tests/k8s/real-node.sh kill-container DIR ID      SIGKILL a container's process (a hard crash)
#   tests/k8s/real-node.sh down DIR                   stop by PID, unmount, remove the namespace
#   tests/k8s/real-node.sh logs DIR [LINES]           tail of every component's log
#
# After `up`: `source DIR/env` sets KUBECONFIG (the host's view, through the forwarder) and
# KUBECTL. Env: K8S_BIN_DIR (default: from build.sh), K8S_START_TIMEOUT seconds (180).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
timeout_s="${K8S_START_TIMEOUT:-180}"

# The node's addresses, inside its namespace only. The bridge carries the node address as well
# (this kernel has no dummy links, and kubelet refuses a loopback node address).
node_name=eo-node
node_ip=10.244.0.1
pod_cidr=10.244.0.0/24
cluster_cidr=10.244.0.0/16
service_cidr=10.96.0.0/16
# kubelet tells pods to ask CoreDNS here; CoreDNS runs in the node's namespace like kubelet does.
dns_ip=$node_ip
# Matches the pause binary build.sh compiles; containerd's sandbox image.
pause_image=registry.k8s.io/pause:3.10
# hostPath volumes offered to claims without a storage class (there is no provisioner).
pv_count=8

die() { echo "real-node.sh: $*" >&2; exit 1; }

# --- helpers -------------------------------------------------------------------------------

# Runs a command inside the node's namespace. `nsenter` execs it, so a background start's `$!` is
# the daemon itself. Not `ip netns exec`: it remounts /sys, which hides the cgroup hierarchies.
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }

start() { # start NAME CMD... : run in the background, log to DIR/logs/NAME.log, record the PID
  local name=$1; shift
  "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$dir/pids"
}

pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$dir/pids" 2>/dev/null; }

wait_for() { # wait_for NAME DESCRIPTION CMD... : poll CMD; fail if NAME dies or time runs out
  local name=$1 what=$2; shift 2
  local pid deadline=$(( $(date +%s) + timeout_s ))
  pid=$(pid_of "$name")
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then fail "$name exited before $what"; fi
    if (( $(date +%s) >= deadline )); then fail "$name: timed out after ${timeout_s}s waiting for $what"; fi
    sleep 0.2
  done
}

logs() {
  local lines=${1:-40} f
  for f in "$dir"/logs/*.log; do
    [[ -e "$f" ]] || continue
    echo "----- $(basename "$f" .log): last $lines lines of $f -----"
    tail -n "$lines" "$f"
  done
  [[ -d "$dir/cp" ]] && "$here/control-plane.sh" logs "$dir/cp" "$lines"
  return 0
}

fail() {
  echo "real-node.sh: $*" >&2
  logs 40 >&2
  down >&2 || true
  exit 1
}

ctr_() { ctr --address "$dir/run/containerd/containerd.sock" -n k8s.io "$@"; }

# PIDs of the processes that outlive their parents: containerd's shims, which record their PIDs
# in our state dir, when they are still shims.
shim_pids() {
  local f pid
  for f in "$dir"/run/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == containerd-shim* ]] && echo "$pid"
  done
  return 0
}

descendants() { # descendants PID : every process below PID, deepest last
  local c
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done
}

ours() { # ours PID : a process we started (its command line names DIR, or our namespace)
  local cmdline
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$cmdline" == *"$dir/"* || "$cmdline" == *"$dir "* || "$cmdline" == *"/run/netns/$ns "* ]]
}

# Host-wide kernel settings kubelet changes at start (it sets what a node wants: panic on oops,
# overcommit); `up` saves them and `down` puts them back, so a test run leaves the host as it was.
kernel_settings=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
                 kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# --- down ----------------------------------------------------------------------------------

down() {
  [[ -f "$dir/netns" ]] || return 0
  ns="$(cat "$dir/netns")"
  local name pid deadline
  # 1. The forwarder (and its per-connection children), kubelet, kube-proxy, CoreDNS.
  if [[ -f "$dir/pids" ]]; then
    tac "$dir/pids" | while read -r name pid; do
      [[ "$name" == containerd || "$pid" == "$$" ]] && continue
      ours "$pid" || continue # gone, and its PID maybe reused
      for c in $(descendants "$pid") "$pid"; do kill -TERM "$c" 2>/dev/null || true; done
    done
  fi
  # 2. Every container, hard: the cluster is going away, nothing needs a graceful stop. Their
  # ids name the CNI results containerd caches outside DIR, removed below.
  local ids=""
  if [[ -S "$dir/run/containerd/containerd.sock" ]]; then
    ids="$(ctr_ containers ls -q 2>/dev/null || true)"
    ctr_ tasks ls 2>/dev/null | awk 'NR > 1 { print $2 }' | while read -r pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  # 3. The control plane.
  [[ -d "$dir/cp" ]] && "$here/control-plane.sh" down "$dir/cp" || true
  # 4. containerd, then any shim left and what runs under it.
  pid=$(pid_of containerd)
  [[ -n "$pid" ]] && ours "$pid" && kill -TERM "$pid" 2>/dev/null || true
  for pid in $(shim_pids); do
    for c in $(descendants "$pid") "$pid"; do kill -KILL "$c" 2>/dev/null || true; done
  done
  # 5. Wait until nothing of ours lives: unmounting or deleting under a live containerd would
  # pull its state from under it.
  deadline=$(( $(date +%s) + 20 ))
  while :; do
    local alive=()
    if [[ -f "$dir/pids" ]]; then
      while read -r name pid; do [[ "$pid" != "$$" ]] && ours "$pid" && alive+=("$name:$pid"); done <"$dir/pids"
    fi
    for pid in $(shim_pids); do alive+=("shim:$pid"); done
    (( ${#alive[@]} == 0 )) && break
    if (( $(date +%s) >= deadline )); then
      for p in "${alive[@]}"; do kill -KILL "${p#*:}" 2>/dev/null || true; done
      sleep 1
      alive=()
      if [[ -f "$dir/pids" ]]; then
        while read -r name pid; do [[ "$pid" != "$$" ]] && ours "$pid" && alive+=("$name:$pid"); done <"$dir/pids"
      fi
      (( ${#alive[@]} == 0 )) || die "still running after SIGKILL: ${alive[*]}; not unmounting"
      break
    fi
    sleep 0.2
  done
  # 6. Mounts under DIR (container rootfs, pod namespaces, kubelet's volumes), deepest first.
  awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # 7. The pod cgroups kubelet and runc made, bottom-up (v1 hierarchies, or the v2 tree).
  local h
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/kubepods /sys/fs/cgroup/k8s.io; do
    [[ -d "$h" ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # 8. What kubelet and containerd keep at fixed host paths: the CNI results of our sandboxes,
  # the log links into our pod log dir, kubelet's device-plugin socket; and the kernel settings.
  local id f
  for id in $ids; do rm -f /var/lib/cni/results/*"-$id-"*; done
  for f in /var/log/containers/*.log; do
    [[ -L "$f" && "$(readlink "$f")" == "$dir/"* ]] && rm -f "$f"
  done
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers 2>/dev/null || true
  if [[ -f "$dir/kernel-settings" ]]; then
    while read -r key value; do sysctl -qw "$key=$value" 2>/dev/null || true; done <"$dir/kernel-settings"
    rm -f "$dir/kernel-settings"
  fi
  # 9. The namespace, and the self-bind-mount `ip netns add` made when it was the last one.
  ip netns del "$ns" 2>/dev/null || true
  if [[ -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  rm -rf "$dir/run" "$dir/kubelet" "$dir/pv" "$dir/cp/etcd-data"
  rm -f "$dir/pids" "$dir/netns"
  echo "real-node.sh: down ($dir)" >&2
}

# --- up ------------------------------------------------------------------------------------

write_configs() {
  mkdir -p "$dir/etc/cni/net.d" "$dir/run/cni-ipam" "$dir/kubelet"
  : >"$dir/etc/resolv.conf" # no upstream DNS: pods see the cluster's names only
  cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$dir/run/containerd/root"
state = "$dir/run/containerd/state"
[grpc]
  address = "$dir/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # Pod network namespaces are bind-mounted under our state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  # This VM has no CAP_SYS_RESOURCE: without the clamp every sandbox fails setting
  # oom_score_adj below 0 (nsexec: failed to update /proc/self/oom_score_adj).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/etc/cni/net.d"
EOF
  # Pods get routes to the pod and service ranges only: no default route, nothing leaves.
  cat >"$dir/etc/cni/net.d/10-eo.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "eo", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
            "routes": [{"dst": "$cluster_cidr"}, {"dst": "$service_cidr"}], "dataDir": "$dir/run/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1: allowed in 1.37 only when asked for (KEP-5573).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
# No CAP_SYS_RESOURCE here: kubelet cannot lower its own score either.
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$dir/run/containerd/containerd.sock
address: $node_ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: $dir/cp/pki/ca.crt}}
authorization: {mode: AlwaysAllow}
# Logs under DIR, not /var/log/pods (kubelet still links them from /var/log/containers).
podLogsDir: $dir/pod-logs
clusterDomain: cluster.local
clusterDNS: [$dns_ip]
resolvConf: $dir/etc/resolv.conf
failSwapOn: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: $cluster_cidr
clientConnection: {kubeconfig: $dir/cp/kubeconfig}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}
EOF
  cat >"$dir/Corefile" <<EOF
.:53 {
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/cp/kubeconfig exactly-once-test
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
EOF
}

write_host_kubeconfig() { # the admin kubeconfig, with the server at the host's forwarder
  sed "s#server: https://127.0.0.1:[0-9]*#server: https://127.0.0.1:$1#" "$dir/cp/kubeconfig" >"$dir/kubeconfig"
}

free_host_port() {
  local port
  while :; do
    port=$(( 20000 + RANDOM % 40000 ))
    ss -Htan "sport = :$port" 2>/dev/null | grep -q . || { echo "$port"; return; }
  done
}

up() {
  local owner_pid=${1:-}
  [[ $(id -u) == 0 ]] || die "needs root (network namespace, mounts, cgroups)"
  [[ -f "$dir/netns" ]] && die "$dir/netns exists: a node from this dir may still run (down it first)"
  local b
  for b in containerd ctr runc nsenter socat ip ss python3 sysctl; do
    command -v "$b" >/dev/null || die "$b is not on PATH (scripts/install-deps.sh installs it)"
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] \
    || die "CNI plugins missing in /usr/lib/cni (scripts/install-deps.sh installs containernetworking-plugins)"
  # kubelet puts pods under /kubepods of the cgroup tree (of each hierarchy on cgroup v1): two
  # nodes would share it. A node whose owner just exited is still being torn down by its
  # watchdog (seconds): wait.
  local i kubepods=/sys/fs/cgroup/kubepods
  [[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]] || kubepods=/sys/fs/cgroup/memory/kubepods
  for i in $(seq 60); do [[ -d $kubepods ]] || break; sleep 1; done
  [[ -d $kubepods ]] \
    && die "$kubepods exists: another real node runs on this machine (or one was not torn down: tests/k8s/real-node.sh down DIR)"
  local bin="${K8S_BIN_DIR:-}"
  [[ -n "$bin" ]] || bin="$("$here/build.sh" --print-bin-dir)" || die "build.sh failed"
  for b in kubelet kube-proxy coredns kubectl pause; do
    [[ -x "$bin/$b" ]] || die "$bin/$b missing (run tests/k8s/build.sh)"
  done

  mkdir -p "$dir/logs"
  : >"$dir/pids"
  for key in "${kernel_settings[@]}"; do echo "$key $(sysctl -n "$key")"; done >"$dir/kernel-settings"
  ns="eo-$$"
  ip netns add "$ns"
  echo "$ns" >"$dir/netns"
  if [[ -n "$owner_pid" ]]; then
    # Tears everything down when the owner (a test binary, the local stack) exits, however.
    "$self" _watch "$dir" "$owner_pid" >"$dir/logs/watchdog.log" 2>&1 </dev/null &
    echo "watchdog $!" >>"$dir/pids"
  fi
  ip -n "$ns" link set lo up
  ip -n "$ns" link add cni0 type bridge
  ip -n "$ns" addr add "$node_ip/24" dev cni0
  ip -n "$ns" link set cni0 up
  # No default route: the service range goes to the bridge, where kube-proxy translates it.
  ip -n "$ns" route add "$service_cidr" dev cni0 src "$node_ip"

  write_configs
  start containerd nsenter --net="/run/netns/$ns" containerd --config "$dir/containerd.toml"
  wait_for containerd "its socket" ctr_ version
  python3 "$repo/scripts/oci_image.py" binary "$bin/pause" --bare --install-path /pause \
    --user 65535:65535 --name "$pause_image" --out "$dir/pause.tar" >"$dir/logs/images.log" 2>&1 \
    || fail "packing the pause image: $(cat "$dir/logs/images.log")"
  ctr_ images import "$dir/pause.tar" >>"$dir/logs/images.log" 2>&1 || fail "importing the pause image"

  K8S_BIN_DIR="$bin" in_ns "$here/control-plane.sh" up "$dir/cp" --node-ip "$node_ip" 2>"$dir/logs/control-plane.log" \
    || fail "control plane: $(tail -n 5 "$dir/logs/control-plane.log")"
  # shellcheck source=/dev/null
  local api_port; api_port="$(. "$dir/cp/env"; echo "$K8S_API_PORT")"

  start kubelet nsenter --net="/run/netns/$ns" "$bin/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/cp/kubeconfig" \
    --root-dir="$dir/kubelet" --cert-dir="$dir/kubelet/pki" --hostname-override="$node_name" --node-ip="$node_ip"
  start kube-proxy nsenter --net="/run/netns/$ns" "$bin/kube-proxy" --config="$dir/kube-proxy.yaml" --hostname-override="$node_name"
  start coredns nsenter --net="/run/netns/$ns" "$bin/coredns" -conf "$dir/Corefile"

  # The host's only way in: 127.0.0.1:PORT -> the API server inside the namespace. One
  # connection costs one nsenter, and kube clients keep theirs open.
  local fwd_port; fwd_port=$(free_host_port)
  start forwarder socat "TCP-LISTEN:$fwd_port,bind=127.0.0.1,reuseaddr,fork" \
    "EXEC:nsenter --net=/run/netns/$ns socat STDIO TCP\:127.0.0.1\:$api_port"
  write_host_kubeconfig "$fwd_port"
  # From here on this script talks to the API server the way the host does.
  export KUBECACHEDIR="$dir/kube-cache"
  local kubectl=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")

  wait_for kubelet "node $node_name Ready" sh -c \
    "$(printf '%q ' "${kubectl[@]}") get node $node_name -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  wait_for coredns "CoreDNS ready" in_ns curl -sf --max-time 2 http://127.0.0.1:8181/ready
  wait_for kube-proxy "kube-proxy healthy" in_ns curl -sf --max-time 2 http://127.0.0.1:10256/healthz
  wait_for forwarder "the API server through the forwarder" "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz

  # Volumes for claims without a storage class (a Redis's data): hostPath on the node, owned by
  # the uid our images run as.
  local i pvs=""
  for i in $(seq 0 $(( pv_count - 1 ))); do
    mkdir -p "$dir/pv/$i"
    chown 65532:65532 "$dir/pv/$i"
    pvs+="---
apiVersion: v1
kind: PersistentVolume
metadata: {name: eo-local-$i}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $dir/pv/$i, type: Directory}
"
  done
  "${kubectl[@]}" apply -f - <<<"$pvs" >"$dir/logs/pv.log" 2>&1 || fail "creating volumes: $(cat "$dir/logs/pv.log")"

  cat >"$dir/env" <<EOF
export KUBECONFIG=$dir/kubeconfig
export KUBECTL=$bin/kubectl
export K8S_BIN_DIR=$bin
export KUBECACHEDIR=$dir/kube-cache
export REAL_NODE_NETNS=$ns
export REAL_NODE_CONTAINERD=$dir/run/containerd/containerd.sock
EOF
  echo "real-node.sh: node $node_name Ready in $dir (API server via 127.0.0.1:$fwd_port); source $dir/env" >&2
}

# --- main ----------------------------------------------------------------------------------

cmd=${1:-}; dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || die "usage: $0 up DIR [--owner-pid PID] | import DIR ARCHIVE... | kill-container DIR ID | down DIR | logs DIR [LINES]"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$cmd" in
  up)
    owner=""
    if [[ "${3:-}" == "--owner-pid" ]]; then owner=${4:?--owner-pid needs a PID}; fi
    up "$owner"
    ;;
  import)
    shift 2
    for a in "$@"; do ctr_ images import "$a" >/dev/null || die "importing $a failed"; done
    ;;
  kill-container)
    id=${3:?kill-container needs a container id}
    ctr_ tasks kill --signal SIGKILL "${id#containerd://}"
    ;;
  down) down ;;
  logs) logs "${3:-40}" ;;
  _watch)
    owner=${3:?}
    while kill -0 "$owner" 2>/dev/null && [[ -f "$dir/netns" ]]; do sleep 1; done
    down
    ;;
  *) die "unknown command $cmd" ;;
esac
