#!/usr/bin/env bash
# Builds the image archives a local cluster runs, without a container engine or a registry: our
# three binaries (distroless-style, uid 65532), plus the pause and redis images a real node needs.
# Each archive is one OCI image for `ctr -n k8s.io images import`; scripts/oci_image.py packs it.
# The Dockerfile builds the same three images where an engine exists.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: scripts/build-images.sh --out DIR [--pause PATH] [--redis PATH] [--debug] [--no-build]
  --out DIR      where <short-name>.tar goes, one per image; the image names are printed
  --pause PATH   a static pause binary (tests/k8s/build.sh makes one); without it, no pause image
  --redis PATH   the redis-server to pack (default: /usr/bin/redis-server); tagged with its version
  --debug        take the binaries from target/debug instead of target/release
                 (under $CARGO_TARGET_DIR instead of target/ when that is set)
  --no-build     do not run cargo build first
EOF
  exit 2
}

out="" pause="" redis=/usr/bin/redis-server profile=release build=true
while (($#)); do
  case $1 in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --pause) pause=${2:?--pause needs a path}; shift 2 ;;
    --redis) redis=${2:?--redis needs a path}; shift 2 ;;
    --debug) profile=debug; shift ;;
    --no-build) build=false; shift ;;
    *) usage ;;
  esac
done
[[ -n $out ]] || usage
# Paths are the caller's; everything after this runs from the workspace root.
out=$(realpath -ms "$out") redis=$(realpath -ms "$redis")
[[ -z $pause ]] || pause=$(realpath -ms "$pause")
cd "$(dirname "$0")/.."
mkdir -p "$out"

# Debug binaries are ~10x larger; the fastest gzip level keeps packing them at about a second.
if [[ $profile == release ]]; then cargo_flags=(--release) level=6; else cargo_flags=() level=1; fi
if $build; then
  cargo build "${cargo_flags[@]}" -p operator -p order -p consumer --bins >&2
fi
bin_dir=${CARGO_TARGET_DIR:-target}/$profile
version=$(python3 -c 'import tomllib
print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])')

pack() { python3 scripts/oci_image.py binary "$@"; }

# short name (the archive and the repository) : binary
for image in operator:exactly-once-operator order-service:order-service \
             inventory-consumer:inventory-consumer; do
  short=${image%%:*} bin=${image#*:}
  pack "$bin_dir/$bin" --name "docker.io/exactlyonce/$short:$version" --out "$out/$short.tar" \
    --compress-level "$level" --label org.opencontainers.image.licenses=Apache-2.0
done

# The sandbox image the node's containerd is configured with; as upstream: /pause, uid 65535.
if [[ -n $pause ]]; then
  pack "$pause" --bare --install-path /pause --user 65535:65535 \
    --name registry.k8s.io/pause:3.10 --out "$out/pause.tar"
else
  echo "build-images.sh: no --pause given, so no pause image" >&2
fi

# Laid out as the official image (/usr/local/bin, data in /data), but with no shell and no
# entrypoint script, so it runs with a read-only root file system and /data mounted.
redis_version=$("$redis" --version | sed -n 's/.* v=\([0-9.]*\) .*/\1/p')
[[ -n $redis_version ]] || { echo "build-images.sh: no version from $redis --version" >&2; exit 1; }
pack "$redis" --install-path /usr/local/bin/redis-server --workdir /data \
  --name "docker.io/library/redis:$redis_version" --out "$out/redis.tar"
