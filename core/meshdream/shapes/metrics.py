"""Set-to-set metrics of the point-cloud generation literature (PointFlow, PVD, LION): 1-NNA, COV and MMD.

Distances between two clouds: Chamfer (CD: mean squared distance to the nearest point, both ways, summed) and
Earth Mover's (EMD: mean distance under the optimal one-to-one matching, here on random subsets of each cloud,
since exact matching of 2048 points is cubic). 1-NNA: leave-one-out 1-nearest-neighbour accuracy telling
generated from reference clouds: 50% means indistinguishable, 100% trivially separable (it penalizes poor
quality and poor diversity alike). COV: share of reference clouds that are some generated cloud's nearest
reference (diversity). MMD: mean distance from each reference cloud to its nearest generated one (fidelity).
"""

from __future__ import annotations

import numpy as np


def chamfer_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Chamfer distances between clouds a (A, N, 3) and b (B, M, 3): one k-d tree per cloud,
    queried with every point of the other set at once (a dense N x M distance block per pair is ~50x slower)."""
    from scipy.spatial import cKDTree

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    flat_a, flat_b = a.reshape(-1, 3), b.reshape(-1, 3)
    a_to_b = np.stack([cKDTree(y).query(flat_a)[0].reshape(len(a), -1) for y in b], 1)  # (A, B, N)
    b_to_a = np.stack([cKDTree(x).query(flat_b)[0].reshape(len(b), -1) for x in a], 0)  # (A, B, M)
    return (a_to_b**2).mean(-1) + (b_to_a**2).mean(-1)


def subsample(clouds: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A random n-point subset of every cloud (each cloud subsampled once, then used in every comparison)."""
    rng = np.random.default_rng(seed)
    n = min(n, clouds.shape[1])
    return np.stack([c[rng.choice(len(c), n, replace=False)] for c in clouds])


def emd_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) EMDs between equal-size clouds (exact assignment; cubic in the points, so subsample).
    With b the same array as a, only one triangle is computed."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    same = a is b
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a):
        for j in range(i + 1 if same else 0, len(b)):
            cost = cdist(x, b[j])
            r, c = linear_sum_assignment(cost)
            out[i, j] = cost[r, c].mean()
    return out + out.T if same else out


def one_nna(d_rr: np.ndarray, d_gg: np.ndarray, d_gr: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy (0..1) over reference (n) and generated (m) clouds."""
    n, m = len(d_rr), len(d_gg)
    full = np.block([[d_rr, d_gr.T], [d_gr, d_gg]]).astype(np.float64)
    np.fill_diagonal(full, np.inf)
    is_gen = np.r_[np.zeros(n, bool), np.ones(m, bool)]
    return float((is_gen[full.argmin(1)] == is_gen).mean())


def coverage(d_gr: np.ndarray) -> float:
    """Share of reference clouds matched as the nearest reference of at least one generated cloud."""
    return float(len(np.unique(d_gr.argmin(1))) / d_gr.shape[1])


def mmd(d_gr: np.ndarray) -> float:
    """Mean over reference clouds of the distance to the nearest generated cloud."""
    return float(d_gr.min(0).mean())


def compare(
    gen: np.ndarray,
    ref: np.ndarray,
    d_rr: np.ndarray | None = None,
    emd_points: int = 0,
    e_rr: np.ndarray | None = None,
) -> dict:
    """1-NNA / COV / MMD with CD (and with EMD on `emd_points`-point subsets when > 0) of generated clouds against
    reference clouds, both normalized alike. Pass the reference-to-reference matrices (`d_rr`, and `e_rr` from
    `emd_matrix(subsample(ref, emd_points), ...)`) when comparing several generated sets to one reference."""
    d_rr = chamfer_matrix(ref, ref) if d_rr is None else d_rr
    d_gr = chamfer_matrix(gen, ref)
    out = {
        "1nna_cd_pct": 100 * one_nna(d_rr, chamfer_matrix(gen, gen), d_gr),
        "cov_cd_pct": 100 * coverage(d_gr),
        "mmd_cd_e3": 1e3 * mmd(d_gr),
    }
    if emd_points:
        sub_r, sub_g = subsample(ref, emd_points), subsample(gen, emd_points, seed=1)
        e_rr = emd_matrix(sub_r, sub_r) if e_rr is None else e_rr
        e_gr = emd_matrix(sub_g, sub_r)
        out.update(
            {
                "1nna_emd_pct": 100 * one_nna(e_rr, emd_matrix(sub_g, sub_g), e_gr),
                "cov_emd_pct": 100 * coverage(e_gr),
                "mmd_emd_e2": 1e2 * mmd(e_gr),
            }
        )
    return {k: round(v, 2) for k, v in out.items()}
