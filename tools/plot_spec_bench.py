#!/usr/bin/env python3
"""Draws an eagle-spec-bench JSON report as a PNG: speedup over vanilla and tau per mode and
category. Needs matplotlib (Debian: python3-matplotlib).
Run: python3 tools/plot_spec_bench.py report.json [out.png]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    report = json.load(open(sys.argv[1]))
    out = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1].rsplit(".", 1)[0] + ".png"
    modes = [m for m in report["results"] if m != "vanilla"]
    cats = sorted(report["results"]["vanilla"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(modes))
    for i, m in enumerate(modes):
        xs = [c + i * width for c in range(len(cats))]
        axes[0].bar(xs, [report["results"][m][c]["speedup"] for c in cats], width, label=m)
        axes[1].bar(xs, [report["results"][m][c]["tau"] for c in cats], width, label=m)
    for ax, title in zip(axes, ["speedup over vanilla (x)", "tau (tokens per step)"]):
        ax.set_xticks([c + width * (len(modes) - 1) / 2 for c in range(len(cats))])
        ax.set_xticklabels(cats, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend()
    axes[0].axhline(1.0, color="gray", lw=0.8)
    fig.suptitle(f"eagle-spec-bench: {report['prompts']} prompts, {report['max_tokens']} tokens, "
                 f"{report['threads']} threads")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print("wrote", out)


if __name__ == "__main__":
    main()
