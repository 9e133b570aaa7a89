#!/usr/bin/env bash
# The runs and evaluations behind RESULTS.md, stage by stage; each command's wall time goes to
# $OUT/times.txt. Usage:
#   MIMR=path/to/mimr CIFAR=/path/to/cifar10-jpg OUT=runs/results bash tools/run_results.sh STAGE
# STAGE, in order: fmnist-pretrain (makes assets/demo_mae.safetensors: its run dir's
# encoder.safetensors, copied there) | fmnist-init | fmnist-refine | fmnist-control |
# cifar-pretrain | cifar-init | cifar-refine | cifar-control | cifar-refine-lr16 |
# cifar-control-lr16 | eval-fmnist | eval-cifar
# CIFAR-10 is the ImageFolder JPEG version (train/<class>/*.jpg, test/<class>/*.jpg); it is not
# part of mimr. Fashion-MNIST comes from `apt-get install dataset-fashion-mnist`.
set -euo pipefail
MIMR=$(realpath -m "${MIMR:-target/release/mimr}")
CIFAR=$(realpath -m "${CIFAR:-/tmp/cifar}")
OUT=$(realpath -m "${OUT:-runs/results}")
cd "$(dirname "$0")/.."
FMNIST=/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"

timed() { # name, command…
    local name=$1 start end
    shift
    start=$(date +%s)
    "$@"
    end=$(date +%s)
    echo "$name $((end - start)) s: $*" >>"$OUT/times.txt"
}

# the normalisation each model was trained with (data.views.mean/std of its configs)
FMNIST_NORM=(--mean 0.2860,0.2860,0.2860 --std 0.3530,0.3530,0.3530)
CIFAR_NORM=(--mean 0.4914,0.4822,0.4465 --std 0.2470,0.2435,0.2616)

# kNN and k-means of every block, the linear probe (50 epochs) of the last block and the
# final-norm output, on 10 000 training images (bank / probe training) and 10 000 test images
eval_all() { # name, checkpoint, dataset, normalisation…
    local name=$1 ckpt=$2 data=$3
    shift 3
    timed "eval-$name" "$MIMR" eval "$ckpt" --data "$data" --blocks all --final-norm \
        --protocols knn,cluster --train-limit 10000 --test-limit 10000 \
        --device cpu "$@" --out "$OUT/eval-$name"
    timed "probe-$name" "$MIMR" eval "$ckpt" --data "$data" --blocks last --final-norm \
        --protocols probe --train-limit 10000 --test-limit 10000 \
        --device cpu "$@" --out "$OUT/probe-$name"
}

# the CIFAR-10 refinement of an encoder under $OUT into run dir $OUT/<dir>, with extra --set flags
cifar_refine() { # name, encoder (relative to $OUT), run dir (relative to $OUT), extra flags…
    local name=$1 ckpt=$2 dir=$3
    shift 3
    timed "$name" "$MIMR" refine --config configs/cifar10_refine.toml \
        --set "data.train=\"$CIFAR\"" --set "model.checkpoint=\"$OUT/$ckpt\"" \
        --set "run.dir=\"$OUT/$dir\"" "$@"
}

# the learning-rate test: the paper's absolute peaks at batch 64 (16× the per-256 scaling)
LR16=(--set stage2.base_lr=3.2e-3 --set stage3.base_lr=6.4e-3)

case ${1:-} in
fmnist-pretrain)
    timed fmnist-pretrain "$MIMR" pretrain --config configs/demo_mae.toml \
        --set "run.dir=\"$OUT/demo_mae\"" ;;
fmnist-init)
    "$MIMR" pretrain --config configs/demo_mae.toml --init-only "$OUT/init_fmnist.safetensors" ;;
fmnist-refine)
    timed fmnist-refine "$MIMR" refine --config configs/demo.toml \
        --set "model.checkpoint=\"$PWD/assets/demo_mae.safetensors\"" \
        --set "run.dir=\"$OUT/demo\"" --set 'run.device="cpu"' ;;
fmnist-control)
    timed fmnist-control "$MIMR" refine --config configs/demo.toml \
        --set "model.checkpoint=\"$OUT/init_fmnist.safetensors\"" \
        --set "run.dir=\"$OUT/demo_control\"" --set 'run.device="cpu"' ;;
cifar-pretrain)
    timed cifar-pretrain "$MIMR" pretrain --config configs/mae_cifar10.toml \
        --set "data.train=\"$CIFAR\"" --set "run.dir=\"$OUT/mae_cifar10\"" ;;
cifar-init)
    "$MIMR" pretrain --config configs/mae_cifar10.toml --set "data.train=\"$CIFAR\"" \
        --init-only "$OUT/init_cifar10.safetensors" ;;
cifar-refine)
    cifar_refine cifar-refine mae_cifar10/encoder.safetensors cifar10_refine ;;
cifar-control)
    cifar_refine cifar-control init_cifar10.safetensors cifar10_control ;;
cifar-refine-lr16)
    cifar_refine cifar-refine-lr16 mae_cifar10/encoder.safetensors cifar10_lr16 "${LR16[@]}" ;;
cifar-control-lr16)
    cifar_refine cifar-control-lr16 init_cifar10.safetensors cifar10_control_lr16 "${LR16[@]}" ;;
eval-fmnist)
    eval_all fmnist-mae assets/demo_mae.safetensors "$FMNIST" "${FMNIST_NORM[@]}"
    eval_all fmnist-refined "$OUT/demo/encoder_ema.safetensors" "$FMNIST" "${FMNIST_NORM[@]}"
    eval_all fmnist-init "$OUT/init_fmnist.safetensors" "$FMNIST" "${FMNIST_NORM[@]}"
    eval_all fmnist-control "$OUT/demo_control/encoder_ema.safetensors" "$FMNIST" "${FMNIST_NORM[@]}" ;;
eval-cifar)
    eval_all cifar-mae "$OUT/mae_cifar10/encoder.safetensors" "$CIFAR" "${CIFAR_NORM[@]}"
    eval_all cifar-refined "$OUT/cifar10_refine/encoder_ema.safetensors" "$CIFAR" "${CIFAR_NORM[@]}"
    eval_all cifar-init "$OUT/init_cifar10.safetensors" "$CIFAR" "${CIFAR_NORM[@]}"
    eval_all cifar-control "$OUT/cifar10_control/encoder_ema.safetensors" "$CIFAR" "${CIFAR_NORM[@]}"
    eval_all cifar-lr16 "$OUT/cifar10_lr16/encoder_ema.safetensors" "$CIFAR" "${CIFAR_NORM[@]}"
    eval_all cifar-control-lr16 "$OUT/cifar10_control_lr16/encoder_ema.safetensors" "$CIFAR" "${CIFAR_NORM[@]}" ;;
*)
    echo "usage: bash tools/run_results.sh fmnist-pretrain|fmnist-init|fmnist-refine|fmnist-control|cifar-pretrain|cifar-init|cifar-refine|cifar-control|cifar-refine-lr16|cifar-control-lr16|eval-fmnist|eval-cifar" >&2
    exit 2 ;;
esac
