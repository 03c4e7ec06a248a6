#!/usr/bin/env bash
# Settle-step and convergence benchmark for every named config (ratios measured in one run).
# Usage: benchmarks/settle.sh [--device cuda] > settle.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
EPHW=${EPHW:-.venv/bin/ephw}
"$EPHW" bench settle --config digits --batch 256 --json "$@"
"$EPHW" bench settle --config cpu-small --batch 128 --json "$@"
"$EPHW" bench settle --config paper --batch 64 --json "$@"
