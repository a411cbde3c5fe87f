"""Write the test-only signing keys that are missing from this directory.

Run once: `python tests/keys/generate.py`. Existing files are never overwritten, so the
committed keys (and every token or JWKS derived from them) stay stable.
"""

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

KEYS_DIR = Path(__file__).resolve().parent

KEY_FACTORIES = {
    "rsa-1.pem": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa-2.pem": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ec-1.pem": lambda: ec.generate_private_key(ec.SECP256R1()),
    "attacker-rsa.pem": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ec-384.pem": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed-1.pem": ed25519.Ed25519PrivateKey.generate,
    # The fake Databricks workspace's token-signing key (devstack/workspace.py).
    "dbx-1.pem": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


def main() -> None:
    for file_name, make_key in KEY_FACTORIES.items():
        path = KEYS_DIR / file_name
        if path.exists():
            print(f"keep   {path.name}")
            continue
        pem = make_key().private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        print(f"wrote  {path.name}")


if __name__ == "__main__":
    main()
