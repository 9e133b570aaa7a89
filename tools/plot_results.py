#!/usr/bin/env python3
"""The per-block kNN plot of RESULTS.md (docs/results_knn.png) from `mimr eval` results.

    python tools/plot_results.py RESULTS_DIR [docs/results_knn.png]

RESULTS_DIR holds the `eval-<dataset>-<variant>/results.json` that tools/run_results.sh writes
(datasets fmnist, cifar; variants mae, refined, init, control, lr16). Needs matplotlib.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VARIANTS = [
    ("mae", "MAE (mimr pretrain)", "tab:blue", "o-"),
    ("refined", "MAE + MIM-Refiner", "tab:red", "s-"),
    ("init", "random init", "tab:gray", "x--"),
    ("control", "random init + MIM-Refiner", "tab:orange", "^--"),
    ("lr16", "MAE + MIM-Refiner, 16× LR", "tab:purple", "d-"),
    ("control-lr16", "random init + MIM-Refiner, 16× LR", "tab:brown", "v--"),
]
DATASETS = [("fmnist", "Fashion-MNIST"), ("cifar", "CIFAR-10")]


def knn(path, k="k20"):
    with open(path) as f:
        rows = json.load(f)["blocks"]
    return [r["block"] for r in rows], [100 * r["knn"][k] for r in rows]


def main():
    root = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/results_knn.png"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, (ds, title) in zip(axes, DATASETS):
        for key, label, colour, style in VARIANTS:
            path = os.path.join(root, f"eval-{ds}-{key}", "results.json")
            if not os.path.exists(path):
                continue
            names, acc = knn(path)
            ax.plot(range(len(names)), acc, style, color=colour, label=label)
            ax.set_xticks(range(len(names)), [n if n != "final" else "final\n(norm)" for n in names])
        ax.set_title(f"{title}: kNN (k = 20) per block")
        ax.set_xlabel("block (0-indexed, raw output; final = after the last LayerNorm)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
