#!/usr/bin/env python3
"""Calibration of the label-free error estimate on runs with synthetic truth.

For every run directory given (a labelled, trained, audited run: RUN/audit/summary.json and
RUN/labels/truth.json), prints the audit's label-free RMSE against the RMSE measured with the
truth, and how good the image-only baseline (CFOG) is on the held-out tiles.

    simreg audit RUN            # for each run first (after `similarity`)
    python3 scripts/calibration.py runs/sweep_final/sweep/sigma_{1,2,4,8}

Standard library only.
"""
import csv, json, math, sys

def fail(path, problem):
    sys.exit(f"calibration.py: '{path}': {problem}")

def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        fail(path, "missing (run `simreg audit RUN` on a run with synthetic labels first)")
    except (OSError, ValueError) as e:
        fail(path, f"unreadable ({e})")

def main(runs):
    print("| run | σ̂ labels (px) | label-free RMSE (5–95 %) | measured | ratio | baseline RMSE | baseline > 2 px |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        s = read_json(f"{run}/audit/summary.json")
        truth = read_json(f"{run}/labels/truth.json")
        table = f"{run}/audit/audit.csv"
        se, fails, n = 0.0, 0, 0
        try:
            with open(table, newline="") as f:
                for r in csv.DictReader(f):
                    if r["split"] != "val":
                        continue
                    t = truth[r["tile"]]["displacement"]
                    e = (float(r["baseline_dx"]) - t[0], float(r["baseline_dy"]) - t[1])
                    se += (e[0] ** 2 + e[1] ** 2) / 2
                    fails += max(abs(e[0]), abs(e[1])) > 2
                    n += 1
        except (OSError, KeyError, ValueError, TypeError) as e:
            fail(table, f"not an audit table of this run ({type(e).__name__}: {e})")
        meas = s.get("measured_rmse_px")
        if n == 0 or meas is None:
            fail(run, "no held-out tiles measured against truth")
        pred, (lo, hi) = s["predicted_rmse_px"], s["predicted_rmse_interval_px"]
        print(f"| {run} | {s['label_noise_rmse_px']:.2f} | {pred:.3f} ({lo:.2f}–{hi:.2f}) | {meas:.3f} | {pred / meas:.2f} | {math.sqrt(se / n):.2f} | {100 * fails / n:.1f} % |")

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: calibration.py RUN...")
    main(sys.argv[1:])
