"""Reference numbers for reins-train DPO losses: a literal numpy transcription of
TRL 1.16 `DPOTrainer._compute_loss` (trl/trainer/dpo_trainer.py). float64.
Run: python gen_dpo.py > dpo_losses.json  (numpy only; documentation, not a dependency)."""
import json, math
import numpy as np

rng = np.random.default_rng(1234)
B = 6
ref_c = -40.0 + 10 * rng.standard_normal(B)
ref_r = -35.0 + 10 * rng.standard_normal(B)
pol_c = ref_c + 6 * rng.standard_normal(B)
pol_r = ref_r + 6 * rng.standard_normal(B)
len_c = rng.integers(3, 20, B).astype(float)
len_r = rng.integers(3, 20, B).astype(float)
sft_nll = 2.345
wpo = np.exp(-rng.random(B))

def logsig(x): return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
def sig(x): return 1 / (1 + np.exp(-x))

def scores(lr, f, a):
    if f == "reverse_kl": return lr
    if f == "forward_kl": return 1 - np.exp(-lr)
    if f == "js_divergence": return math.log(2) + logsig(lr)
    if f == "alpha_divergence":
        if abs(a - 1) < 1e-6: return lr
        return (np.exp(np.minimum((a - 1) * lr, 80.0)) - 1) / (a - 1)

def dpo(types, weights, beta, ls, f, a, tau, use_w):
    clr = pol_c - ref_c; rlr = pol_r - ref_r
    cs = scores(clr, f, a); rs = scores(rlr, f, a); d = cs - rs
    total = np.zeros(B)
    for t, w in zip(types, weights):
        if t == "sigmoid": l = -logsig(beta * d)
        elif t == "hinge": l = np.maximum(0, 1 - beta * d)
        elif t == "ipo":
            q = cs / np.maximum(len_c, 1) - rs / np.maximum(len_r, 1); l = (q - 1 / (2 * beta)) ** 2
        elif t == "exo_pair":
            e = ls; bd = beta * d
            l = sig(bd) * (logsig(bd) - np.log1p(-e)) + sig(-bd) * (logsig(-bd) - np.log(e))
        elif t == "nca_pair":
            cr = beta * clr; rr = beta * rlr
            l = -logsig(cr) - 0.5 * logsig(-cr) - 0.5 * logsig(-rr)
        elif t == "robust":
            l = (-(1 - ls) * logsig(beta * d) - (-ls * logsig(-beta * d))) / (1 - 2 * ls)
        elif t == "bco_pair": l = -logsig(beta * clr) - logsig(-beta * rlr)
        elif t == "sppo_hard": l = (clr - 0.5 / beta) ** 2 + (rlr + 0.5 / beta) ** 2
        elif t == "aot":
            dd = np.sort(pol_c - pol_r) - np.sort(ref_c - ref_r)
            l = -logsig(beta * dd) * (1 - ls) - logsig(-beta * dd) * ls
        elif t == "aot_unpaired":
            dd = np.sort(clr) - np.sort(rlr)
            l = -logsig(beta * dd) * (1 - ls) - logsig(-beta * dd) * ls
        elif t == "apo_zero": l = 1 - sig(beta * clr) + sig(beta * rlr)
        elif t == "apo_down": l = sig(beta * clr) + 1 - sig(beta * (clr - rlr))
        elif t == "discopop":
            lg = beta * d; m = sig(lg / tau); l = -logsig(lg) * (1 - m) + np.exp(-lg) * m
        elif t == "sft": l = np.full(B, sft_nll)
        elif t == "sigmoid_norm":
            q = cs / np.maximum(len_c, 1) - rs / np.maximum(len_r, 1); l = -logsig(beta * q)
        if use_w: l = l * wpo
        total = total + w * l
    return dict(losses=total.tolist(), loss=float(total.mean()),
                chosen_rewards=(beta * clr).tolist(), rejected_rewards=(beta * rlr).tolist())

ALL = ["sigmoid", "hinge", "ipo", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
       "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]
cases = []
def add(name, types, weights=None, beta=0.1, ls=0.0, f="reverse_kl", a=0.5, tau=0.05, use_w=False):
    weights = weights or [1.0] * len(types)
    cfg = dict(beta=beta, loss_type=types, loss_weights=weights, label_smoothing=ls, f_divergence_type=f,
               f_alpha_divergence_coef=a, discopop_tau=tau, use_weighting=use_w)
    cases.append(dict(name=name, config=cfg, expected=dpo(types, weights, beta, ls, f, a, tau, use_w)))

for t in ALL: add(t, [t])
add("exo_pair_ls0.001", ["exo_pair"], ls=0.001)
add("robust_ls0.1", ["robust"], ls=0.1)
add("aot_ls0.2", ["aot"], ls=0.2)
add("aot_unpaired_ls0.2", ["aot_unpaired"], ls=0.2)
add("sigmoid_beta0.5", ["sigmoid"], beta=0.5)
for f in ["forward_kl", "js_divergence", "alpha_divergence"]:
    for t in ["sigmoid", "hinge", "ipo", "robust", "discopop", "sigmoid_norm"]:
        if (t, f) == ("discopop", "forward_kl"): continue  # exp(-logits) overflows: NaN in TRL too
        add(f"{t}_{f}", [t], f=f, ls=0.1 if t == "robust" else 0.0)
add("sigmoid_alpha_divergence_a0.3", ["sigmoid"], f="alpha_divergence", a=0.3)
add("combo_sigmoid_sft_bco", ["sigmoid", "sft", "bco_pair"], weights=[1.0, 0.5, 0.3])
add("sigmoid_wpo", ["sigmoid"], use_w=True)
add("combo_ipo_hinge_wpo", ["ipo", "hinge"], weights=[0.7, 0.3], use_w=True)

# ld_alpha and WPO helpers on per-token data: 2B rows (chosen then rejected), shifted mask.
Bt, T = 3, 7
mask = np.zeros((2 * Bt, T))
starts = [1, 2, 0, 1, 3, 2]; lens = [4, 3, 6, 2, 4, 5]
for i in range(2 * Bt): mask[i, starts[i]:starts[i] + lens[i]] = 1
ptl = -rng.random((2 * Bt, T)) * 3 * mask
lssp = -rng.random((2 * Bt, T)) * 2
def ld(alpha):
    pos = np.cumsum(mask, 1); cl = mask.sum(1); sl = np.minimum(cl[:Bt], cl[Bt:]); sl = np.concatenate([sl, sl])
    sh = (pos > 0) & (pos <= sl[:, None]); tl = pos > sl[:, None]
    return ((ptl * sh).sum(1) + alpha * (ptl * tl).sum(1)).tolist()
al = (ptl - lssp) * mask; w = np.exp(al.sum(1) / np.maximum(mask.sum(1), 1))
helpers = dict(mask=mask.tolist(), per_token_logps=ptl.tolist(), log_sum_sq_probs=lssp.tolist(),
               ld_alpha_0_5=ld(0.5), ld_alpha_0=ld(0.0), ld_alpha_1=ld(1.0),
               wpo_weights=(w[:Bt] * w[Bt:]).tolist())

print(json.dumps(dict(source="numpy transcription of TRL 1.16 DPOTrainer._compute_loss (float64)",
                      inputs=dict(chosen_logps=pol_c.tolist(), rejected_logps=pol_r.tolist(),
                                  ref_chosen_logps=ref_c.tolist(), ref_rejected_logps=ref_r.tolist(),
                                  chosen_lengths=len_c.tolist(), rejected_lengths=len_r.tolist(),
                                  sft_nll=sft_nll, wpo_weights=wpo.tolist()),
                      cases=cases, helpers=helpers), indent=1))
