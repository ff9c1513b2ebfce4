#!/bin/sh
# Render homeserver.yaml from PHENOM_* variables (fails naming every missing one),
# generate the signing key on first start, then run Synapse in the foreground.
set -eu
data="${PHENOM_DATA_DIR:-/data}"
phenom-chat render-config --output "${PHENOM_DATA_DIR:-/data}/homeserver.yaml" --log-config "${PHENOM_DATA_DIR:-/data}/log.yaml"
python -m synapse.app.homeserver --config-path "$data/homeserver.yaml" --generate-keys
exec python -m synapse.app.homeserver --config-path "$data/homeserver.yaml"
