"""PyTorch side of the similarity-stage benchmarks (scripts/bench_similarity.sh), on the network of
scripts/bench_train.py (the same architecture as crates/simreg-learn/src/model). Every
subcommand prints one JSON line.

  params     parameter count of the network (the script compares it with simreg-learn's)
  jacobian   per-sample Jacobians of f(x) (the centre-window mean of the dense displacement, 2
             outputs) for random batches with torch.func: vmap(jacrev(functional_call)), the
             result concatenated to (B, 2, p) as simreg-learn's
  reference  the reference code's N_S pipeline over N random samples: per sample one forward
             pass (batch 1) and one backward pass per output component (zero_grad +
             backward(retain_graph=True)), all .grad flattened and concatenated into a p×2
             array saved as one .npy file per sample in a temporary directory; then numpy,
             two passes over the files: A_j = G_j (G_jᵀG_j)^{-1/2} summed into S_A, and
             N_S_i = ½ Tr(A_iᵀ S_A). Timed as a whole; the files are deleted afterwards.
  check      internal consistency, in float64: the torch.func Jacobian equals the reference
             per-sample loop, and the numpy N_S is sane on random inputs (linear = pairwise,
             k^C(x, x) = 1, |k^C| ≤ 1, a sample duplicated m times has N_S ≥ m among
             orthogonal others…). Exits 1 on a failure.
"""
import argparse, json, os, resource, shutil, sys, tempfile, time

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import Net  # noqa: E402  (the same network as the training benchmark)

D = 2


def build(p, dtype=torch.float32):
    torch.manual_seed(0)
    net = Net(p.reference_bands, p.moving_bands, p.width, p.depth, p.corr_radius, p.tile // 4, p.tile // 2)
    return net.to(dtype)


def f_of(net, r, m):
    """f(x): the mean of the dense prediction over the centre window, (B, 2)."""
    return net(r, m).mean(dim=(2, 3))


def params_of(net):
    return sum(x.numel() for x in net.parameters())


def rand_inputs(p, b, dtype=torch.float32):
    t = p.tile
    return torch.randn(b, p.reference_bands, t, t, dtype=dtype), torch.randn(b, p.moving_bands, t, t, dtype=dtype)


def sample(p, i, dtype=torch.float32):
    """Sample i, regenerated from its index (like simreg-learn bench-ns)."""
    g = torch.Generator().manual_seed(i)
    t = p.tile
    r = torch.randn(1, p.reference_bands, t, t, generator=g, dtype=dtype)
    m = torch.randn(1, p.moving_bands, t, t, generator=g, dtype=dtype)
    return r, m


# --- torch.func ---------------------------------------------------------------------------

def func_jacobians(net):
    """A function (r, m) batch → per-sample Jacobians (B, 2, p), parameters in
    named_parameters order."""
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f1(ps, r, m):
        return f_of_call(net, ps, r.unsqueeze(0), m.unsqueeze(0)).squeeze(0)

    jac = vmap(jacrev(f1), in_dims=(None, 0, 0))

    def run(r, m):
        j = jac(params, r, m)  # name → (B, 2, *shape)
        b = r.shape[0]
        return torch.cat([j[k].reshape(b, D, -1) for k in params], 2)

    return run


def f_of_call(net, ps, r, m):
    return functional_call(net, ps, (r, m)).mean(dim=(2, 3))


# --- the reference code's method ------------------------------------------------------------

def reference_gradient(net, r, m):
    """One sample (batch 1): p×2, one backward pass per output component."""
    out = f_of(net, r, m)
    cols = []
    for k in range(D):
        net.zero_grad()
        out[0, k].backward(retain_graph=True)
        cols.append(torch.cat([q.grad.reshape(-1) for q in net.parameters()]))
    return torch.stack(cols, 1).numpy()


def polar_np(g):
    """A = G (GᵀG)^{-1/2} for one p×d Jacobian (float64)."""
    g = g.astype(np.float64)
    lam, v = np.linalg.eigh(g.T @ g)
    top = lam.max()
    if top <= 0:
        return np.zeros_like(g)
    lam = np.maximum(lam, top * 1e-10)
    return g @ (v @ np.diag(lam ** -0.5) @ v.T)


def ns_two_passes(paths):
    """numpy, two passes over the saved gradients: S_A = Σ_j A_j, then N_S_i = ½ Tr(A_iᵀ S_A)."""
    s_a = None
    for path in paths:
        a = polar_np(np.load(path))
        s_a = a.copy() if s_a is None else s_a + a
    return np.array([np.trace(polar_np(np.load(path)).T @ s_a) / D for path in paths])


# --- subcommands ----------------------------------------------------------------------------

def cmd_params(p):
    print(json.dumps({"params": params_of(build(p))}))


def cmd_jacobian(p):
    net = build(p)
    run = func_jacobians(net)
    r, m = rand_inputs(p, p.batch)
    for _ in range(p.warmup):
        run(r, m)
    t0 = time.perf_counter()
    check = 0.0
    for _ in range(p.steps):
        check += float(run(r, m)[0, 0, 0])
    secs = time.perf_counter() - t0
    assert np.isfinite(check), "non-finite Jacobian"
    print(json.dumps({"jacobians_per_s": p.batch * p.steps / secs, "batch": p.batch, "steps": p.steps, "params": params_of(net), "threads": torch.get_num_threads()}))


def cmd_reference(p):
    net = build(p)
    tmp = tempfile.mkdtemp(prefix="simreg-refns-", dir=p.tmpdir)
    try:
        t0 = time.perf_counter()
        paths = []
        for i in range(p.n):
            r, m = sample(p, i)
            path = os.path.join(tmp, f"{i:06d}.npy")
            np.save(path, reference_gradient(net, r, m))
            paths.append(path)
        t_grad = time.perf_counter() - t0
        ns = ns_two_passes(paths)
        seconds = time.perf_counter() - t0
        disk_mb = sum(os.path.getsize(q) for q in paths) / 2 ** 20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert not os.path.exists(tmp)
    print(json.dumps({"n": p.n, "seconds": seconds, "gradient_seconds": t_grad, "numpy_seconds": seconds - t_grad, "disk_mb": disk_mb,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ns_mean": float(ns.mean()), "params": params_of(net),
                      "threads": torch.get_num_threads()}))


def cmd_check(p):
    ok = True

    def report(name, value, good):
        nonlocal ok
        ok &= bool(good)
        print(f"  check {'ok  ' if good else 'FAIL'} {name}: {value}", file=sys.stderr)

    # 1. torch.func against the reference loop, float64, the benchmark's network.
    net = build(p, torch.float64)
    r, m = rand_inputs(p, 4, torch.float64)
    fast = func_jacobians(net)(r, m).numpy()  # (B, 2, p)
    slow = np.stack([reference_gradient(net, r[i:i + 1], m[i:i + 1]).T for i in range(r.shape[0])])
    rel = np.abs(fast - slow).max() / np.abs(slow).max()
    report("torch.func vs reference loop, max relative difference (f64)", f"{rel:.2e}", rel <= 1e-10)
    spread = np.abs(fast[0] - fast[1]).max() / np.abs(fast[0]).max()
    report("the samples' Jacobians differ", f"{spread:.2e}", spread > 1e-3)
    # In float32 too (the precision both benchmarks run at).
    net32 = build(p)
    r32, m32 = r.float(), m.float()
    fast32 = func_jacobians(net32)(r32, m32).numpy()
    slow32 = np.stack([reference_gradient(net32, r32[i:i + 1], m32[i:i + 1]).T for i in range(4)])
    rel32 = np.abs(fast32 - slow32).max() / np.abs(slow32).max()
    report("torch.func vs reference loop, max relative difference (f32)", f"{rel32:.2e}", rel32 <= 1e-4)

    # 2. numpy N_S on random inputs, through the reference files.
    n = 24
    tmp = tempfile.mkdtemp(prefix="simreg-refns-check-", dir=p.tmpdir)
    try:
        gs = [reference_gradient(net32, *sample(p, i)) for i in range(n)]
        paths = []
        for i, g in enumerate(gs):
            paths.append(os.path.join(tmp, f"{i}.npy"))
            np.save(paths[-1], g)
        ns = ns_two_passes(paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a = np.stack([polar_np(g) for g in gs])  # (n, p, 2)
    kc = np.einsum("ipk,jpk->ij", a, a) / D
    report("AᵀA = I", f"{max(np.abs(x.T @ x - np.eye(D)).max() for x in a):.1e}", all(np.abs(x.T @ x - np.eye(D)).max() < 1e-10 for x in a))
    report("k^C(x, x) = 1, symmetric, |k^C| ≤ 1", f"diag {np.abs(np.diag(kc) - 1).max():.1e}, max {np.abs(kc).max():.6f}",
           np.abs(np.diag(kc) - 1).max() < 1e-10 and np.abs(kc - kc.T).max() < 1e-10 and np.abs(kc).max() <= 1 + 1e-10)
    pair = kc.sum(1)
    report("linear-time N_S = Σ_j k^C (two passes over the files)", f"{np.abs(ns - pair).max():.1e}", np.abs(ns - pair).max() <= 1e-8 * np.abs(pair).max())
    report("|N_S| ≤ N on random inputs (N = 24)", f"mean {ns.mean():.2f}, range {ns.min():.2f}…{ns.max():.2f}", np.abs(ns).max() <= n + 1e-9)
    # Duplicates among orthogonal others: N_S = m exactly (paper check 5).
    pdim = 64
    e = np.eye(pdim)
    x = e[:, :2] * 3.0
    others = [e[:, 2 * k + 2:2 * k + 4] * k for k in range(1, 10)]
    tmp = tempfile.mkdtemp(prefix="simreg-refns-check-", dir=p.tmpdir)
    try:
        paths = []
        for i, g in enumerate([x] * 4 + others):
            paths.append(os.path.join(tmp, f"{i}.npy"))
            np.save(paths[-1], g)
        nsd = ns_two_passes(paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report("a sample 4× duplicated among orthogonal others: N_S = 4", f"{nsd[0]:.12f}", abs(nsd[0] - 4) < 1e-12 and np.abs(nsd[4:] - 1).max() < 1e-12)
    print(json.dumps({"ok": ok, "func_vs_loop_rel_f64": float(rel), "func_vs_loop_rel_f32": float(rel32), "ns_random_mean": float(ns.mean()), "ns_random_min": float(ns.min()),
                      "ns_random_max": float(ns.max()), "ns_linear_vs_pairwise": float(np.abs(ns - pair).max()), "params": params_of(net)}))
    sys.exit(0 if ok else 1)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("command", choices=["params", "jacobian", "reference", "check"])
    for name, default in [("batch", 32), ("tile", 64), ("reference-bands", 4), ("moving-bands", 2), ("width", 8), ("depth", 3), ("corr-radius", 3),
                          ("warmup", 2), ("steps", 10), ("threads", 2), ("n", 2000)]:
        a.add_argument("--" + name, type=int, default=default)
    a.add_argument("--tmpdir", default=None, help="where the reference method writes its .npy files (default: $TMPDIR)")
    p = a.parse_args()
    torch.set_num_threads(p.threads)
    torch.set_num_interop_threads(1)
    {"params": cmd_params, "jacobian": cmd_jacobian, "reference": cmd_reference, "check": cmd_check}[p.command](p)


if __name__ == "__main__":
    main()
