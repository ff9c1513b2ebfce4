#!/bin/sh
# Writes synapse-admin's config.json at container start (nginx runs /docker-entrypoint.d/*.sh):
# the UI only talks to this homeserver, and the Phenom system/agent accounts are protected.
# Env: PHENOM_PUBLIC_BASEURL (required, e.g. https://chat.thephenom.app/), PHENOM_SERVER_NAME (required).
set -eu
: "${PHENOM_PUBLIC_BASEURL:?set PHENOM_PUBLIC_BASEURL, e.g. https://chat.thephenom.app/}"
: "${PHENOM_SERVER_NAME:?set PHENOM_SERVER_NAME, e.g. chat.thephenom.app}"
out="${PHENOM_ADMIN_UI_CONFIG:-/usr/share/nginx/html/chat-admin/config.json}"
base="${PHENOM_PUBLIC_BASEURL%/}"
server="$(printf '%s' "$PHENOM_SERVER_NAME" | sed 's/\./\\\\./g')"
cat > "$out" <<JSON
{
  "restrictBaseUrl": "$base",
  "externalAuthProvider": true,
  "asManagedUsers": [
    "^@phenom:$server\$",
    "^@phenom-mcp:$server\$",
    "^@agent-.*:$server\$"
  ],
  "menu": [
    {"label": "Phenom runbook", "icon": "SupportAgent", "url": "https://github.com/thephenom/synapse-phenom/blob/main/docs/operations.md"}
  ]
}
JSON
echo "chat-admin: wrote $out (restrictBaseUrl $base)"
