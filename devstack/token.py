"""Print an access token from the running fake IdP (client_credentials). Used by `make token`.

`python -m devstack.token [--client demo-reader] [--scope "clusters:read"] [--idp-url http://127.0.0.1:9400]`
Only the token goes to stdout, so `$(make -s token)` can be pasted into a curl.
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from devstack.idp import DEMO_CLIENTS


def fetch_token(idp_url: str, client_id: str, client_secret: str, scope: str | None = None, timeout_s: float = 5.0) -> str:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    basic = base64.b64encode(
        f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}".encode()
    ).decode()
    request = urllib.request.Request(
        f"{idp_url.rstrip('/')}/oauth2/token",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.load(response)["access_token"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", default="demo-reader", choices=sorted(DEMO_CLIENTS))
    parser.add_argument("--scope", help="space-separated subset of the client's scopes (default: all)")
    parser.add_argument("--idp-url", default="http://127.0.0.1:9400")
    args = parser.parse_args()
    try:
        token = fetch_token(args.idp_url, args.client, DEMO_CLIENTS[args.client].secret, args.scope)
    except urllib.error.HTTPError as err:
        print(f"token request refused: {err.code} {err.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"fake IdP not reachable at {args.idp_url} ({err}); is `make run` running?", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
