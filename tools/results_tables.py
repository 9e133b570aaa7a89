#!/usr/bin/env python3
"""RESULTS.md's tables from `mimr eval` results (tools/run_results.sh's eval-* folders).

    python tools/results_tables.py RESULTS_DIR

Per dataset (fmnist, cifar): kNN (k = 20) of every block for each variant (mae, refined, init,
control, lr16), then linear probe and k-means ACC/NMI at the last block and at the final-norm output.
Standard library only.
"""
import json
import os
import sys

VARIANTS = [("mae", "MAE"), ("refined", "MAE + refiner"), ("init", "random init"),
            ("control", "random init + refiner"), ("lr16", "MAE + refiner, 16× LR"),
            ("control-lr16", "random init + refiner, 16× LR")]


def load(root, ds, key):
    """Rows by block of eval-<ds>-<key>, with probe-<ds>-<key>'s probe results merged in."""
    rows = {}
    for kind in ["eval", "probe"]:
        path = os.path.join(root, f"{kind}-{ds}-{key}", "results.json")
        if os.path.exists(path):
            with open(path) as f:
                for r in json.load(f)["blocks"]:
                    rows.setdefault(r["block"], {}).update(r)
    return rows or None


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def table(root, ds):
    runs = [(label, load(root, ds, key)) for key, label in VARIANTS]
    runs = [(label, r) for label, r in runs if r]
    if not runs:
        return ""
    blocks = [b for b in runs[0][1] if "knn" in runs[0][1][b]]
    out = ["| block | " + " | ".join(label for label, _ in runs) + " |",
           "|---|" + "---|" * len(runs)]
    for b in blocks:
        cells = [pct(r[b]["knn"].get("k20")) for _, r in runs]
        out.append(f"| {b} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("| metric (block) | " + " | ".join(label for label, _ in runs) + " |")
    out.append("|---|" + "---|" * len(runs))
    last = blocks[-2] if blocks[-1] == "final" else blocks[-1]
    for b in [last, "final"]:
        for name, get in [("linear probe", lambda r: r.get("probe", {}).get("best_accuracy")),
                          ("k-means ACC", lambda r: r.get("cluster", {}).get("acc")),
                          ("k-means NMI", lambda r: r.get("cluster", {}).get("nmi"))]:
            cells = [pct(get(r[b])) if b in r else "–" for _, r in runs]
            out.append(f"| {name} ({b}) | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    root = sys.argv[1]
    for ds, title in [("fmnist", "Fashion-MNIST"), ("cifar", "CIFAR-10")]:
        t = table(root, ds)
        if t:
            print(f"## {title}\n\n{t}\n")


if __name__ == "__main__":
    main()
