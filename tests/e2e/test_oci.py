"""`make oci`'s image pushed to a real registry on loopback (Debian's docker-registry), pulled back
with skopeo, its plugin.wasm checked against the built module, and the pulled module run in Envoy."""

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from envoy_harness import bootstrap, brickgate_listener
from gateway_client import send
from plugin_configs import main_config

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD = REPO_ROOT / "deploy" / "oci" / "build.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """docker-registry on a free loopback port, storing under tmp_path; its address."""
    for tool in ("docker-registry", "skopeo"):
        assert shutil.which(tool), f"{tool} is missing: `make e2e` installs it (Debian package {tool})"
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "docker-registry did not start"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def plugin_from_layout(layout: Path, tag: str) -> tuple[bytes, dict]:
    """plugin.wasm from an OCI layout's tagged image (read with the OCI image-layout spec, not build.py)."""
    index = json.loads((layout / "index.json").read_text())
    descriptor = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    blob = lambda digest: (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    manifest = json.loads(blob(descriptor["digest"]))
    assert len(manifest["layers"]) == 1, "Istio's compat image has one layer"
    layer = manifest["layers"][0]
    data = blob(layer["digest"])
    assert hashlib.sha256(data).hexdigest() == layer["digest"].removeprefix("sha256:")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        assert tar.getnames() == ["plugin.wasm"]
        return tar.extractfile("plugin.wasm").read(), manifest


def test_image_round_trip_through_a_registry_runs_in_envoy(registry, wasm_path, tmp_path, start_envoy, idp, upstream, tokens):
    tag = "e2e"
    built = tmp_path / "built"
    subprocess.run([sys.executable, str(BUILD), str(wasm_path), str(built), tag], check=True, capture_output=True)
    reference = f"docker://{registry}/brickgate:{tag}"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{built}:{tag}", reference)
    pulled = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", reference, f"oci:{pulled}:{tag}")
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", reference))

    module, manifest = plugin_from_layout(pulled, tag)
    expected = hashlib.sha256(wasm_path.read_bytes()).hexdigest()
    assert hashlib.sha256(module).hexdigest() == expected, "the pulled plugin.wasm is not the built module"
    assert manifest["annotations"]["io.brickgate.wasm.sha256"] == expected
    assert inspected["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    # Reproducible: building again gives the same image.
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(BUILD), str(wasm_path), str(again), tag], check=True, capture_output=True)
    assert (again / "index.json").read_text() == (built / "index.json").read_text()

    pulled_wasm = tmp_path / "plugin.wasm"
    pulled_wasm.write_bytes(module)
    listener = brickgate_listener("pulled", str(pulled_wasm), main_config(idp.issuer, idp.port))
    envoy = start_envoy(bootstrap([listener], upstream.port, idp.port), "pulled")
    envoy.wait_ready()
    port = envoy.listener_ports()["pulled"]
    assert send(port, "GET", "/api/2.0/clusters/list").status == 401
    token = tokens.idp(scope="clusters:read")
    deadline = time.monotonic() + 20
    while send(port, "GET", "/api/2.0/clusters/list", token).status != 200:
        assert time.monotonic() < deadline, "the pulled module never allowed a valid token"
        time.sleep(0.2)
