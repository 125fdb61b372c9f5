#!/usr/bin/env python3
"""Builds Faultline's container images without a Docker daemon or a registry: each image is a
docker-archive tarball ("docker save" format: one layer, a config, a manifest) that `ctr images import`
loads. The files are the release binaries and exactly the shared libraries `ldd` says they need.

    scripts/build-images.py --all        # prints the path of every image tarball, one per line
    scripts/build-images.py agent        # one image

Images (tags are versions, never `latest`):
  ghcr.io/faultline-dev/faultline-operator:<version>  /usr/local/bin/faultline-operator, user 65532
  ghcr.io/faultline-dev/faultline-agent:<version>     /usr/local/bin/faultline-agent run, user root
  ghcr.io/faultline-dev/faultline-toolbox:<version>   busybox, faultline-toolbox and the Go peers (test workloads:
                                                      e2e/peers, grpc-go and crypto/tls, by e2e/build-peers.sh)
  ghcr.io/faultline-dev/faultline-test-redis:<version> busybox and Debian's redis-server and redis-cli (a real
                                                      datastore for the e2e tests; never shipped)
  registry.k8s.io/pause:3.10                          the pod sandbox (images/pause.c, static)
  registry.k8s.io/coredns/coredns:v1.15.0             CoreDNS from its Go module (e2e/build-coredns.sh)

operator/Dockerfile and agent/Dockerfile describe the same images for users with Docker (same user,
binary path, entrypoint and command; e2e/test_images.py keeps them in step). Tarballs are cached in
target/images/, rebuilt when a binary or this script changes."""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "target" / "images"
REGISTRY = "ghcr.io/faultline-dev"
PAUSE = "registry.k8s.io/pause:3.10"
COREDNS = "registry.k8s.io/coredns/coredns:v1.15.0"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\n"
          "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
GROUP = "root:x:0:\nnonroot:x:65532:\n"


def version():
    for line in (REPO / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise SystemExit("no workspace version in Cargo.toml")


def images():
    v = version()
    return {
        "operator": dict(tag=f"{REGISTRY}/faultline-operator:{v}", binaries=["faultline-operator"],
                         entrypoint=["/usr/local/bin/faultline-operator"], cmd=None, user="65532:65532"),
        "agent": dict(tag=f"{REGISTRY}/faultline-agent:{v}", binaries=["faultline-agent"],
                      entrypoint=["/usr/local/bin/faultline-agent"], cmd=["run"], user="0:0"),
        "toolbox": dict(tag=f"{REGISTRY}/faultline-toolbox:{v}", binaries=["faultline-toolbox"], busybox=True,
                        static=[("peers", "/usr/local/bin/peers")], entrypoint=None, cmd=["/bin/sh"], user="0:0"),
        "redis": dict(tag=f"{REGISTRY}/faultline-test-redis:{v}", busybox=True, entrypoint=None,
                      host=["/usr/bin/redis-server", "/usr/bin/redis-cli"], cmd=["/bin/sh"], user="0:0"),
        "pause": dict(tag=PAUSE, static=[("pause", "/pause")], entrypoint=["/pause"], cmd=None, user="65535:65535"),
        "coredns": dict(tag=COREDNS, static=[("coredns", "/coredns")], entrypoint=["/coredns"], cmd=None,
                        user="0:0"),
    }


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def shared_libraries(binary):
    """The absolute paths `ldd` resolves for `binary`, the dynamic loader included; none for a static one."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if r.returncode != 0 or "not a dynamic executable" in r.stdout + r.stderr:
        return []
    libs = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


class Layer:
    """A root filesystem as a tar, deterministic: fixed owners and times, sorted."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755):
        parts = Path(path).parts
        for i in range(2, len(parts) + 1):
            p = str(Path(*parts[:i]))
            self.entries.setdefault(p, ("dir", mode if i == len(parts) else 0o755, None))

    def file(self, path, data, mode=0o644):
        self.dir(str(Path(path).parent))
        self.entries[str(path)] = ("file", mode, data)

    def host_file(self, host, path, mode=None):
        data = Path(host).read_bytes()
        self.file(path, data, mode if mode is not None else (os.stat(host).st_mode & 0o777))

    def symlink(self, path, target):
        self.dir(str(Path(path).parent))
        self.entries[str(path)] = ("link", 0o777, target)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                kind, mode, data = self.entries[path]
                info = tarfile.TarInfo(path.lstrip("/"))
                info.mtime, info.uid, info.gid, info.mode = 0, 0, 0, mode
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    t.addfile(info)
                elif kind == "link":
                    info.type, info.linkname = tarfile.SYMTYPE, data
                    t.addfile(info)
                else:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def rootfs(spec, binaries):
    layer = Layer()
    layer.dir("/tmp", 0o1777)
    layer.file("/etc/passwd", PASSWD.encode())
    layer.file("/etc/group", GROUP.encode())
    layer.dir("/home/nonroot")
    for name in spec.get("binaries", []):
        path = binaries[name]
        layer.host_file(path, f"/usr/local/bin/{name}", 0o755)
        for lib in shared_libraries(path):
            # Each library at the path the loader will look for it (the real file, not a symlink chain).
            layer.host_file(os.path.realpath(lib), lib, 0o755)
    for src, dst in spec.get("static", []):
        layer.host_file(binaries[src], dst, 0o755)
    # Programs of this machine's distribution, at their own paths, with their libraries.
    for path in spec.get("host", []):
        layer.host_file(os.path.realpath(path), path, 0o755)
        for lib in shared_libraries(path):
            layer.host_file(os.path.realpath(lib), lib, 0o755)
    if spec.get("busybox"):
        bb = "/bin/busybox"
        layer.host_file(bb, bb, 0o755)
        for applet in run(bb, "--list").split():
            if applet != "busybox":
                layer.symlink(f"/bin/{applet}", "busybox")
    return layer.tar()


def docker_archive(spec, layer):
    """The "docker save" format: the layer, the image config, and a manifest naming the tag."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [PATH_ENV], "Entrypoint": spec["entrypoint"], "Cmd": spec["cmd"], "User": spec["user"],
                   "WorkingDir": "/", "Labels": {"org.opencontainers.image.source": "faultline"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "scripts/build-images.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [spec["tag"]], "Layers": ["layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in (("layer.tar", layer), (config_name, config_bytes),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue(), config


def build_binaries(names):
    """The inputs: release Rust binaries, the static pause program, CoreDNS, the Go test peers."""
    out = {}
    rust = [n for n in names if n.startswith("faultline-")]
    if rust:
        args = ["cargo", "build", "--release", "--locked"]
        for n in rust:
            args += ["-p", n]
        subprocess.run(args, check=True, cwd=REPO, stdout=sys.stderr)
        for n in rust:
            out[n] = REPO / "target" / "release" / n
    if "pause" in names:
        OUT.mkdir(parents=True, exist_ok=True)
        src, dst = REPO / "images" / "pause.c", OUT / "pause"
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            run("gcc", "-Os", "-static", "-o", str(dst), str(src))
            run("strip", str(dst))
        out["pause"] = dst
    if "coredns" in names:
        out["coredns"] = Path(run(str(REPO / "e2e" / "build-coredns.sh")).strip().splitlines()[-1]) / "coredns"
    if "peers" in names:
        out["peers"] = Path(run(str(REPO / "e2e" / "build-peers.sh")).strip().splitlines()[-1]) / "peers"
    return out


def build(which):
    specs = images()
    wanted = {k: specs[k] for k in which}
    inputs = set()
    for s in wanted.values():
        inputs.update(s.get("binaries", []))
        inputs.update(src for src, _ in s.get("static", []))
    binaries = build_binaries(sorted(inputs))
    OUT.mkdir(parents=True, exist_ok=True)
    me = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    paths = []
    for name, spec in wanted.items():
        key = hashlib.sha256(me.encode())
        for b in spec.get("binaries", []) + [src for src, _ in spec.get("static", [])]:
            key.update(binaries[b].read_bytes())
        for path in spec.get("host", []):
            key.update(Path(path).read_bytes())
        key = key.hexdigest()
        tar, stamp = OUT / f"{name}.tar", OUT / f"{name}.key"
        if not (tar.exists() and stamp.exists() and stamp.read_text() == key):
            archive, config = docker_archive(spec, rootfs(spec, binaries))
            tar.write_bytes(archive)
            (OUT / f"{name}.config.json").write_text(json.dumps(config, indent=2))
            stamp.write_text(key)
            print(f"built {spec['tag']} ({len(archive) >> 20} MiB)", file=sys.stderr)
        paths.append(tar)
    return paths


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", help=f"of {', '.join(images())}")
    p.add_argument("--all", action="store_true")
    a = p.parse_args()
    which = list(images()) if a.all else a.images
    unknown = set(which) - set(images())
    if unknown or not which:
        p.error(f"unknown images {sorted(unknown)}" if unknown else "name images or --all")
    for path in build(which):
        print(path)


if __name__ == "__main__":
    sys.exit(main())
