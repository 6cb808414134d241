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


def correlation(r, m, k):
    h, w = r.shape[2], r.shape[3]
    p = F.pad(m, (k, k, k, k))
    out = []
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            s = p[:, :, k + dy:k + dy + h, k + dx:k + dx + w]
            out.append((r * s).mean(dim=1, keepdim=True))
    return torch.cat(out, 1)


class Net(nn.Module):
    def __init__(self, cr, cm, width, depth, corr, offset, centre):
        super().__init__()
        w = lambda l: width << l
        self.depth, self.corr, self.offset, self.centre = depth, corr, offset, centre
        self.enc_ref = nn.ModuleList([Block(cr if l == 0 else w(l - 1), w(l)) for l in range(depth)])
        self.enc_mov = nn.ModuleList([Block(cm if l == 0 else w(l - 1), w(l)) for l in range(depth)])
        k = (2 * corr + 1) ** 2
        self.fuse = nn.ModuleList([nn.Conv2d(2 * w(l) + (k if corr > 0 and l > 0 else 0), w(l), 3, padding=1) for l in range(depth)])
        self.up = nn.ModuleList([nn.Conv2d(w(l + 1), w(l), 3, padding=1) for l in range(depth - 1)])
        self.dec = nn.ModuleList([Block(2 * w(l), w(l)) for l in range(depth - 1)])
        self.head = nn.Conv2d(w(0), 2, 1)

    def forward(self, r, m):
        fused = []
        for l in range(self.depth):
            if l > 0:
                r, m = F.max_pool2d(r, 2), F.max_pool2d(m, 2)
            r, m = self.enc_ref[l](r), self.enc_mov[l](m)
            parts = [r, m] + ([correlation(r, m, self.corr)] if self.corr > 0 and l > 0 else [])
            fused.append(F.elu(self.fuse[l](torch.cat(parts, 1))))
        x = fused.pop()
        for l in reversed(range(self.depth - 1)):
            skip = fused[l]
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = self.dec[l](torch.cat([F.elu(self.up[l](x)), skip], 1))
        o, c = self.offset, self.centre
        return self.head(x)[:, :, o:o + c, o:o + c]


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
