"""brickgate dev stack: a fake IdP, an echo upstream and a token library, for local runs and e2e tests.

Everything here is test tooling. It signs with the public test keys in tests/keys/.
"""
