"""Draw the recall-vs-QPS plot of docs/benchmarks.md from benchmarks/results/search.json.

Writes a small standalone SVG (no plotting library needed, so the docs build
has no heavy dependency): one polyline per system, QPS on a log scale.

Usage::

    python benchmarks/bench_search.py && python benchmarks/plot_search.py
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "benchmarks" / "results" / "search.json"
OUT = ROOT / "docs" / "img" / "recall_qps.svg"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
W, H, L, R, T, B = 720, 420, 70, 200, 30, 50


def main() -> None:
    data = json.loads(SRC.read_text())
    series: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for p in data["curve"]:
        series[p["system"]].append((p["recall"], p["qps"], p["ef"]))
    xs = [r for s in series.values() for r, _, _ in s]
    ys = [math.log10(q) for s in series.values() for _, q, _ in s]
    x0, x1 = min(min(xs), 0.9), 1.0
    y0, y1 = math.floor(min(ys) * 4) / 4, math.ceil(max(ys) * 4) / 4

    def px(r: float) -> float:
        return L + (r - x0) / (x1 - x0) * (W - L - R)

    def py(logq: float) -> float:
        return T + (y1 - logq) / (y1 - y0) * (H - T - B)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{L}" y="18" font-size="14">Recall@10 vs queries/s, 1 thread, batch ({data["data"]})</text>',
    ]
    for i in range(6):
        r = x0 + (x1 - x0) * i / 5
        parts.append(f'<line x1="{px(r):.1f}" y1="{T}" x2="{px(r):.1f}" y2="{H - B}" stroke="#ddd"/>')
        parts.append(f'<text x="{px(r):.1f}" y="{H - B + 16}" text-anchor="middle">{r:.3f}</text>')
    e = math.ceil(y0)
    while e <= y1:
        for m in (1, 2, 5):
            v = math.log10(m) + e - 1
            if y0 <= v <= y1:
                parts.append(f'<line x1="{L}" y1="{py(v):.1f}" x2="{W - R}" y2="{py(v):.1f}" stroke="#ddd"/>')
                parts.append(f'<text x="{L - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{10 ** v:,.0f}</text>')
        e += 1
    parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">recall@10 vs exact search</text>')
    parts.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" text-anchor="middle">queries/s (log)</text>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        c = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        path = " ".join(f"{px(r):.1f},{py(math.log10(q)):.1f}" for r, q, _ in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for r, q, ef in pts:
            parts.append(f'<circle cx="{px(r):.1f}" cy="{py(math.log10(q)):.1f}" r="3" fill="{c}"><title>{name} ef={ef}: {r:.4f}, {q:,.0f} QPS</title></circle>')
        parts.append(f'<rect x="{W - R + 12}" y="{T + 18 * i}" width="12" height="12" fill="{c}"/>')
        parts.append(f'<text x="{W - R + 30}" y="{T + 18 * i + 10}">{name}</text>')
    parts.append("</svg>")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(parts) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
