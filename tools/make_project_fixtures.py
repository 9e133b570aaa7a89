#!/usr/bin/env python3
"""Generate tests/fixtures/project_*.safetensors: references for src/view/project (the embedding
map's PCA, Procrustes alignment, cosine neighbours and t-SNE affinities/gradients), computed with
numpy, scipy and scikit-learn.

Usage (needs numpy, scipy, scikit-learn, safetensors; e.g. the repo's .venv):

    .venv/bin/python tools/make_project_fixtures.py     # (re)writes the four fixture files

Everything is seeded. Inputs are stored as float32 and every reference is computed in float64 from
exactly those float32 values; references are stored as float64.

  project_pca         x [400, 24] (anisotropic, shifted); scores [400, 2] from sklearn PCA
                      (svd_solver='full') with the crate's sign convention applied: each
                      component's largest-|loading| entry is positive
  project_procrustes  reference, moving [60, 2] (moving = noisy reflected/rotated/scaled/shifted
                      reference); aligned [60, 2] by the closed-form SVD solution (orthogonal
                      U Vᵀ of Mᵀ R, scale tr(S)/‖M‖², translation); disparity [1] from
                      scipy.spatial.procrustes
  project_cosine      x [300, 32] with row 11 = row 10 (an exact tie); queries [4]; for each query
                      the k = 10 most cosine-similar other rows (sim desc, index asc): top_index
                      [4, 10], top_sim [4, 10]
  project_tsne        x [200, 10] (3 blobs), perplexity [1] = 10; sklearn's kNN graph as t-SNE
                      builds it (k = min(n-1, int(3*perplexity+1)) = 31, euclidean, squared):
                      knn_index [200, 31], knn_sqdist [200, 31] (float32); the joint P of
                      sklearn.manifold._t_sne._joint_probabilities_nn as CSR with sorted columns:
                      p_indptr, p_indices, p_values; a random embedding y [200, 2] and at it
                      sklearn's exact gradient grad_exact [200, 2] and KL divergence kl [1]
                      (_kl_divergence on the dense P), and its Barnes–Hut gradient at angle 0.5
                      grad_bh [200, 2] (_kl_divergence_bh)
"""

import pathlib

import numpy as np
from safetensors.numpy import save_file
from scipy.spatial import procrustes
from scipy.spatial.distance import squareform
from sklearn.decomposition import PCA
from sklearn.manifold._t_sne import _joint_probabilities_nn, _kl_divergence, _kl_divergence_bh
from sklearn.neighbors import NearestNeighbors

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def save(name, tensors):
    path = OUT / f"project_{name}.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    print(f"{path.name}: {path.stat().st_size} bytes")


def pca_fixture(rng):
    n, d = 400, 24
    scales = np.array([6.0, 3.5, 2.0] + [1.0 - 0.03 * i for i in range(d - 3)])
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = ((rng.normal(size=(n, d)) * scales) @ q.T + rng.normal(size=d) * 5).astype(np.float32)
    pca = PCA(n_components=2, svd_solver="full").fit(x.astype(np.float64))
    comps = pca.components_.copy()
    for c in comps:
        if c[np.argmax(np.abs(c))] < 0:  # argmax: the first of equal |entries|
            c *= -1
    scores = (x.astype(np.float64) - pca.mean_) @ comps.T
    save("pca", {"x": x, "scores": scores})


def procrustes_fixture(rng):
    ref = rng.normal(size=(60, 2)).astype(np.float32) * 3
    a = 0.7
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    refl = np.array([[1.0, 0.0], [0.0, -1.0]])
    moving = 2.5 * ref.astype(np.float64) @ rot @ refl + np.array([4.0, -1.0])
    moving = (moving + rng.normal(size=moving.shape) * 0.3).astype(np.float32)
    r, m = ref.astype(np.float64), moving.astype(np.float64)
    mr, mm = r.mean(0), m.mean(0)
    rc, mc = r - mr, m - mm
    u, s, vt = np.linalg.svd(mc.T @ rc)
    aligned = s.sum() / (mc**2).sum() * mc @ (u @ vt) + mr
    _, _, disparity = procrustes(r, m)
    save("procrustes", {"reference": ref, "moving": moving, "aligned": aligned,
                        "disparity": np.array([disparity])})


def cosine_fixture(rng):
    x = rng.normal(size=(300, 32)).astype(np.float32)
    x[11] = x[10]
    queries = np.array([0, 10, 37, 299], dtype=np.int64)
    k = 10
    x64 = x.astype(np.float64)
    unit = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    top_index, top_sim = [], []
    for q in queries:
        sim = unit @ unit[q]
        idx = np.array([j for j in range(len(x)) if j != q])
        order = idx[np.lexsort((idx, -sim[idx]))][: k + 1]
        gaps = -np.diff(sim[order])
        exact_ties = np.all(x[order[:-1]] == x[order[1:]], axis=1)
        assert np.all((gaps > 1e-5) | exact_ties), f"near tie for query {q}"
        top_index.append(order[:k])
        top_sim.append(sim[order[:k]])
    save("cosine", {"x": x, "queries": queries, "top_index": np.array(top_index, dtype=np.int64),
                    "top_sim": np.array(top_sim)})


def tsne_fixture(rng):
    n, d, perplexity = 200, 10, 10.0
    centres = rng.normal(size=(3, d)) * 4
    x = (centres[rng.integers(0, 3, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    k = min(n - 1, int(3.0 * perplexity + 1))
    graph = NearestNeighbors(n_neighbors=k, metric="euclidean").fit(x).kneighbors_graph(
        mode="distance")
    graph.data **= 2
    dist, index = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()
    p = _joint_probabilities_nn(graph.copy(), perplexity, 0).tocsr()
    p.sort_indices()
    y = (rng.normal(size=(n, 2)) * 3).astype(np.float32)
    params = y.astype(np.float64).ravel()
    kl, grad_exact = _kl_divergence(params, squareform(p.toarray(), checks=False), 1, n, 2)
    _, grad_bh = _kl_divergence_bh(params.astype(np.float32), p, 1, n, 2, angle=0.5)
    save("tsne", {
        "x": x, "perplexity": np.array([perplexity]),
        "knn_index": index.astype(np.int64), "knn_sqdist": (dist**2).astype(np.float32),
        "p_indptr": p.indptr.astype(np.int64), "p_indices": p.indices.astype(np.int64),
        "p_values": p.data.astype(np.float64), "y": y,
        "grad_exact": grad_exact.reshape(n, 2), "kl": np.array([kl]),
        "grad_bh": grad_bh.reshape(n, 2).astype(np.float64),
    })


def main():
    rng = np.random.default_rng(20240607)
    pca_fixture(rng)
    procrustes_fixture(rng)
    cosine_fixture(rng)
    tsne_fixture(rng)


if __name__ == "__main__":
    main()
