"""Pins the mesh manifests to an image by digest: rewrites only the lines that name the image.

- deploy/istio/wasmplugin.yaml: `url: oci://REGISTRY/brickgate@sha256:HEX` (Istio's WasmPlugin
  takes the `oci://` scheme and verifies an `@sha256:` digest in the URL, istio/istio
  `pkg/wasm/cache.go` at 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c, `getEntry`).
- deploy/envoy-gateway/extension-policy.yaml: `image.url: REGISTRY/brickgate@sha256:HEX` and
  `image.sha256: HEX` (EG's `ImageWasmCodeSource`: "SHA256 ... must match the digest of the OCI
  image", envoyproxy/gateway `api/v1alpha1/wasm_types.go` at d32f28294245e454d20f81d323d626a90e660c1e).

Line-based on purpose: the manifests' comments and layout stay as written.

Usage: python3 deploy/oci/pin.py REFERENCE_FILE_OR_REFERENCE [REPO_ROOT]
"""

import re
import sys
from pathlib import Path

REFERENCE = re.compile(r"^(?P<repository>[^\s@]+/brickgate)@sha256:(?P<hex>[0-9a-f]{64})$")
ISTIO = Path("deploy/istio/wasmplugin.yaml")
ENVOY_GATEWAY = Path("deploy/envoy-gateway/extension-policy.yaml")
ISTIO_URL = re.compile(r"^(?P<indent>\s*)url: oci://\S+$", re.MULTILINE)
EG_URL = re.compile(r"^(?P<indent>\s*)url: (?!oci://|https?://)\S+/brickgate[:@]\S+$", re.MULTILINE)
EG_SHA256 = re.compile(r"^\s*sha256: \S+\n", re.MULTILINE)


def parse_reference(text: str) -> re.Match:
    match = REFERENCE.match(text.strip())
    if not match:
        raise SystemExit(f"not an image reference by digest (REGISTRY/brickgate@sha256:<64 hex>): {text.strip()!r}")
    return match


def replace_once(pattern: re.Pattern, text: str, replacement, path: Path) -> str:
    new, count = pattern.subn(replacement, text)
    if count != 1:
        raise SystemExit(f"{path}: expected exactly one image url line, found {count}")
    return new


def pin_istio(text: str, reference: re.Match) -> str:
    return replace_once(ISTIO_URL, text, lambda m: f"{m['indent']}url: oci://{reference[0]}", ISTIO)


def pin_envoy_gateway(text: str, reference: re.Match) -> str:
    text = EG_SHA256.sub("", text)
    return replace_once(EG_URL, text, lambda m: f"{m['indent']}url: {reference[0]}\n{m['indent']}sha256: {reference['hex']}",
                        ENVOY_GATEWAY)


def pin(root: Path, reference_text: str) -> None:
    reference = parse_reference(reference_text)
    for relative, rewrite in ((ISTIO, pin_istio), (ENVOY_GATEWAY, pin_envoy_gateway)):
        path = root / relative
        path.write_text(rewrite(path.read_text(), reference))
        print(f"pinned {relative} to {reference[0]}")


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    source = Path(sys.argv[1])
    reference_text = source.read_text() if source.is_file() else sys.argv[1]
    pin(Path(sys.argv[2]) if len(sys.argv) == 3 else Path("."), reference_text)


if __name__ == "__main__":
    main()
