#!/usr/bin/env bash
# Records tests/fixtures/run_small: a real, small `mimr refine` run (the debug ViT on 512
# Fashion-MNIST images, 32 steps, an online evaluation per epoch, snapshots) for the app's tests.
# Checkpoints and the exported encoder are dropped to keep it small; the run log, config,
# thumbnails and snapshots stay. Needs: apt-get install dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/run_small
rm -rf "$out"
cargo run --locked --quiet -- refine --config configs/cpu_fashion_mnist.toml \
  --set "run.dir=\"$PWD/$out\"" --set 'run.device="cpu"' --set 'data.limit=512' \
  --set 'stage2.epochs=1' --set 'stage3.epochs=3' --set 'heads.blocks=[0, 1]' \
  --set 'heads.queue_size=256' --set 'run.log_every=1' --set 'run.snapshot_every=8' \
  --set 'run.probe_size=64' --set 'run.ema_momentum=0.9' --set 'eval.train_size=400' \
  --set 'eval.test_size=200'
rm -rf "$out/checkpoints" "$out/run.lock" "$out/encoder_ema.safetensors"
du -sh "$out"
