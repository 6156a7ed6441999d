#!/usr/bin/env bash
# make demo: runs examples/hello.yaml with the scripted model against a local ledger service
# on 127.0.0.1:8080. State lives in $BUILD_DIR/demo-state; a second run shows the finished
# run instead of redoing it. `rm -rf build/demo-state` to start over.
set -euo pipefail
BUILD_DIR=${1:-build}
STATE_DIR="$BUILD_DIR/demo-state"
CARAPACE="$BUILD_DIR/worker/carapace"
LEDGER="$BUILD_DIR/tests/carapace-test-ledger"

"$LEDGER" 8080 > "$BUILD_DIR/demo-ledger.port" &
LEDGER_PID=$!
trap 'kill $LEDGER_PID 2>/dev/null || true; wait $LEDGER_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  [ -s "$BUILD_DIR/demo-ledger.port" ] && break
  kill -0 $LEDGER_PID 2>/dev/null || { echo "demo: could not start the ledger on 127.0.0.1:8080 (port in use?)" >&2; exit 1; }
  sleep 0.1
done

echo "== carapace run examples/hello.yaml --state-dir $STATE_DIR"
set +e
"$CARAPACE" run examples/hello.yaml --state-dir "$STATE_DIR"
code=$?
set -e
echo "== exit code $code"
echo
echo "== the workspace the agent wrote"
find "$STATE_DIR/workspace" -type f | sort | while read -r f; do echo "-- ${f#$STATE_DIR/workspace/}"; cat "$f"; done
echo
echo "== next: 'make demo' again shows the finished run; 'build/worker/carapace inspect --state-dir $STATE_DIR' shows every event"
exit $code
