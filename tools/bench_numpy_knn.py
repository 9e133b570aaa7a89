"""kNN of random features (50k train x 10k test x 256-d, 10 classes, k = 10, tau = 0.07) in
numpy and PyTorch on the CPU, with the same protocol as mimr (method.md §5.1): train-set
standardisation, L2 normalisation, cosine top-k, exp(sim/tau) voting.

Run: python tools/bench_numpy_knn.py   (needs numpy; torch optional). Compare with
`mimr bench knn`.
"""
import time

import numpy as np

N_TRAIN, N_TEST, DIM, K, TAU, CHUNK = 50000, 10000, 256, 10, 0.07, 1024


def feats(rng, n):
    labels = rng.integers(0, 10, n)
    mean = np.zeros((n, DIM), np.float32)
    for c in range(10):
        mean[labels == c, c::10] = 0.5
    return mean + rng.standard_normal((n, DIM), dtype=np.float32), labels


def knn(xtr, ytr, xte):
    mu, sd = xtr.mean(0), xtr.std(0, ddof=1) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    xtr /= np.linalg.norm(xtr, axis=1, keepdims=True)
    xte /= np.linalg.norm(xte, axis=1, keepdims=True)
    pred = np.empty(len(xte), np.int64)
    for s in range(0, len(xte), CHUNK):
        sim = xte[s:s + CHUNK] @ xtr.T
        idx = np.argpartition(-sim, K, axis=1)[:, :K]
        w = np.exp(np.take_along_axis(sim, idx, 1) / TAU)
        votes = np.zeros((len(idx), 10))
        np.add.at(votes, (np.arange(len(idx))[:, None], ytr[idx]), w)
        pred[s:s + CHUNK] = votes.argmax(1)
    return pred


def main():
    rng = np.random.default_rng(0)
    xtr, ytr = feats(rng, N_TRAIN)
    xte, yte = feats(rng, N_TEST)
    t = time.perf_counter()
    pred = knn(xtr, ytr, xte)
    dt = time.perf_counter() - t
    print(f"numpy {np.__version__}: {dt:.2f} s ({N_TEST / dt:.0f} queries/s), accuracy {(pred == yte).mean():.4f}")
    try:
        import torch
        tr, te = torch.from_numpy(xtr), torch.from_numpy(xte)
        t = time.perf_counter()
        mu, sd = tr.mean(0), tr.std(0) + 1e-6
        tr, te = torch.nn.functional.normalize((tr - mu) / sd), torch.nn.functional.normalize((te - mu) / sd)
        ytr_t = torch.from_numpy(ytr)
        preds = []
        for s in range(0, len(te), CHUNK):
            sim, idx = (te[s:s + CHUNK] @ tr.T).topk(K, dim=1)
            votes = torch.zeros(len(idx), 10).scatter_add_(1, ytr_t[idx], (sim / TAU).exp())
            preds.append(votes.argmax(1))
        dt = time.perf_counter() - t
        acc = (torch.cat(preds).numpy() == yte).mean()
        print(f"torch {torch.__version__} ({torch.get_num_threads()} threads): {dt:.2f} s ({N_TEST / dt:.0f} queries/s), accuracy {acc:.4f}")
    except ImportError:
        print("torch not installed: skipped")


if __name__ == "__main__":
    main()
