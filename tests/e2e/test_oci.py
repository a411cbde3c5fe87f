"""`make oci`'s image pushed to a real registry on loopback (Debian's docker-registry) with
`make oci-push`'s script, pulled back by digest with skopeo, checked against the compat Wasm image
spec and Istio's image-fetcher rules, and the pulled module run in Envoy; `make oci-pin`'s rewrite
of the manifests; the committed manifests' digest pins."""

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

import importlib.util
import re

import pytest
import yaml

from envoy_harness import bootstrap, brickgate_listener
from gateway_client import send
from plugin_configs import main_config

from envoy_harness import NATIVE as _NATIVE_FORM

pytestmark = pytest.mark.skipif(_NATIVE_FORM, reason="the OCI image carries the Wasm module")

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD = REPO_ROOT / "deploy" / "oci" / "build.py"
PUSH = REPO_ROOT / "deploy" / "oci" / "push.py"
PIN = REPO_ROOT / "deploy" / "oci" / "pin.py"
ISTIO_PLUGIN = REPO_ROOT / "deploy" / "istio" / "wasmplugin.yaml"
EG_POLICY = REPO_ROOT / "deploy" / "envoy-gateway" / "extension-policy.yaml"

# Media types from the OCI image spec and Docker's manifest v2 (go-containerregistry pkg/v1/types).
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
WASM_ARTIFACT_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
DIGEST_HEX = re.compile(r"[0-9a-f]{64}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """docker-registry on a free loopback port, storing under tmp_path; its address."""
    for tool in ("docker-registry", "skopeo"):
        assert shutil.which(tool), f"{tool} is missing: `make e2e` installs it (apt-get install docker-registry skopeo)"
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


def load_script(path: Path):
    """A deploy/oci script as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def istio_extract_wasm(manifest: dict, blob) -> bytes:
    """Istio's rules for turning a pulled Wasm image into the module, ported from istio/istio
    `pkg/wasm/imagefetcher.go` at 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c (`PrepareFetch`'s
    binaryFetcher, `extractDockerImage`, `extractOCIStandardImage`, `extractWasmPluginBinary`,
    `extractOCIArtifactImage`) and `pkg/wasm/cache.go` (`isValidWasmBinary`). Envoy Gateway's
    `internal/wasm/imagefetcher.go` (d32f28294245e454d20f81d323d626a90e660c1e) has the same rules.
    Raises ValueError where Istio refuses the image."""

    def plugin_wasm_in(layer: dict) -> bytes:
        # The first tar entry whose base name is plugin.wasm.
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) as tar:
            for member in tar:
                if Path(member.name).name == "plugin.wasm":
                    return tar.extractfile(member).read()
        raise ValueError("plugin.wasm not found in the archive")

    def valid(module: bytes) -> bytes:
        if len(module) < 8 or module[:4] != b"\0asm":
            raise ValueError("fetched Wasm binary is invalid")
        return module

    layers = manifest.get("layers", [])
    if not layers:
        raise ValueError("number of layers must be greater than zero")
    if manifest.get("mediaType") == DOCKER_MANIFEST:
        if layers[-1]["mediaType"] != DOCKER_LAYER:
            raise ValueError(f"invalid media type {layers[-1]['mediaType']}")
        return valid(plugin_wasm_in(layers[-1]))
    if layers[-1]["mediaType"] == OCI_LAYER:  # the compat variant
        return valid(plugin_wasm_in(layers[-1]))
    artifact = [layer for layer in layers if layer["mediaType"] == WASM_ARTIFACT_LAYER]
    if len(layers) != 2 or not artifact:  # the oci variant
        raise ValueError("neither a compat nor an oci variant Wasm image")
    return valid(blob(artifact[0]["digest"]))


def gzip_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue())


WASM_HEADER = b"\0asm\x01\0\0\0"


@pytest.mark.parametrize("name, layers, manifest_type, accepted", [
    ("compat: one OCI tar+gzip layer with plugin.wasm", [(OCI_LAYER, {"plugin.wasm": WASM_HEADER})], None, True),
    ("compat: plugin.wasm under a directory", [(OCI_LAYER, {"x/plugin.wasm": WASM_HEADER})], None, True),
    ("compat: only the last layer counts", [(OCI_LAYER, {"plugin.wasm": WASM_HEADER}), (OCI_LAYER, {"other": b""})], None, False),
    ("compat: no plugin.wasm", [(OCI_LAYER, {"module.wasm": WASM_HEADER})], None, False),
    ("compat: not a Wasm module", [(OCI_LAYER, {"plugin.wasm": b"#!/bin/sh\n"})], None, False),
    ("docker: rootfs.diff layer", [(DOCKER_LAYER, {"plugin.wasm": WASM_HEADER})], DOCKER_MANIFEST, True),
    ("docker manifest with an OCI layer", [(OCI_LAYER, {"plugin.wasm": WASM_HEADER})], DOCKER_MANIFEST, False),
    ("no layers", [], None, False),
])
def test_ported_istio_rules_accept_exactly_what_istio_accepts(name, layers, manifest_type, accepted):
    blobs, descriptors = {}, []
    for media_type, files in layers:
        data = gzip_tar(files)
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        blobs[digest] = data
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = {"schemaVersion": 2, "layers": descriptors, **({"mediaType": manifest_type} if manifest_type else {})}
    if accepted:
        assert istio_extract_wasm(manifest, blobs.__getitem__) == WASM_HEADER, name
    else:
        with pytest.raises(ValueError):
            istio_extract_wasm(manifest, blobs.__getitem__)


def image_from_layout(layout: Path, tag: str) -> tuple[dict, str, object]:
    """The tagged image of an OCI layout (read with the OCI image-layout spec, not build.py):
    its manifest, the manifest's digest and a blob reader that checks each blob's digest."""
    index = json.loads((layout / "index.json").read_text())
    descriptor = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)

    def blob(digest: str) -> bytes:
        data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:"), f"blob {digest} is corrupt"
        return data

    return json.loads(blob(descriptor["digest"])), descriptor["digest"], blob


@pytest.mark.parametrize("registry, loopback", [
    ("127.0.0.1:5000", True), ("127.0.0.1:5000/team", True), ("localhost:5000", True), ("[::1]:5000/x", True),
    ("registry.example.com", False), ("registry.example.com:443/team", False), ("10.0.0.1:5000", False),
    ("127.0.0.1.example.com:5000", False), ("localhost.example.com", False),
])
def test_push_turns_tls_verification_off_only_for_a_loopback_registry(registry, loopback):
    assert load_script(PUSH).is_loopback(registry) is loopback


def test_image_pushed_and_pulled_by_digest_is_the_compat_image_istio_accepts_and_runs_in_envoy(
        registry, wasm_path, tmp_path, start_envoy, idp, upstream, tokens):
    tag = "e2e"
    built = tmp_path / "built"
    subprocess.run([sys.executable, str(BUILD), str(wasm_path), str(built), tag], check=True, capture_output=True)
    _, built_digest, _ = image_from_layout(built, tag)
    pushed_file = tmp_path / "pushed.txt"
    subprocess.run([sys.executable, str(PUSH), str(built), tag, f"{registry}/team", str(pushed_file)],
                   check=True, capture_output=True)
    pushed = pushed_file.read_text().strip()
    assert pushed == f"{registry}/team/brickgate@{built_digest}", "the registry holds another manifest than the one built"

    pulled = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"docker://{pushed}", f"oci:{pulled}:{tag}")
    manifest, pulled_digest, blob = image_from_layout(pulled, tag)
    assert pulled_digest == built_digest
    # solo-io/wasm spec/spec-compat.md (d072eb48cb445909a6984cdf88c0530e5c6fee81), "Annotation":
    # on the manifest, beside a tar+gzip layer.
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER]
    module = istio_extract_wasm(manifest, blob)
    assert module == wasm_path.read_bytes(), "the pulled plugin.wasm is not the built module byte for byte"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(manifest["layers"][0]["digest"])))) as tar:
        assert tar.getnames() == ["plugin.wasm"]
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{pushed}"))
    assert inspected == manifest, "the registry serves the manifest by digest as pulled"
    # Reproducible: building again gives the same image, so the digest pins a module.
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(BUILD), str(wasm_path), str(again), tag], check=True, capture_output=True)
    assert image_from_layout(again, tag)[1] == built_digest

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


def test_pin_rewrites_only_the_image_lines_of_both_manifests(tmp_path):
    for manifest in (ISTIO_PLUGIN, EG_POLICY):
        copy = tmp_path / manifest.relative_to(REPO_ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(manifest.read_text())
    reference = "127.0.0.1:5000/team/brickgate@sha256:" + "ab" * 32
    subprocess.run([sys.executable, str(PIN), reference, str(tmp_path)], check=True, capture_output=True)

    istio_before, istio_after = ISTIO_PLUGIN.read_text().splitlines(), (tmp_path / ISTIO_PLUGIN.relative_to(REPO_ROOT)).read_text().splitlines()
    changed = [(a, b) for a, b in zip(istio_before, istio_after) if a != b]
    assert len(istio_before) == len(istio_after) and len(changed) == 1
    assert changed[0][1] == f"  url: oci://{reference}"

    eg_before = EG_POLICY.read_text().splitlines()
    eg_after = (tmp_path / EG_POLICY.relative_to(REPO_ROOT)).read_text().splitlines()
    removed = [line for line in eg_before if line not in eg_after]
    added = [line for line in eg_after if line not in eg_before]
    assert [line.strip() for line in removed if "url:" in line or "sha256:" in line] == [line.strip() for line in removed]
    assert sorted(line.strip() for line in added) == sorted([f"url: {reference}", "sha256: " + "ab" * 32])


def document_of_kind(path: Path, kind: str) -> dict:
    [document] = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == kind]
    return document


def test_committed_manifests_pin_one_image_by_a_well_formed_digest_and_docs_say_how_to_repin():
    istio = document_of_kind(ISTIO_PLUGIN, "WasmPlugin")["spec"]["url"]
    image = document_of_kind(EG_POLICY, "EnvoyExtensionPolicy")["spec"]["wasm"][0]["code"]["image"]
    istio_match = re.fullmatch(r"oci://(?P<repository>[^\s@:]+(:\d+)?(/[^\s@:]+)*/brickgate)@sha256:(?P<hex>[0-9a-f]{64})", istio)
    eg_match = re.fullmatch(r"(?P<repository>[^\s@:]+(:\d+)?(/[^\s@:]+)*/brickgate)@sha256:(?P<hex>[0-9a-f]{64})", image["url"])
    assert istio_match, f"Istio's url is not oci://REGISTRY/brickgate@sha256:<64 hex>: {istio}"
    assert eg_match, f"Envoy Gateway's image.url is not REGISTRY/brickgate@sha256:<64 hex>: {image['url']}"
    assert image["sha256"] == eg_match["hex"], "EG verifies image.sha256 against the image digest: they must agree"
    assert istio_match["hex"] == eg_match["hex"] and istio_match["repository"] == eg_match["repository"]
    assert "0" * 64 != eg_match["hex"] and DIGEST_HEX.fullmatch(eg_match["hex"])
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make oci-pin REGISTRY=" in readme and "make oci-push REGISTRY=" in readme
