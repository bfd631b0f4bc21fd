"""The Triton kernel of ``sgd_triton.py``: each program runs the per-rating SGD update over its run of ratings."""

import triton
import triton.language as tl


@triton.jit
def sgd_runs(users, items, ratings, P, Q, bu, bi, sq, n, run, lr, keep, lo, span,
             K: tl.constexpr, KP: tl.constexpr, SIGMOID: tl.constexpr, BIAS: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # 64-bit positions: more than 2**31 ratings fit on a big GPU
    start = pid * run
    end = tl.minimum(start + run, n)
    f = tl.arange(0, KP)
    lanes = f < K
    total = tl.cast(0.0, tl.float64)  # the run's squared errors, summed without float32 rounding
    for j in range(start, end):
        u = tl.load(users + j).to(tl.int64)
        i = tl.load(items + j).to(tl.int64)
        pu = tl.load(P + u * K + f, mask=lanes, other=0.0)
        qi = tl.load(Q + i * K + f, mask=lanes, other=0.0)
        r = tl.load(ratings + j)
        if BIAS:  # loaded beside the rows, so that one memory latency covers all four loads
            b_u = tl.load(bu + u)
            b_i = tl.load(bi + i)
        z = tl.sum(pu * qi, axis=0)
        if BIAS:
            z += b_u + b_i
        if SIGMOID:
            s = tl.sigmoid(z)
            err = lo + span * s - r
            g = err * span * s * (1.0 - s)
        else:
            err = z - r
            g = err
        total += (err * err).to(tl.float64)
        if BIAS:
            tl.store(bu + u, keep * b_u - lr * g)
            tl.store(bi + i, keep * b_i - lr * g)
        lg = lr * g
        tl.store(P + u * K + f, keep * pu - lg * qi, mask=lanes)
        tl.store(Q + i * K + f, keep * qi - lg * pu, mask=lanes)
    tl.store(sq + pid, total)
