"""Pushes `make oci`'s image layout to a registry with skopeo and prints the pushed reference by digest.

The reference (REGISTRY/brickgate@sha256:...) is also written to OUT_FILE, which `make oci-pin`
(deploy/oci/pin.py) reads. TLS is verified except for a loopback registry (127.0.0.0/8, ::1,
localhost), the only place a plain-HTTP test registry is acceptable.

Usage: python3 deploy/oci/push.py LAYOUT_DIR TAG REGISTRY OUT_FILE
"""

import ipaddress
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGE_NAME = "brickgate"


def registry_host(registry: str) -> str:
    """The host of `host[:port][/path]`, brackets of an IPv6 literal removed."""
    authority = registry.split("/", 1)[0]
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def is_loopback(registry: str) -> bool:
    host = registry_host(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def push(layout: Path, tag: str, registry: str) -> str:
    """Copies the tagged image to REGISTRY/brickgate:TAG; returns REGISTRY/brickgate@sha256:..."""
    registry = registry.rstrip("/")
    tls = ["--dest-tls-verify=false"] if is_loopback(registry) else []
    with tempfile.TemporaryDirectory() as scratch:
        digest_file = Path(scratch) / "digest"
        subprocess.run(["skopeo", "copy", *tls, "--digestfile", str(digest_file),
                        f"oci:{layout}:{tag}", f"docker://{registry}/{IMAGE_NAME}:{tag}"], check=True)
        digest = digest_file.read_text().strip()
    return f"{registry}/{IMAGE_NAME}@{digest}"


def main() -> None:
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    layout, tag, registry, out_file = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
    if not registry:
        raise SystemExit("REGISTRY is empty: make oci-push REGISTRY=host[:port][/path]")
    reference = push(layout, tag, registry)
    out_file.write_text(reference + "\n")
    print(f"pushed {reference}")


if __name__ == "__main__":
    main()
