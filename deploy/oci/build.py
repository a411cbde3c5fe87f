"""Builds brickgate's wasm module as an OCI image layout, without a container daemon.

The image is the "compat" variant of the Wasm image specification (solo-io/wasm
`spec/spec-compat.md` at d072eb48cb445909a6984cdf88c0530e5c6fee81), which Istio's WasmPlugin and Envoy
Gateway's EnvoyExtensionPolicy both pull (istio/istio `pkg/wasm/imagefetcher.go` at
86c9f01fd735fb01d8192f5bcaf0d424afb7f14c, `extractOCIStandardImage`; envoyproxy/gateway
`internal/wasm/imagefetcher.go` at d32f28294245e454d20f81d323d626a90e660c1e): the last (here: only)
layer is `application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`, and the manifest
carries the annotation `module.wasm.image/variant: compat` that the spec's "Annotation" section asks
for to tell it from the "oci" variant. The layout is reproducible (fixed timestamps and owners), so
the same module always has the same digest. Push it with `make oci-push REGISTRY=host[:port][/path]` (skopeo), which prints the pushed digest;
`make oci-pin` writes that digest into the manifests (deploy/oci/pin.py).

Usage: python3 deploy/oci/build.py WASM OUT_DIR TAG
"""

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# solo-io/wasm spec/spec-compat.md, "Annotation": a manifest annotation, not a config label.
COMPAT_ANNOTATION = {"module.wasm.image/variant": "compat"}


def layer_tar(wasm: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(wasm), 0o644, 0, 0, 0
        tar.addfile(info, io.BytesIO(wasm))
    return buffer.getvalue()


def put_blob(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def build(wasm_path: Path, out: Path, tag: str) -> str:
    """Writes the layout; returns the manifest digest."""
    wasm = wasm_path.read_bytes()
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    tar = layer_tar(wasm)
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps({
        "architecture": "wasm", "os": "wasip1",
        "config": {"Labels": {"org.opencontainers.image.title": "brickgate"}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": put_blob(blobs, config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": put_blob(blobs, layer), "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}],
        "annotations": {"org.opencontainers.image.title": "brickgate",
                        "io.brickgate.wasm.sha256": hashlib.sha256(wasm).hexdigest(),
                        **COMPAT_ANNOTATION},
    }, sort_keys=True).encode()
    manifest_digest = put_blob(blobs, manifest)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (out / "index.json").write_text(json.dumps(index))
    return manifest_digest


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    wasm, out, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    digest = build(wasm, out, tag)
    print(f"{out}:{tag} {digest} (plugin.wasm sha256:{hashlib.sha256(wasm.read_bytes()).hexdigest()})")


if __name__ == "__main__":
    main()
