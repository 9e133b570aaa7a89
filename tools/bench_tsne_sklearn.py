"""Reference for `mimr bench map --project N`: scikit-learn's Barnes-Hut t-SNE (and PCA, k-means)
on N points of width D in ten Gaussian clusters, 2 threads, the same settings as mimr's defaults
(perplexity 30, theta 0.5, 750 iterations, PCA init, learning rate 'auto', exaggeration 12)."""
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
d = int(sys.argv[2]) if len(sys.argv) > 2 else 384
rng = np.random.default_rng(7)
centres = 4.0 * rng.standard_normal((10, d)).astype(np.float32)
x = centres[np.arange(n) % 10] + rng.standard_normal((n, d)).astype(np.float32)


def timed(name, f):
    t = time.perf_counter()
    f()
    print(f"sklearn {name} of {n} points x {d}: {time.perf_counter() - t:.2f} s")


timed("PCA", lambda: PCA(2).fit_transform(x))
timed("k-means (k = 10)", lambda: KMeans(10, n_init=1, max_iter=100, random_state=0).fit(x))
timed(
    "t-SNE (Barnes-Hut, 750 iterations)",
    lambda: TSNE(2, perplexity=30, angle=0.5, max_iter=750, init="pca",
                 learning_rate="auto", early_exaggeration=12, n_jobs=2,
                 random_state=0).fit_transform(x),
)
