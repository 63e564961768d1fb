#!/usr/bin/env python3
"""Tests for oci_image.py: the archive `ctr images import` reads, built from a tiny real binary.

Run: python3 scripts/oci_image_test.py. Needs gcc (falls back to a copy of /bin/true) and ldd;
the chroot test runs only as root.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import oci_image  # noqa: E402

TOOL = os.path.join(HERE, "oci_image.py")
# Links libm besides libc, so the test sees more than one library travel into the image.
HELLO_C = r"""#include <math.h>
#include <stdio.h>
int main(int argc, char **argv) { printf("hello %.0f\n", floor(argc + 0.5)); return 0; }
"""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def read_archive(path: str) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def blob(files: dict[str, bytes], digest: str) -> bytes:
    return files["blobs/sha256/" + digest.removeprefix("sha256:")]


def pack(*args: str) -> str:
    run = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise AssertionError(f"oci_image.py {' '.join(args)} failed:\n{run.stderr}")
    return run.stdout.strip()


class Image:
    """An archive opened up: its files, index, manifest, config and layer members."""

    def __init__(self, path: str):
        self.raw = read_bytes(path)
        self.files = read_archive(path)
        self.index = json.loads(self.files["index.json"])
        self.manifest_bytes = blob(self.files, self.index["manifests"][0]["digest"])
        self.manifest = json.loads(self.manifest_bytes)
        self.config_bytes = blob(self.files, self.manifest["config"]["digest"])
        self.config = json.loads(self.config_bytes)
        self.layer_gz = blob(self.files, self.manifest["layers"][0]["digest"])
        self.layer = gzip.decompress(self.layer_gz)
        with tarfile.open(fileobj=io.BytesIO(self.layer)) as tf:
            self.members = tf.getmembers()
            self.data = {m.name: tf.extractfile(m).read() for m in self.members if m.isfile()}
        self.by_name = {m.name: m for m in self.members}


class BinaryImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="oci-image-test-")
        cls.binary = os.path.join(cls.tmp, "hello")
        if shutil.which("gcc"):
            src = os.path.join(cls.tmp, "hello.c")
            with open(src, "w") as f:
                f.write(HELLO_C)
            subprocess.run(["gcc", "-O1", "-o", cls.binary, src, "-lm"], check=True)
            cls.expected_output = "hello 1\n"  # floor(argc + 0.5): libm is loaded and works
        else:
            shutil.copy("/bin/true", cls.binary)
            cls.expected_output = ""
        cls.libs = oci_image.shared_libraries(cls.binary)
        args = [cls.binary, "--name", "exactlyonce/hello:1.2.3", "--label", "org.example=yes"]
        cls.outs = [os.path.join(cls.tmp, f"hello-{i}.tar") for i in (1, 2)]
        cls.printed = [pack("binary", *args, "--out", out) for out in cls.outs]
        cls.image = Image(cls.outs[0])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_prints_the_normalized_name(self):
        self.assertEqual(self.printed[0], "docker.io/exactlyonce/hello:1.2.3")

    def test_archive_is_an_oci_layout(self):
        layout = json.loads(self.image.files["oci-layout"])
        self.assertEqual(layout, {"imageLayoutVersion": "1.0.0"})
        (entry,) = self.image.index["manifests"]
        self.assertEqual(entry["annotations"]["io.containerd.image.name"],
                         "docker.io/exactlyonce/hello:1.2.3")
        self.assertEqual(entry["annotations"]["org.opencontainers.image.ref.name"], "1.2.3")
        self.assertEqual(entry["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(entry["size"], len(self.image.manifest_bytes))

    def test_every_blob_is_named_by_its_digest(self):
        for name, data in self.image.files.items():
            if name.startswith("blobs/sha256/"):
                self.assertEqual(name, "blobs/sha256/" + hashlib.sha256(data).hexdigest())

    def test_manifest_config_descriptor_matches_the_blob(self):
        cfg = self.image.manifest["config"]
        self.assertEqual(cfg["digest"], sha256(self.image.config_bytes))
        self.assertEqual(cfg["size"], len(self.image.config_bytes))

    def test_layer_descriptor_and_diff_id(self):
        (layer,) = self.image.manifest["layers"]
        self.assertEqual(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip")
        self.assertEqual(layer["size"], len(self.image.layer_gz))
        self.assertEqual(self.image.config["rootfs"],
                         {"type": "layers", "diff_ids": [sha256(self.image.layer)]})

    def test_config_runs_the_binary_as_nonroot(self):
        c = self.image.config["config"]
        self.assertEqual(c["Entrypoint"], ["/usr/local/bin/hello"])
        self.assertEqual(c["User"], "65532:65532")
        self.assertEqual(c["WorkingDir"], "/")
        self.assertIn("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", c["Env"])
        self.assertEqual(c["Labels"]["org.opencontainers.image.version"], "1.2.3")
        self.assertEqual(c["Labels"]["org.opencontainers.image.title"], "hello")
        self.assertEqual(c["Labels"]["org.example"], "yes")
        self.assertEqual(self.image.config["created"], "1970-01-01T00:00:00Z")

    def test_binary_is_root_owned_and_executable(self):
        m = self.image.by_name["usr/local/bin/hello"]
        self.assertEqual((m.mode, m.uid, m.gid), (0o755, 0, 0))
        self.assertEqual(self.image.data["usr/local/bin/hello"], read_bytes(self.binary))

    def test_libraries_and_loader_at_the_paths_ldd_lists(self):
        self.assertTrue(any("ld-linux" in p or "/ld-" in p for p in self.libs), self.libs)
        for lib in self.libs:
            self.assertEqual(self.image.data[lib.lstrip("/")], read_bytes(lib), lib)

    def test_accounts_and_directories_are_distroless(self):
        passwd = self.image.data["etc/passwd"].decode()
        self.assertIn("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n", passwd)
        self.assertIn("root:x:0:0:", passwd)
        self.assertIn("nonroot:x:65532:\n", self.image.data["etc/group"].decode())
        self.assertIn("hosts: files dns", self.image.data["etc/nsswitch.conf"].decode())
        tmp = self.image.by_name["tmp"]
        self.assertTrue(tmp.isdir())
        self.assertEqual(tmp.mode, 0o1777)
        home = self.image.by_name["home/nonroot"]
        self.assertEqual((home.mode, home.uid, home.gid), (0o700, 65532, 65532))

    def test_layer_is_sorted_parents_first_with_no_host_metadata(self):
        names = [m.name for m in self.image.members]
        self.assertEqual(names, sorted(names))
        seen = set()
        for m in self.image.members:
            parent = os.path.dirname(m.name)
            self.assertTrue(parent == "" or parent in seen, f"{m.name} before its parent")
            seen.add(m.name)
            self.assertEqual((m.mtime, m.uname, m.gname), (0, "", ""), m.name)
            if not m.name.startswith("home/nonroot"):
                self.assertEqual((m.uid, m.gid), (0, 0), m.name)

    def test_two_runs_give_identical_bytes(self):
        self.assertEqual(read_bytes(self.outs[1]), self.image.raw)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("chroot"), "chroot needs root")
    def test_binary_runs_as_nonroot_from_the_unpacked_layer(self):
        rootfs = os.path.join(self.tmp, "rootfs")
        with tarfile.open(fileobj=io.BytesIO(self.image.layer)) as tf:
            tf.extractall(rootfs, filter="fully_trusted")
        run = subprocess.run(["chroot", "--userspec=65532:65532", rootfs, "/usr/local/bin/hello"],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stdout, self.expected_output)


class BareAndWorkdirTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="oci-image-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_bare_static_binary_is_alone_with_its_user(self):
        binary = os.path.join(self.tmp, "pause")
        src = os.path.join(self.tmp, "pause.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        gcc = ["gcc", "-static", "-o", binary, src]
        if not shutil.which("gcc") or subprocess.run(gcc).returncode != 0:
            self.skipTest("no static gcc here")
        out = os.path.join(self.tmp, "pause.tar")
        name = pack("binary", binary, "--bare", "--install-path", "/pause", "--user", "65535:65535",
                    "--name", "registry.k8s.io/pause:3.10", "--out", out)
        self.assertEqual(name, "registry.k8s.io/pause:3.10")
        image = Image(out)
        self.assertEqual([m.name for m in image.members], ["pause"])
        self.assertEqual(image.config["config"]["Entrypoint"], ["/pause"])
        self.assertEqual(image.config["config"]["User"], "65535:65535")

    def test_workdir_is_created_for_the_user(self):
        out = os.path.join(self.tmp, "w.tar")
        pack("binary", "/bin/true", "--install-path", "/usr/local/bin/true", "--workdir", "/data",
             "--name", "docker.io/library/w:1", "--out", out)
        image = Image(out)
        data = image.by_name["data"]
        self.assertEqual((data.mode, data.uid, data.gid), (0o755, 65532, 65532))
        self.assertEqual(image.config["config"]["WorkingDir"], "/data")

    def test_rootfs_mode_packs_a_directory(self):
        rootfs = os.path.join(self.tmp, "rootfs")
        os.makedirs(os.path.join(rootfs, "bin"))
        shutil.copy("/bin/true", os.path.join(rootfs, "bin", "true"))
        os.symlink("true", os.path.join(rootfs, "bin", "yes"))
        out = os.path.join(self.tmp, "r.tar")
        pack("rootfs", rootfs, "--entrypoint", "/bin/true", "--name", "r:1", "--out", out)
        image = Image(out)
        self.assertEqual([m.name for m in image.members], ["bin", "bin/true", "bin/yes"])
        self.assertEqual(image.by_name["bin/yes"].linkname, "true")
        self.assertEqual(image.index["manifests"][0]["annotations"]["io.containerd.image.name"],
                         "docker.io/library/r:1")


class PureFunctionsTest(unittest.TestCase):
    def test_normalize_name_as_the_kubelet_does(self):
        cases = {
            "redis:7.0.15": "docker.io/library/redis:7.0.15",
            "exactlyonce/operator:0.1.0": "docker.io/exactlyonce/operator:0.1.0",
            "docker.io/exactlyonce/operator:0.1.0": "docker.io/exactlyonce/operator:0.1.0",
            "registry.k8s.io/pause:3.10": "registry.k8s.io/pause:3.10",
            "localhost/x:1": "localhost/x:1",
            "localhost:5000/x:1": "localhost:5000/x:1",
        }
        for given, want in cases.items():
            self.assertEqual(oci_image.normalize_name(given), want, given)

    def test_normalize_name_rejects_what_cannot_be_imported(self):
        for bad in ["redis", "localhost:5000/x", "x@sha256:00", "Upper/x:1"]:
            with self.assertRaises(oci_image.ImageError, msg=bad):
                oci_image.normalize_name(bad)

    def test_parse_ldd(self):
        out = (
            "\tlinux-vdso.so.1 (0x00007ffd1d5e1000)\n"
            "\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f3a1c000000)\n"
            "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3a1be00000)\n"
            "\t/lib64/ld-linux-x86-64.so.2 (0x00007f3a1c2a0000)\n"
        )
        self.assertEqual(
            oci_image.parse_ldd(out),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ],
        )

    def test_parse_ldd_refuses_a_missing_library(self):
        with self.assertRaises(oci_image.ImageError):
            oci_image.parse_ldd("\tlibfoo.so.1 => not found\n")

    def test_with_parents_adds_directories_and_refuses_conflicts(self):
        E = oci_image.Entry
        got = oci_image.with_parents([E("/a/b/c", "file", 0o644, b"x")])
        self.assertEqual([(e.path, e.kind) for e in got],
                         [("/a", "dir"), ("/a/b", "dir"), ("/a/b/c", "file")])
        with self.assertRaises(oci_image.ImageError):
            oci_image.with_parents([E("/a", "file", 0o644, b"x"), E("/a", "file", 0o644, b"y")])
        with self.assertRaises(oci_image.ImageError):
            oci_image.with_parents([E("/a", "file", 0o644), E("/a/b", "file", 0o644)])
        with self.assertRaises(oci_image.ImageError):
            oci_image.with_parents([E("/a/../etc", "dir", 0o755)])


if __name__ == "__main__":
    unittest.main()
