#!/usr/bin/env bash
# Installs what the local stack and the tests need beyond Rust and Go, from Debian's packages:
# redis-server and redis-benchmark (real Redis for every Redis test, and the Redis image),
# openssl (cluster certificates), curl, and the real node's runtime: containerd, runc, the CNI
# plugins, nftables and conntrack (kube-proxy), socat (the host's loopback forwarder), iproute2
# (the node's network namespace), gcc (the pause binary).
set -euo pipefail

missing=()
need() { command -v "$1" >/dev/null || missing+=("$2"); }
need redis-server redis-server
need redis-benchmark redis-tools
need openssl openssl
need curl curl
need python3 python3 # the image packer (3.11: tomllib)
need containerd containerd
need runc runc
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
need nft nftables
need iptables iptables
need conntrack conntrack
need socat socat
need ip iproute2
need nsenter util-linux
need gcc gcc
[ -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ] || missing+=(libc6-dev) # gcc -static
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is required (Rust 1.89+)" >&2; exit 1; }
