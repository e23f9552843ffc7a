#!/bin/bash
# Runs the whole test suite (unit, API, and host tests against real containers) and
# ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
npm run build --silent || { echo "0 passed, 1 failed"; exit 1; }
export SUMMARY_FILE
SUMMARY_FILE=$(mktemp /tmp/nodelxd-summary.XXXXXX)
npx vitest run "$@"
rc=$?
summary=$(cat "$SUMMARY_FILE" 2>/dev/null); rm -f "$SUMMARY_FILE"
if [ -z "$summary" ]; then summary="0 passed, 1 failed"; rc=1; fi
echo "$summary"
exit $rc
