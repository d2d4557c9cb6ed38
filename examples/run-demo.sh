#!/usr/bin/env bash
# Side by side: 4 worker processes share one OpenAI quota (a strict offline mock: 600 RPM,
# 40 000 TPM), first pacing themselves as people do today (SDK retries, a local semaphore),
# then through Sluice. Prints requests done, upstream 429s, tokens per minute against the
# limit, wall time, and how long interactive calls waited while the batch ran.
# Needs only a JDK 17+; builds what it needs on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EX_JAR=$ROOT/examples/target/sluice-examples.jar
if [ ! -f "$EX_JAR" ] || [ ! -f "$ROOT/cli/target/sluice.jar" ]; then
  echo "building (first run)..."
  ./mvnw -q -B -DskipTests package
fi

SLUICE_PORT=${SLUICE_PORT:-7520}
MOCK_PORT=${MOCK_PORT:-7580}
RPM=600
TPM=40000
PROCS=4
THREADS=8
PROMPTS=$ROOT/examples/data/prompts.jsonl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
MOCK_URL=http://127.0.0.1:$MOCK_PORT
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

report() { java -cp "$EX_JAR" dev.sluice.examples.DemoReport "$@"; }

bin/sluice serve --host 127.0.0.1 --port "$SLUICE_PORT" --data-dir "$WORK/sluice-data" >"$WORK/sluice.log" 2>&1 &
PIDS+=($!)
java -cp "$EX_JAR" dev.sluice.examples.mock.MockOpenAiMain --port "$MOCK_PORT" --rpm $RPM --tpm $TPM \
  >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/sluice.log" "ready on port" "the coordinator"
wait_for "$WORK/mock.log" "listening" "the mock upstream"

# Sluice's bursts are half the upstream's one-second sub-window (10 requests, 666 tokens):
# the other half absorbs jitter between a grant and its arrival upstream.
bin/sluice limit set openai --rate requests=$RPM/min:5 --rate tokens=$TPM/min:333 \
  --target 127.0.0.1:"$SLUICE_PORT" >/dev/null

common=(--input "$PROMPTS" --base-url "$MOCK_URL/v1" --api-key sk-demo
        --max-tokens 60 --sluice 127.0.0.1:"$SLUICE_PORT" --no-progress)

echo "phase 1: $PROCS processes x $THREADS threads, without Sluice (SDK retries on, local semaphore), at most 40 s..."
for i in $(seq 0 $((PROCS - 1))); do
  java -cp "$EX_JAR" dev.sluice.examples.OpenAiBatch "${common[@]}" --mode local --threads $THREADS --shard "$i/$PROCS" --time-limit 40s \
    --summary "$WORK/local-$i.json" --output "$WORK/local-$i.jsonl" >"$WORK/local-$i.log" 2>&1 &
  PIDS+=($!)
done
wait "${PIDS[@]:2}" || true
report stats "$MOCK_URL" "$WORK/mock-local.json"
report reset "$MOCK_URL"

echo "phase 2: $PROCS processes x $THREADS threads, with Sluice (batch lane), and an interactive caller..."
BATCH=()
for i in $(seq 0 $((PROCS - 1))); do
  java -cp "$EX_JAR" dev.sluice.examples.OpenAiBatch "${common[@]}" --mode sluice --lane batch --threads $THREADS --shard "$i/$PROCS" \
    --summary "$WORK/sluice-$i.json" --output "$WORK/sluice-$i.jsonl" >"$WORK/sluice-$i.log" 2>&1 &
  BATCH+=($!)
done
PIDS+=("${BATCH[@]}")
java -cp "$EX_JAR" dev.sluice.examples.OpenAiBatch "${common[@]}" --mode sluice --lane interactive --threads 1 \
  --duration 20s --think-time 1s --summary "$WORK/interactive.json" >"$WORK/interactive.log" 2>&1 &
PROBE=$!
PIDS+=($PROBE)
wait "${BATCH[@]}" "$PROBE" || true
report stats "$MOCK_URL" "$WORK/mock-sluice.json"

echo
report table "$WORK" $TPM
echo
echo "logs and per-call results: $WORK"
