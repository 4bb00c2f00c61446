"""Winograd F(m x m, 3x3)'s transforms (Lavin & Gray 2016), in numpy: what every Winograd method shares, whatever
its layout or backend.

With BT (alpha x alpha), G (alpha x 3) and AT (m x alpha), alpha = m + 2, the correlation of an alpha x alpha patch
d with a 3x3 kernel g is the m x m tile AT [(G g G^T) * (BT d BT^T)] AT^T; summed over input channels, the
elementwise products are alpha^2 GEMMs of the transformed weights V and inputs U.
"""

from __future__ import annotations

import numpy as np

#: the 1-D transforms for each output tile size m (points 0, +-1, +-2, inf), in float64: AT[(G g) * (BT d)] is
#: the correlation of d (alpha,) with g (3,). The kernels apply BT and AT with their coefficients written out.
BT = {
    2: np.array([[1, 0, -1, 0],
                 [0, 1, 1, 0],
                 [0, -1, 1, 0],
                 [0, 1, 0, -1]], np.float64),
    4: np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], np.float64),
}
G = {
    2: np.array([[1, 0, 0],
                 [1 / 2, 1 / 2, 1 / 2],
                 [1 / 2, -1 / 2, 1 / 2],
                 [0, 0, 1]], np.float64),
    4: np.array([[1 / 4, 0, 0],
                 [-1 / 6, -1 / 6, -1 / 6],
                 [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6],
                 [1 / 24, -1 / 12, 1 / 6],
                 [0, 0, 1]], np.float64),
}
AT = {
    2: np.array([[1, 1, 1, 0],
                 [0, 1, -1, -1]], np.float64),
    4: np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], np.float64),
}

#: G (x) G per m and dtype: [(a, b), (r, s)] = G[a, r] G[b, s], the weight transform as one matrix
GG = {m: {np.dtype(t): np.kron(g, g).astype(t) for t in (np.float32, np.float64)} for m, g in G.items()}

#: extra elements between the alpha^2 planes of U and M in a kernel's scratch, so that the rows one transform
#: touches (a plane apart) are not all a multiple of 4 KiB apart
SKEW = 16


def weight_transform(w: np.ndarray, m: int, v: np.ndarray) -> np.ndarray:
    """w (K, C, 3, 3) -> v (alpha^2, K, C) = G w[k, c] G^T per (k, c), as one GEMM (G (x) G) . w^T in w's dtype."""
    k, c = w.shape[:2]
    gg = GG[m][w.dtype]
    np.matmul(gg, w.reshape(k * c, 9).T, out=v.reshape(gg.shape[0], k * c))
    return v
