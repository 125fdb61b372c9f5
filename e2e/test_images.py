"""The container images built without Docker (scripts/build-images.py): each runs from its own root
filesystem (every library it needs is in it), and the Dockerfiles kept for users with Docker describe the
same images — same user, same binary, same entrypoint and command."""

import json
import re
import subprocess
import tarfile

import pytest

from processes import REPO


@pytest.fixture(scope="module")
def images():
    out = subprocess.run(["python3", str(REPO / "scripts" / "build-images.py"), "operator", "agent", "toolbox",
                          "pause"], check=True, capture_output=True, text=True).stdout.split()
    return {p.rsplit("/", 1)[-1].removesuffix(".tar"): p for p in out}


def unpack(tar, into):
    """The image's config, and its root filesystem unpacked under `into`."""
    with tarfile.open(tar) as t:
        manifest = json.load(t.extractfile("manifest.json"))[0]
        config = json.load(t.extractfile(manifest["Config"]))
        with tarfile.open(fileobj=t.extractfile(manifest["Layers"][0])) as layer:
            layer.extractall(into, filter="tar")
    return manifest, config


def dockerfile(path):
    """USER, ENTRYPOINT and CMD of a Dockerfile's final stage."""
    text = (REPO / path).read_text()
    final = text[text.rfind("\nFROM "):]
    user = re.search(r"^USER (\S+)", final, re.M)
    entry = re.search(r"^ENTRYPOINT (\[.*\])", final, re.M)
    cmd = re.search(r"^CMD (\[.*\])", final, re.M)
    return (user.group(1) if user else "0:0", json.loads(entry.group(1)), json.loads(cmd.group(1)) if cmd else None)


@pytest.mark.parametrize("name, path, run", [
    ("operator", "operator/Dockerfile", ["--version"]),
    ("agent", "agent/Dockerfile", ["--version"]),
])
def test_faultline_images_run_and_match_their_dockerfiles(images, tmp_path, name, path, run):
    manifest, config = unpack(images[name], tmp_path)
    c = config["config"]
    assert manifest["RepoTags"] == [f"ghcr.io/faultline-dev/faultline-{name}:0.1.0"], "a version, never latest"
    assert (c["User"], c["Entrypoint"], c["Cmd"]) == dockerfile(path)
    r = subprocess.run(["chroot", str(tmp_path), *c["Entrypoint"], *run], capture_output=True, text=True)
    assert r.returncode == 0 and "0.1.0" in r.stdout, r.stderr


def test_toolbox_and_sandbox_images(images, tmp_path):
    _, config = unpack(images["toolbox"], tmp_path / "toolbox")
    r = subprocess.run(["chroot", str(tmp_path / "toolbox"), "/bin/sh", "-c", "faultline-toolbox; echo $?"],
                       capture_output=True, text=True)
    assert "usage: faultline-toolbox" in r.stderr and r.stdout.strip() == "1"
    manifest, config = unpack(images["pause"], tmp_path / "pause")
    assert manifest["RepoTags"] == ["registry.k8s.io/pause:3.10"], "the name containerd's CRI expects"
    # Static: nothing else in the image but the program.
    assert "not a dynamic executable" in subprocess.run(["ldd", str(tmp_path / "pause" / "pause")],
                                                        capture_output=True, text=True).stdout + \
        subprocess.run(["ldd", str(tmp_path / "pause" / "pause")], capture_output=True, text=True).stderr
