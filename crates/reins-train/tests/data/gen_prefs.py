"""Reference numbers for reins-train KTO / ORPO / CPO / SimPO / reward losses: literal numpy
transcriptions of TRL 1.16 (kto_trainer.py, experimental/orpo, experimental/cpo,
reward_trainer.py), float64. Run: python gen_prefs.py > prefs.json"""
import json, math
import numpy as np
rng = np.random.default_rng(99)
def logsig(x): return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
def sig(x): return 1 / (1 + np.exp(-x))
out = {}

# KTO
c = -30 + 5 * rng.standard_normal(5); rc = c + 2 * rng.standard_normal(5)
r = -25 + 5 * rng.standard_normal(3); rr = r + 2 * rng.standard_normal(3)
kl_l = -20 + rng.standard_normal(8); kl_r = kl_l - 0.5 + rng.standard_normal(8)
kl = max(float(np.mean(kl_l - kl_r)), 0.0)
kto = {}
for lt in ["kto", "apo_zero_unpaired"]:
    for beta, dw, uw in [(0.1, 1.0, 1.0), (0.3, 1.33, 0.7)]:
        clr = c - rc; rlr = r - rr
        if lt == "kto":
            cl = 1 - sig(beta * (clr - kl)); rl = 1 - sig(beta * (kl - rlr))
        else:
            cl = 1 - sig(beta * clr); rl = sig(beta * rlr)
        losses = np.concatenate([dw * cl, uw * rl])
        kto[f"{lt}_{beta}_{dw}_{uw}"] = dict(loss_type=lt, beta=beta, desirable_weight=dw, undesirable_weight=uw,
                                             loss=float(losses.mean()))
out["kto"] = dict(chosen=c.tolist(), ref_chosen=rc.tolist(), rejected=r.tolist(), ref_rejected=rr.tolist(),
                  kl_logps=kl_l.tolist(), ref_kl_logps=kl_r.tolist(), kl=kl, cases=kto)

# ORPO (average log-probs, TRL log1mexp)
def log1mexp(x):
    t = -0.6931471805599453
    return np.where(x < t, np.log1p(-np.exp(x)), np.log(-np.expm1(x)))
ac = -np.abs(rng.standard_normal(6)) * 1.5 - np.array([0, 0, 0, 0, 0.0, 0]) ; ac[0] = -1e-3; ac[1] = -0.5
ar = -np.abs(rng.standard_normal(6)) * 2.0
nll = 1.7; beta = 0.1
lo = (ac - ar) - (log1mexp(ac) - log1mexp(ar)); ratio = logsig(lo)
out["orpo"] = dict(chosen=ac.tolist(), rejected=ar.tolist(), nll=nll, beta=beta, loss=float(nll - np.mean(beta * ratio)),
                   log_odds_ratio=float(ratio.mean()), log_odds_chosen=float(lo.mean()),
                   log1mexp=log1mexp(np.concatenate([ac, ar, [-5.0, -0.7, -0.69, -1e-5]])).tolist(),
                   log1mexp_x=np.concatenate([ac, ar, [-5.0, -0.7, -0.69, -1e-5]]).tolist())

# CPO family
sc = -20 + 5 * rng.standard_normal(5); sr = -22 + 5 * rng.standard_normal(5)
cpo = {}
for lt in ["sigmoid", "hinge", "ipo", "simpo"]:
    for beta, ls, alpha_bc, gamma, alpha in [(0.1, 0.0, 1.0, 0.5, 0.0), (2.0, 0.1, 0.0, 1.0, 0.0), (0.5, 0.0, 0.5, 0.5, 0.2)]:
        avg = lt in ["ipo", "simpo"]
        pc = sc / 10 if avg else sc; pr = sr / 10 if avg else sr
        if alpha != 0:
            rc_ = (1 - np.exp(pc) ** (-alpha)) / alpha; rr_ = (1 - np.exp(pr) ** (-alpha)) / alpha
        else:
            rc_, rr_ = pc, pr
        logits = rc_ - rr_
        if lt == "simpo":
            logits = logits - gamma / beta
            l = -logsig(beta * logits) * (1 - ls) - logsig(-beta * logits) * ls
        elif lt == "sigmoid": l = -logsig(beta * logits) * (1 - ls) - logsig(-beta * logits) * ls
        elif lt == "hinge": l = np.maximum(0, 1 - beta * logits)
        else: l = (logits - 1 / (2 * beta)) ** 2
        loss = l.mean() + alpha_bc * nll
        cpo[f"{lt}_{beta}_{ls}_{alpha_bc}_{gamma}_{alpha}"] = dict(
            config=dict(loss_type=lt, beta=beta, label_smoothing=ls, cpo_alpha=alpha_bc, simpo_gamma=gamma, alpha=alpha),
            chosen=pc.tolist(), rejected=pr.tolist(), losses=l.tolist(), loss=float(loss),
            chosen_rewards=(beta * rc_).tolist())
out["cpo"] = dict(nll=nll, cases=cpo)

# Reward: Bradley-Terry with margin and centring
rc2 = rng.standard_normal(7); rr2 = rng.standard_normal(7); mg = rng.random(7)
rw = {}
rw["plain"] = float(-logsig(rc2 - rr2).mean())
rw["margin"] = float(-logsig(rc2 - rr2 - mg).mean())
rw["margin_center_0.01"] = float(-logsig(rc2 - rr2 - mg).mean() + 0.01 * np.mean((rc2 + rr2) ** 2))
out["reward"] = dict(chosen=rc2.tolist(), rejected=rr2.tolist(), margin=mg.tolist(), cases=rw)
print(json.dumps(out, indent=1))
