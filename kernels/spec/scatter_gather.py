"""Twins of ``tosaint.kernels.scatter_gather`` transcribed from GATHER.tosac / SCATTER.tosac."""
import numpy as np

__all__ = ["gather", "scatter"]


def gather(values, indices):
    N, K, C = values.shape
    W = indices.shape[1]
    output = np.zeros((N, W, C), dtype=values.dtype)
    bad = 0
    for n in range(N):
        for w in range(W):
            k = int(indices[n, w])
            if not (0 <= k < K):          # REQUIRE(0 <= k && k < K)
                bad += 1
                continue
            for c in range(C):
                output[n, w, c] = values[n, k, c]
    return output, bad


def scatter(values_in, indices, input):
    N, K, C = values_in.shape
    W = indices.shape[1]
    values_out = np.zeros((N, K, C), dtype=values_in.dtype)
    output_modified = np.zeros((N, K, C), dtype=bool)
    for n in range(N):
        for k in range(K):
            for c in range(C):
                values_out[n, k, c] = values_in[n, k, c]
                output_modified[n, k, c] = False
    bad = dup = 0
    for n in range(N):
        for w in range(W):
            k = int(indices[n, w])
            if not (0 <= k < K):          # REQUIRE(0 <= k && k < K)
                bad += 1
                continue
            if output_modified[n, k, 0] if C else False:   # REQUIRE(!output_modified[n,k,c])
                dup += 1
            for c in range(C):
                values_out[n, k, c] = input[n, w, c]
                output_modified[n, k, c] = True
    return values_out, bad, dup
