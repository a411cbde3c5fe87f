#!/bin/sh
# Is brickgate enforcing? Three requests to the gateway, on a route the Databricks route catalogue
# decides (`GET /api/2.0/clusters/list`, scope `all-apis` or `clusters`):
#   no token                           -> 401 missing_token
#   an IdP token without that scope    -> 403 insufficient_scope
#   an IdP token with it               -> 200 from the workspace (brickgate exchanged the token)
# Exits 0 only if all three are as expected. Tokens are read from the environment and never printed.
#
#   GATEWAY=https://databricks.example.com \
#   NARROW_TOKEN="$(your-idp-cli token --scope openid)" \
#   TOKEN="$(your-idp-cli token --scope all-apis)" \
#   deploy/check-enforcing.sh
set -eu
: "${GATEWAY:?the gateway URL, e.g. https://databricks.example.com}"
: "${NARROW_TOKEN:?an IdP access token for the gateway without the all-apis scope}"
: "${TOKEN:?an IdP access token for the gateway with the all-apis scope}"
url="$GATEWAY/api/2.0/clusters/list"
failed=0

check() {  # check EXPECTED_STATUS EXPECTED_REASON [TOKEN]
    if [ -n "${3:-}" ]; then
        # The header comes from a file, so the token is not in the process list.
        headers=$(mktemp)
        printf 'Authorization: Bearer %s\n' "$3" >"$headers"
        answer=$(curl -sS -o /dev/null -D - -H "@$headers" "$url") || answer="curl failed"
        rm -f "$headers"
    else
        answer=$(curl -sS -o /dev/null -D - "$url") || answer="curl failed"
    fi
    status=$(printf '%s\n' "$answer" | awk 'toupper($1) ~ /^HTTP\// { code = $2 } END { print code }')
    reason=$(printf '%s\n' "$answer" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-brickgate-reason" { r = $2 } END { print r }')
    if [ "$status" = "$1" ] && [ "$reason" = "$2" ]; then
        echo "ok   $status ${reason:-(allowed)}"
    else
        echo "FAIL got $status ${reason:-(no x-brickgate-reason)}, expected $1 ${2:-(allowed)}"
        failed=1
    fi
}

check 401 missing_token
check 403 insufficient_scope "$NARROW_TOKEN"
check 200 "" "$TOKEN"
exit "$failed"
