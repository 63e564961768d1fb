#!/usr/bin/env python3
"""One-layer OCI image archives without a container engine, for `ctr -n k8s.io images import`.

`binary` assembles a distroless-style root filesystem around one ELF binary; `rootfs` packs a
directory that is already prepared. The output is deterministic (owners 0 unless stated, mtimes
0, sorted entries, gzip mtime 0), so the same inputs give the same bytes and the same digest.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass

EPOCH = "1970-01-01T00:00:00Z"
NONROOT = (65532, 65532)  # distroless's `nonroot` user and group
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # where Debian keeps it, and distroless too
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"

# The accounts and name-service rules of a distroless image: root and nonroot, files then DNS.
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"


class ImageError(Exception):
    """An input the image cannot be built from; the message names the input and the rule."""


@dataclass(frozen=True)
class Entry:
    """One file system object of the layer. `path` is absolute inside the image."""

    path: str
    kind: str  # "file", "dir" or "symlink"
    mode: int
    data: bytes = b""
    linkname: str = ""
    uid: int = 0
    gid: int = 0


def parse_user(user: str) -> tuple[int, int]:
    """`UID:GID` in numbers: the runtime must not need /etc/passwd to resolve the user."""
    m = re.fullmatch(r"(\d+):(\d+)", user)
    if not m:
        raise ImageError(f"--user {user!r}: expected numeric UID:GID such as 65532:65532")
    return int(m[1]), int(m[2])


def normalize_name(name: str) -> str:
    """The full name containerd and the kubelet compare: `redis:7` is `docker.io/library/redis:7`.

    ctr imports the name as written, while the kubelet asks for the normalized one, so an image
    imported as `exactlyonce/x:1` would never be found by a pod that says `exactlyonce/x:1`.
    """
    if "@" in name:
        raise ImageError(f"--name {name!r}: a digest reference cannot be imported; use a tag")
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        raise ImageError(f"--name {name!r}: needs an explicit tag (NAME:TAG)")
    first, _, rest = repo.partition("/")
    if not rest:
        repo = f"docker.io/library/{repo}"
    elif "." not in first and ":" not in first and first != "localhost":
        repo = f"docker.io/{repo}"
    if repo != repo.lower():
        raise ImageError(f"--name {name!r}: repository names are lower case")
    return f"{repo}:{tag}"


def parse_ldd(output: str) -> list[str]:
    """The host paths of the shared objects `ldd` lists, the loader included, in listed order."""
    paths = []
    for line in output.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise ImageError(f"ldd: a library is missing on this host: {line}")
        # "libc.so.6 => /lib/.../libc.so.6 (0x...)", or the loader: "/lib64/ld-... (0x...)"
        m = re.match(r"(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m and m[1] not in paths:
            paths.append(m[1])
    return paths


def shared_libraries(binary: str) -> list[str]:
    """What the binary loads at start, by asking the host's loader; [] for a static binary."""
    try:
        run = subprocess.run(["ldd", binary], capture_output=True, text=True)
    except FileNotFoundError as e:
        raise ImageError("ldd is not on PATH; it lists the libraries a binary needs") from e
    text = run.stdout + run.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if run.returncode != 0:
        raise ImageError(f"ldd {binary} failed: {text.strip()}")
    return parse_ldd(text)


def host_file(host_path: str, image_path: str, mode: int | None = None) -> Entry:
    """A regular file with the content behind `host_path` (symlinks followed) at `image_path`."""
    try:
        st = os.stat(host_path)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{host_path}: not a regular file")
        with open(host_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"{host_path}: cannot read ({e.strerror})") from e
    return Entry(image_path, "file", stat.S_IMODE(st.st_mode) if mode is None else mode, data)


def distroless_base(ca_bundle: str | None) -> list[Entry]:
    """The files every non-bare image gets: accounts, name service, /tmp, homes, CA bundle."""
    uid, gid = NONROOT
    entries = [
        Entry("/etc/passwd", "file", 0o644, PASSWD.encode()),
        Entry("/etc/group", "file", 0o644, GROUP.encode()),
        Entry("/etc/nsswitch.conf", "file", 0o644, NSSWITCH.encode()),
        Entry("/tmp", "dir", 0o1777),
        Entry("/root", "dir", 0o700),
        Entry("/home/nonroot", "dir", 0o700, uid=uid, gid=gid),
    ]
    if ca_bundle:
        entries.append(host_file(ca_bundle, CA_BUNDLE, 0o644))
    return entries


def binary_entries(binary: str, install_path: str) -> list[Entry]:
    """The binary at `install_path` and each library and the loader at the path ldd found it.

    Libraries are copied as regular files at the listed paths (the loader's own path included,
    e.g. /lib64/ld-linux-x86-64.so.2), which are the paths the binary and the loader look in.
    """
    entries = [host_file(binary, install_path, 0o755)]
    entries += [host_file(lib, lib) for lib in shared_libraries(binary)]
    return entries


def rootfs_entries(rootfs: str) -> list[Entry]:
    """Every file, directory and symlink under `rootfs`, owned by root in the image."""
    if not os.path.isdir(rootfs):
        raise ImageError(f"{rootfs}: not a directory")
    entries = []
    for top, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            host = os.path.join(top, name)
            path = "/" + os.path.relpath(host, rootfs)
            st = os.lstat(host)
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(path, "symlink", 0o777, linkname=os.readlink(host)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(path, "dir", stat.S_IMODE(st.st_mode)))
            else:
                entries.append(host_file(host, path, stat.S_IMODE(st.st_mode)))
    return entries


def with_parents(entries: list[Entry]) -> list[Entry]:
    """`entries` plus any missing parent directory (0755, root), sorted by path.

    A path given twice is an error unless both are the same directory or the same content.
    """
    by_path: dict[str, Entry] = {}
    for e in entries:
        if not e.path.startswith("/") or e.path == "/" or ".." in e.path.split("/"):
            raise ImageError(f"{e.path!r}: image paths are absolute and stay inside the image")
        old = by_path.get(e.path)
        if old is not None and old != e:
            raise ImageError(f"{e.path}: given twice with different content or mode")
        by_path[e.path] = e
    for path in list(by_path):
        parent = os.path.dirname(path)
        while parent != "/":
            existing = by_path.setdefault(parent, Entry(parent, "dir", 0o755))
            if existing.kind != "dir":
                raise ImageError(f"{parent}: is a {existing.kind} but {path} is inside it")
            parent = os.path.dirname(parent)
    return [by_path[p] for p in sorted(by_path)]


def layer_tar(entries: list[Entry]) -> bytes:
    """The uncompressed layer: parents first, no host owners, names or times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in with_parents(entries):
            ti = tarfile.TarInfo(e.path.lstrip("/"))
            ti.mode, ti.uid, ti.gid, ti.mtime = e.mode, e.uid, e.gid, 0
            if e.kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, e.linkname
            ti.size = len(e.data) if e.kind == "file" else 0
            tf.addfile(ti, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def host_architecture() -> str:
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise ImageError(f"host architecture {machine!r} has no OCI name in this tool")
    return arch


@dataclass(frozen=True)
class ImageSpec:
    name: str  # normalized, with tag
    entrypoint: list[str]
    user: str
    workdir: str
    env: list[str]
    labels: dict[str, str]
    architecture: str


def image_archive(spec: ImageSpec, layer: bytes, compress_level: int) -> tuple[bytes, str]:
    """The OCI image layout as one tar (oci-layout, index.json, three blobs) and the image's
    digest, which is the manifest's: what `ctr images ls` and the kubelet show."""
    gz = gzip.compress(layer, compresslevel=compress_level, mtime=0)
    config = canonical_json(
        {
            "created": EPOCH,
            "architecture": spec.architecture,
            "os": "linux",
            "config": {
                "Entrypoint": spec.entrypoint,
                "Env": spec.env,
                "Labels": spec.labels,
                "User": spec.user,
                "WorkingDir": spec.workdir,
            },
            "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
            "history": [{"created": EPOCH, "created_by": "scripts/oci_image.py"}],
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(gz),
                    "size": len(gz),
                }
            ],
        }
    )
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": spec.architecture, "os": "linux"},
                    # ctr import names the image from this annotation.
                    "annotations": {
                        "io.containerd.image.name": spec.name,
                        "org.opencontainers.image.ref.name": spec.name.rsplit(":", 1)[1],
                    },
                }
            ],
        }
    )
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
    files += [("blobs/sha256/" + hashlib.sha256(b).hexdigest(), b) for b in (config, manifest, gz)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue(), digest(manifest)


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ImageError(f"--label {text!r}: expected KEY=VALUE")
    return key, value


def parse_add(text: str) -> tuple[str, str]:
    host, sep, image = text.partition(":")
    image = image if sep else host
    if not image.startswith("/"):
        raise ImageError(f"--add {text!r}: HOST_PATH[:IMAGE_PATH], the image path absolute")
    return host, image


def build(args: argparse.Namespace) -> tuple[ImageSpec, bytes]:
    """Decides the image from the command line: its spec and its uncompressed layer."""
    name = normalize_name(args.name)
    uid, gid = parse_user(args.user)
    env = [PATH_ENV]
    if args.command == "binary":
        install = args.install_path or "/usr/local/bin/" + os.path.basename(args.binary)
        entrypoint = args.entrypoint or install
        entries = binary_entries(args.binary, install)
        if not args.bare:
            ca = CA_BUNDLE if os.path.isfile(CA_BUNDLE) else None
            entries += distroless_base(ca)
            if ca:
                env.append(f"SSL_CERT_FILE={CA_BUNDLE}")
        if args.workdir != "/":
            entries.append(Entry(args.workdir, "dir", 0o755, uid=uid, gid=gid))
    else:
        entrypoint = args.entrypoint
        entries = rootfs_entries(args.rootfs)
    for text in args.add:
        host, image = parse_add(text)
        entries.append(host_file(host, image))

    repo, tag = name.rsplit(":", 1)
    labels = {
        "org.opencontainers.image.title": repo.rsplit("/", 1)[1],
        "org.opencontainers.image.version": tag,
    }
    labels.update(parse_label(text) for text in args.label)
    spec = ImageSpec(name, [entrypoint], f"{uid}:{gid}", args.workdir, env, labels, args.arch)
    return spec, layer_tar(entries)


def cli() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    opt = common.add_argument
    opt("--name", required=True,
        help="image name with tag, e.g. docker.io/exactlyonce/operator:0.1.0 "
             "(a name without registry is normalized the way the kubelet does)")
    opt("--out", required=True, help="archive to write, for `ctr images import`")
    opt("--user", default="65532:65532", help="numeric UID:GID (default: %(default)s)")
    opt("--workdir", default="/",
        help="working directory; in `binary` mode it is created, owned by --user")
    opt("--add", action="append", default=[], metavar="HOST_PATH[:IMAGE_PATH]",
        help="extra file (root-owned, host mode), repeatable")
    opt("--label", action="append", default=[], metavar="KEY=VALUE",
        help="config label, repeatable; title and version come from --name")
    opt("--arch", help="OCI architecture (default: this host's)")
    opt("--compress-level", type=int, default=6, choices=range(1, 10), metavar="1-9",
        help="gzip level (default: %(default)s; 1 is ~3x faster, for debug binaries)")

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    binary = sub.add_parser(
        "binary", parents=[common],
        help="an image around one ELF binary: the binary, its libraries and loader (from ldd), "
             "/etc/passwd and /etc/group with nonroot 65532, nsswitch.conf, /tmp 1777, "
             "/home/nonroot and the host's CA bundle (libraries loaded with dlopen: use --add)",
    )
    binary.add_argument("binary", help="host path of the binary")
    binary.add_argument("--install-path", help="path in the image (default: /usr/local/bin/NAME)")
    binary.add_argument("--entrypoint", help="default: the install path")
    binary.add_argument("--bare", action="store_true",
                        help="only the binary and its libraries (like FROM scratch), e.g. pause")
    rootfs = sub.add_parser("rootfs", parents=[common],
                            help="pack a prepared directory, everything root-owned")
    rootfs.add_argument("rootfs", help="directory that becomes /")
    rootfs.add_argument("--entrypoint", required=True, help="absolute path in the image")
    return parser


def main() -> int:
    args = cli().parse_args()
    try:
        args.arch = args.arch or host_architecture()
        spec, layer = build(args)
    except ImageError as e:
        print(f"oci_image.py: {e}", file=sys.stderr)
        return 1
    archive, image_digest = image_archive(spec, layer, args.compress_level)
    tmp = f"{args.out}.partial"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(archive) / 2**20:.1f} MiB, layer {len(layer) / 2**20:.1f} MiB "
          f"uncompressed, {image_digest}", file=sys.stderr)
    print(spec.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
