"""PyTorch's f32 matrix products on the shapes of `reins bench --only gemm` (2 threads):
a square 2048^3 product (the machine's peak) and, for each linear layer of the training step
(rows = batch x tokens), the forward x·Wᵀ, the input gradient dY·W and the weight gradient dYᵀ·x.

    python torch_gemm_shapes.py                 # reference shape: rows 1024, d 256, MLP 1024, vocab 4096
    python torch_gemm_shapes.py 2048 896 4864 32000   # the qwen2-0.5b shape"""
import statistics, sys, time, torch
torch.set_num_threads(2)
rows, d, ff, v = (int(a) for a in sys.argv[1:5]) if len(sys.argv) > 4 else (1024, 256, 1024, 4096)
cases = [(2048, 2048, 2048)] + [(rows, i, o) for i, o in [(d, d), (d, ff), (ff, d), (d, v)]]
torch.manual_seed(0)
for m, k, n in cases:
    x, w, dy = torch.rand(m, k) - 0.5, torch.rand(n, k) - 0.5, torch.rand(m, n) - 0.5
    for name, f in [("x·Wᵀ", lambda: x @ w.t()), ("dY·W", lambda: dy @ w), ("dYᵀ·x", lambda: dy.t() @ x)]:
        f()
        ts = []
        for _ in range(5):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        print(f"{name} {m}x{k}x{n}".ljust(28), f"{2 * m * k * n / statistics.median(ts) / 1e9:8.1f}")
