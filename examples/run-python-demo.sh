#!/usr/bin/env bash
# The Python demo beside the Java one (run-demo.sh): 4 processes x 16 asyncio tasks share one
# OpenAI quota on the strict offline mock (600 RPM, 40 000 TPM), first on their own (retrying
# 429s as the openai package does), then through sluice.openai.transport. Prints requests done,
# upstream 429s and the tokens admitted against the TPM. DURATION (seconds a phase, default 60),
# PROCS and TASKS change the run.
# Needs a JDK 17+ and a python3 with httpx (Debian: python3-httpx); builds the jars on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EX_JAR=$ROOT/examples/target/sluice-examples.jar
if [ ! -f "$EX_JAR" ] || [ ! -f "$ROOT/cli/target/sluice.jar" ]; then
  echo "building (first run)..."
  ./mvnw -q -B -DskipTests package
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import httpx' 2>/dev/null; then
  if /usr/bin/python3 -c 'import httpx' 2>/dev/null; then PYTHON=/usr/bin/python3
  else echo "needs a python3 with httpx: sudo apt-get install -y python3-httpx, or pip install httpx" >&2; exit 2; fi
fi

SLUICE_PORT=${SLUICE_PORT:-7530}
SLUICE_HTTP_PORT=${SLUICE_HTTP_PORT:-7531}
MOCK_PORT=${MOCK_PORT:-7590}
RPM=600
TPM=40000
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pydemo.XXXXXX")
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_for() { # file pattern what
  for _ in $(seq 1 150); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$3 did not start; its log:" >&2; cat "$1" >&2; exit 1
}

bin/sluice serve --host 127.0.0.1 --port "$SLUICE_PORT" --http-port "$SLUICE_HTTP_PORT" \
  --data-dir "$WORK/sluice-data" >"$WORK/sluice.log" 2>&1 &
PIDS+=($!)
java -cp "$EX_JAR" dev.sluice.examples.mock.MockOpenAiMain --port "$MOCK_PORT" --rpm $RPM --tpm $TPM \
  >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/sluice.log" "ready on port" "the coordinator"
wait_for "$WORK/mock.log" "listening" "the mock upstream"

# Sluice's bursts are half the upstream's one-second sub-window (10 requests, 666 tokens): the
# other half absorbs jitter between a grant and its arrival upstream (as in run-demo.sh).
bin/sluice limit set openai --rate requests=$RPM/min:5 --rate tokens=$TPM/min:333 \
  --target 127.0.0.1:"$SLUICE_PORT" >/dev/null

"$PYTHON" examples/python/openai_demo.py --mock "http://127.0.0.1:$MOCK_PORT" \
  --sluice "http://127.0.0.1:$SLUICE_HTTP_PORT" --tpm $TPM --procs "${PROCS:-4}" --tasks "${TASKS:-16}" \
  --duration "${DURATION:-60}" --summary "$WORK/summary.json"
echo
echo "logs and figures: $WORK"
