"""Reference trajectory for reins-train AdamW + clipping: torch.optim.AdamW (single-tensor
path, foreach=False as on CPU) and torch.nn.utils.clip_grad_norm_, transcribed in numpy
float32 with torch's operation order. Run: python gen_adamw.py > adamw.json"""
import json
import numpy as np
f32 = np.float32
rng = np.random.default_rng(7)
shapes = {"w": (3, 4), "b": (5,)}
params = {k: rng.standard_normal(s).astype(f32) for k, s in shapes.items()}
init = {k: v.tolist() for k, v in params.items()}
beta1, beta2, eps, wd, max_norm = 0.9, 0.999, 1e-8, 0.1, 1.0
lrs = [1e-2, 8e-3, 5e-3, 3e-3, 1e-3]
m = {k: np.zeros(s, f32) for k, s in shapes.items()}
v = {k: np.zeros(s, f32) for k, s in shapes.items()}
steps = []
for t, lr in enumerate(lrs, start=1):
    scale = 3.0 if t % 2 else 0.2  # steps that clip and steps that do not
    grads = {k: (scale * rng.standard_normal(s)).astype(f32) for k, s in shapes.items()}
    norms = [f32(np.sqrt(np.sum(g.astype(np.float64) ** 2))) for g in grads.values()]
    total = f32(np.sqrt(np.sum(np.array(norms, np.float64) ** 2)))
    coef = min(f32(max_norm) / (total + f32(1e-6)), f32(1.0))
    bc1 = 1 - beta1 ** t; bc2 = 1 - beta2 ** t
    step_size = lr / bc1; bc2_sqrt = bc2 ** 0.5
    for k in shapes:
        g = grads[k] * f32(coef)
        p = params[k] * f32(1 - lr * wd)
        m[k] = m[k] + f32(1 - beta1) * (g - m[k])
        v[k] = v[k] * f32(beta2) + f32(1 - beta2) * (g * g)
        denom = np.sqrt(v[k]) / f32(bc2_sqrt) + f32(eps)
        params[k] = p + (f32(-step_size) * m[k]) / denom
    steps.append(dict(lr=lr, grads={k: g.tolist() for k, g in grads.items()}, total_norm=float(total),
                      clip_coef=float(coef), params={k: p.tolist() for k, p in params.items()},
                      exp_avg={k: x.tolist() for k, x in m.items()}, exp_avg_sq={k: x.tolist() for k, x in v.items()}))
print(json.dumps(dict(config=dict(beta1=beta1, beta2=beta2, eps=eps, weight_decay=wd, max_norm=max_norm),
                      init=init, steps=steps)))
