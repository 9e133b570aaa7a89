#!/usr/bin/env python3
"""Generate tests/fixtures/eval_metrics.json: reference values for the evaluation metrics of
src/eval (docs/method.md §5), computed with numpy, scikit-learn and scipy.

Usage (needs numpy, scikit-learn and scipy, e.g. in a venv outside the repo):

    python tools/make_eval_fixtures.py            # (re)writes tests/fixtures/eval_metrics.json

Everything is seeded, so reruns write the same file. Feature values are rounded to 4 decimals and
stored as float32, so the Rust side parses exactly the numbers the references were computed from.

Sections of the file:
  clustering  label vectors (truth, pred) with sklearn's NMI and AMI (arithmetic normalisation),
              ARI, and cluster accuracy (scipy linear_sum_assignment on the contingency matrix)
  internal    small feature sets + labels with sklearn's silhouette_score (euclidean) and
              davies_bouldin_score
  knn         train/test features + labels and the predictions of the §5.1 protocol written in
              numpy (train-set standardisation with torch's unbiased std + 1e-6, L2 rows, cosine
              top-k, exp(sim/tau) votes) for k = 1 and k = 10, tau = 0.07; queries within 1e-3 of
              a tie are dropped, so float32 arithmetic cannot flip a prediction
  logreg      a well-separated problem: raw features, the §5.3 preprocessing (row centering + row
              L2 norm, as cyanure's preprocess with columns=False), and sklearn's multinomial
              LogisticRegression(fit_intercept=False, C=1/(lambda*n), lbfgs) on the result:
              coefficients, test predictions and accuracy
"""

import json
import pathlib

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics
from sklearn.linear_model import LogisticRegression

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "eval_metrics.json"


def f32_list(x):
    """Rounded float32 values as short decimal strings parsed back to floats."""
    return [float(f"{v:.4f}") for v in np.asarray(x, dtype=np.float64).ravel()]


def as_stored(x):
    """The exact float32 array the Rust side will parse from `f32_list(x)`."""
    return np.array(f32_list(x), dtype=np.float32).reshape(np.shape(x))


def cluster_acc(truth, pred):
    c = metrics.cluster.contingency_matrix(truth, pred)
    rows, cols = linear_sum_assignment(c, maximize=True)
    return float(c[rows, cols].sum()) / len(truth)


def clustering_cases(rng):
    cases = []
    specs = [
        ("random_5x5", 200, 5, 5, 0.0),
        ("noisy_10x10", 300, 10, 10, 0.6),
        ("more_clusters_4x7", 150, 4, 7, 0.5),
        ("fewer_clusters_6x3", 120, 6, 3, 0.5),
        ("near_perfect_3x3", 90, 3, 3, 0.95),
    ]
    for name, n, n_true, n_pred, agree in specs:
        truth = rng.integers(0, n_true, n)
        pred = rng.integers(0, n_pred, n)
        keep = rng.random(n) < agree
        perm = rng.permutation(max(n_true, n_pred)) % n_pred
        pred[keep] = perm[truth[keep]]  # a relabelled (possibly merged) copy of the truth
        cases.append(label_case(name, truth, pred))
    truth = np.repeat(np.arange(4), 10)
    cases.append(label_case("identical_permuted", truth, (truth + 1) % 4))
    cases.append(label_case("sparse_ids", truth * 5 + 2, (truth * 3) % 4 + 10))
    return cases


def label_case(name, truth, pred):
    return {
        "name": name,
        "truth": [int(v) for v in truth],
        "pred": [int(v) for v in pred],
        "nmi": metrics.normalized_mutual_info_score(truth, pred),
        "ami": metrics.adjusted_mutual_info_score(truth, pred),
        "ari": metrics.adjusted_rand_score(truth, pred),
        "acc": cluster_acc(truth, pred),
    }


def internal_cases(rng):
    cases = []
    for name, n, dim, k, spread in [
        ("blobs_3_in_2d", 60, 2, 3, 0.8),
        ("overlapping_5_in_4d", 100, 4, 5, 2.5),
        ("singleton_cluster", 31, 3, 4, 1.0),
    ]:
        centers = rng.normal(0, 3, (k, dim))
        labels = rng.integers(0, k, n)
        if name == "singleton_cluster":
            labels = rng.integers(0, k - 1, n)
            labels[7] = k - 1  # one cluster of one sample: its silhouette is 0
        x = as_stored(centers[labels] + rng.normal(0, spread, (n, dim)))
        x64 = x.astype(np.float64)
        cases.append({
            "name": name,
            "dim": dim,
            "x": f32_list(x),
            "labels": [int(v) for v in labels],
            "silhouette": metrics.silhouette_score(x64, labels),
            "davies_bouldin": metrics.davies_bouldin_score(x64, labels),
        })
    return cases


def knn_reference(train, train_y, test, ks, tau, n_classes):
    """The §5.1 protocol in float64 numpy; returns predictions and per-query margins."""
    mean = train.mean(0, keepdims=True)
    std = train.std(0, ddof=1, keepdims=True) + 1e-6
    tr = (train - mean) / std
    te = (test - mean) / std
    tr /= np.maximum(np.linalg.norm(tr, axis=1, keepdims=True), 1e-12)
    te /= np.maximum(np.linalg.norm(te, axis=1, keepdims=True), 1e-12)
    sim = te @ tr.T
    order = np.argsort(-sim, axis=1, kind="stable")
    out, margin = {}, np.full(len(test), np.inf)
    for k in ks:
        idx = order[:, :k]
        s = np.take_along_axis(sim, idx, 1)
        nxt = np.take_along_axis(sim, order[:, k:k + 1], 1)[:, 0]
        margin = np.minimum(margin, s[:, -1] - nxt)  # the neighbour set is unambiguous
        w = np.zeros((len(test), n_classes))
        for j in range(k):
            w[np.arange(len(test)), train_y[idx[:, j]]] += np.exp(s[:, j] / tau)
        top2 = np.sort(w, axis=1)[:, -2:]
        margin = np.minimum(margin, (top2[:, 1] - top2[:, 0]) / top2[:, 1])  # so is the vote
        out[k] = np.argmax(w, axis=1)
    return out, margin


def knn_case(rng):
    """Queries whose neighbour sets or votes are within 1e-3 of a tie are dropped."""
    n_classes, dim, ks, tau = 5, 12, (1, 10), 0.07
    centers = rng.normal(0, 1.0, (n_classes, dim)) * rng.uniform(0.5, 3.0, dim)
    offset = rng.normal(0, 5.0, dim)  # standardisation matters
    scale = rng.uniform(0.5, 4.0, dim)
    ytr = rng.integers(0, n_classes, 200)
    yte = rng.integers(0, n_classes, 100)
    xtr = as_stored(offset + centers[ytr] + rng.normal(0, 1.2, (200, dim)) * scale)
    xte = as_stored(offset + centers[yte] + rng.normal(0, 1.2, (100, dim)) * scale)
    _, margin = knn_reference(xtr.astype(np.float64), ytr, xte.astype(np.float64),
                              ks, tau, n_classes)
    keep = margin > 1e-3
    xte, yte = xte[keep], yte[keep]
    preds, margin = knn_reference(xtr.astype(np.float64), ytr, xte.astype(np.float64),
                                  ks, tau, n_classes)
    assert len(yte) >= 60 and margin.min() > 1e-3
    return {
        "dim": dim,
        "n_classes": n_classes,
        "tau": tau,
        "train": f32_list(xtr),
        "train_labels": [int(v) for v in ytr],
        "test": f32_list(xte),
        "test_labels": [int(v) for v in yte],
        "predictions": {str(k): [int(v) for v in preds[k]] for k in ks},
        "accuracy": {str(k): float(np.mean(preds[k] == yte)) for k in ks},
        "min_margin": float(margin.min()),
    }


def preprocess(x):
    """Row centering + row L2 normalisation (cyanure preprocess, centering=True, columns=False)."""
    x = x - x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def logreg_case(rng):
    n_classes, dim, n_train, n_test, lam = 4, 10, 160, 80, 1e-3
    centers = rng.normal(0, 1.0, (n_classes, dim))
    ytr = np.repeat(np.arange(n_classes), n_train // n_classes)
    yte = rng.integers(0, n_classes, n_test)
    xtr = as_stored(centers[ytr] + rng.normal(0, 0.35, (n_train, dim)) + 2.0)
    xte = as_stored(centers[yte] + rng.normal(0, 0.35, (n_test, dim)) + 2.0)
    ptr, pte = preprocess(xtr.astype(np.float64)), preprocess(xte.astype(np.float64))
    clf = LogisticRegression(fit_intercept=False, C=1.0 / (lam * n_train), solver="lbfgs",
                             tol=1e-12, max_iter=100_000)
    clf.fit(ptr, ytr)
    scores = pte @ clf.coef_.T
    top2 = np.sort(scores, axis=1)[:, -2:]
    assert np.min(top2[:, 1] - top2[:, 0]) > 1e-3, "logistic-regression prediction too close"
    pred = np.argmax(scores, axis=1)
    return {
        "dim": dim,
        "n_classes": n_classes,
        "lambda": lam,
        "train": f32_list(xtr),
        "train_labels": [int(v) for v in ytr],
        "test": f32_list(xte),
        "test_labels": [int(v) for v in yte],
        "coef": [float(v) for v in clf.coef_.ravel()],  # [n_classes, dim] row-major
        "predictions": [int(v) for v in pred],
        "accuracy": float(np.mean(pred == yte)),
    }


def main():
    rng = np.random.default_rng(20240605)
    data = {
        "generator": "tools/make_eval_fixtures.py",
        "clustering": clustering_cases(rng),
        "internal": internal_cases(rng),
        "knn": knn_case(rng),
        "logreg": logreg_case(rng),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
