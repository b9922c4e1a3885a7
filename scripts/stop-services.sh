#!/usr/bin/env bash
# Stop the Azurite and moto servers started by scripts/test-services.sh start.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/test-services.sh" stop
