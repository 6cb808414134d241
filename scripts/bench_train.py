"""PyTorch eager version of simreg-learn's network and training step, for the side-by-side
throughput benchmark (scripts/bench_train.sh). Same architecture (crates/simreg-learn/src/model),
same loss, Adam(lr 1e-3, weight decay 1e-4), random inputs of the same shapes, CPU.
Prints one JSON line like `simreg-learn bench-train`."""
import argparse, json, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, padding=1)
        self.b = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return F.elu(self.b(F.elu(self.a(x))))


TEMPERATURE, AGGREGATE, FINEST = 0.1, 9, 1


def unit_vectors(x):
    return x / (x.square().sum(1, keepdim=True) + 1e-12).sqrt()


def correlation(r, m, k):
    h, w = r.shape[2], r.shape[3]
    p = F.pad(m, (k, k, k, k))
    out = []
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            out.append((r * p[:, :, k + dy:k + dy + h, k + dx:k + dx + w]).sum(1, keepdim=True))
    return torch.cat(out, 1)


def box_mean(c, side, dim):
    h, n = side // 2, c.shape[dim]
    pad = (h + 1, h, 0, 0) if dim == 3 else (0, 0, h + 1, h)
    s = F.pad(c, pad).cumsum(dim)
    total = s.narrow(dim, side, n) - s.narrow(dim, 0, n)
    i = torch.arange(n)
    count = ((i + h).clamp(max=n - 1) - (i - h).clamp(min=0) + 1).to(c.dtype)
    shape = [1, 1, 1, 1]
    shape[dim] = n
    return total / count.view(shape)


def soft_argmax(c, k, tau):
    n = 2 * k + 1
    p = (c / tau).softmax(1)
    i = torch.arange(n * n)
    ox = (i % n - k).to(c.dtype).view(1, -1, 1, 1)
    oy = (i // n - k).to(c.dtype).view(1, -1, 1, 1)
    return torch.cat([(p * ox).sum(1, keepdim=True), (p * oy).sum(1, keepdim=True)], 1)


def warp(x, flow):
    b, c, h, w = x.shape
    gx = torch.arange(w, dtype=flow.dtype).view(1, 1, w) + flow[:, 0]
    gy = torch.arange(h, dtype=flow.dtype).view(1, h, 1) + flow[:, 1]
    x0, y0 = gx.floor(), gy.floor()
    fx, fy = gx - x0, gy - y0
    flat = x.reshape(b, c, h * w)
    out = torch.zeros(b, c, h * w, dtype=x.dtype)
    for ox, oy in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        xi, yi = x0 + ox, y0 + oy
        wx = 1 - fx if ox == 0 else fx
        wy = 1 - fy if oy == 0 else fy
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        weight = (wx * wy * inside.to(flow.dtype)).view(b, 1, h * w)
        index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().view(b, 1, h * w).expand(b, c, h * w)
        out = out + flat.gather(2, index) * weight
    return out.view(b, c, h, w)


def pair(block, r, m):
    """The shared block on both modalities, each convolution applied once (as in Rust)."""
    w = r.shape[3]
    gap = torch.zeros(r.shape[0], r.shape[1], r.shape[2], 1)
    y = block.a(torch.cat([r, gap, m], 3))
    ra, ma = F.elu(y[..., :w]), F.elu(y[..., w + 1:])
    y = block.b(torch.cat([ra, gap.new_zeros(ra.shape[0], ra.shape[1], ra.shape[2], 1), ma], 3))
    return F.elu(y[..., :w]), F.elu(y[..., w + 1:])


class Net(nn.Module):
    def __init__(self, cr, cm, width, depth, corr, offset, centre):
        super().__init__()
        w = lambda l: width << l
        self.depth, self.corr, self.offset, self.centre = depth, max(corr, 1), offset, centre
        self.stem_ref, self.stem_mov = Block(cr, w(0)), Block(cm, w(0))
        self.shared = nn.ModuleList([Block(w(l - 1), w(l)) for l in range(1, depth)])
        self.refine = nn.ModuleDict({
            str(l): nn.Sequential(nn.Conv2d((2 * self.corr + 1) ** 2 + 2, w(l), 3, padding=1), nn.ELU(), nn.Conv2d(w(l), 2, 3, padding=1))
            for l in range(FINEST, depth)})

    def forward(self, r, m):
        r, m = self.stem_ref(r), self.stem_mov(m)
        feats = [(r, m)]
        for block in self.shared:
            r, m = pair(block, F.max_pool2d(r, 2), F.max_pool2d(m, 2))
            feats.append((r, m))
        flow = None
        for l in reversed(range(FINEST, self.depth)):
            r, m = feats[l]
            rn, mn = unit_vectors(r), unit_vectors(m)
            if flow is None:
                f = torch.zeros(r.shape[0], 2, r.shape[2], r.shape[3])
            else:
                f = F.interpolate(flow, size=r.shape[2:], mode="bilinear", align_corners=False) * 2
                mn = warp(mn, f)
            k = self.corr
            c = box_mean(box_mean(correlation(rn, mn, k), AGGREGATE, 2), AGGREGATE, 3)
            f = f + soft_argmax(c, k, TEMPERATURE)
            flow = f + self.refine[str(l)](torch.cat([c, f], 1))
        t = feats[0][0].shape[2]
        flow = F.interpolate(flow, size=(t, t), mode="bilinear", align_corners=False) * (t / flow.shape[2])
        o, c = self.offset, self.centre
        return flow[:, :, o:o + c, o:o + c]


def main():
    a = argparse.ArgumentParser()
    for name, default in [("batch", 16), ("tile", 64), ("reference-bands", 4), ("moving-bands", 2), ("width", 8), ("depth", 3), ("corr-radius", 3), ("warmup", 5), ("steps", 30), ("threads", 2)]:
        a.add_argument("--" + name, type=int, default=default)
    p = a.parse_args()
    torch.set_num_threads(p.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    net = Net(p.reference_bands, p.moving_bands, p.width, p.depth, p.corr_radius, p.tile // 4, p.tile // 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    t, c = p.tile, p.tile // 2
    r = torch.randn(p.batch, p.reference_bands, t, t)
    m = torch.randn(p.batch, p.moving_bands, t, t)
    f = torch.randn(p.batch, 2, c, c)
    lab = torch.randn(p.batch, 2)

    def step():
        dense = net(r, m)
        loss = (dense - f).square().mean() + (dense.mean(dim=(2, 3)) - lab).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(p.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(p.steps):
        step()
    secs = time.perf_counter() - t0
    params = sum(x.numel() for x in net.parameters())
    print(json.dumps({"samples_per_s": p.batch * p.steps / secs, "batch": p.batch, "steps": p.steps, "threads": torch.get_num_threads(), "params": params}))


if __name__ == "__main__":
    main()
