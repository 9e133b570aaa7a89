#!/usr/bin/env bash
# Data-parallel scaling on this machine (BENCHMARKS.md "Scale-out"): the demo refinement's
# stage-3 step time with 1 process and with `mpirun -np 2` (the same global batch, one thread per
# rank), the scaling efficiency, and the share of each rank's step time spent in collectives.
# Usage: tools/bench_dist.sh [mimr binary built with --features mpi] [steps of stage 3]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/mimr-target}/release/mimr}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SETS=(--set data.limit=1536 --set data.batch_size=64 --set stage2.epochs=1 --set stage3.epochs=1
      --set run.device="cpu" --set data.workers=1 --set eval.every_epochs=0 --set run.log_every=1
      --set run.snapshot_every=0 --set run.checkpoint_every=1000)
export RAYON_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none

"$BIN" refine --config configs/demo.toml --set run.dir=\"$OUT/one\" "${SETS[@]}" \
  2> "$OUT/one.log" > /dev/null
mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 \
  "$BIN" refine --config configs/demo.toml --set run.dir=\"$OUT/two\" "${SETS[@]}" \
  2> "$OUT/two.log" > /dev/null

python3 - "$OUT" <<'PY'
import json, statistics, sys, re
out = sys.argv[1]
def stage3(run):
    steps = [json.loads(l) for l in open(f"{out}/{run}/events.jsonl")]
    steps = [e for e in steps if e.get("type") == "step" and e.get("stage") == 3]
    ips = [e["img_per_s"] for e in steps[2:]]  # the first steps pay allocation warm-up
    return 64 / statistics.median(ips), len(ips)
(t1, n1), (t2, n2) = stage3("one"), stage3("two")
print(f"stage-3 step, global batch 64, demo ViT, 1 thread per rank (median of {n1} / {n2} steps)")
print(f"  1 process : {t1*1000:8.1f} ms")
print(f"  2 ranks   : {t2*1000:8.1f} ms   speed-up {t1/t2:.2f}x, efficiency {t1/t2/2*100:.0f} %")
for line in open(f"{out}/two.log"):
    m = re.search(r"rank (\d+): collectives .*", line)
    if m:
        print("  " + m.group(0))
PY
