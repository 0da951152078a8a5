"""Hand-made inline SVG charts for the HTML report: no plotting library, no JavaScript.

One ``Chart`` maps data to pixels with linear axes and nice ticks; marks are plain SVG
elements, each with a <title> so a hover shows the trial and the value.
"""
from __future__ import annotations

import math
from html import escape

import numpy as np

COLORS = {"feasible": "#1f77b4", "infeasible": "#d62728", "best": "#2ca02c", "front": "#ff7f0e",
          "muted": "#999999"}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [float(v) for v in np.arange(start, hi + step * 1e-9, step)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


class Chart:
    def __init__(self, xs, ys, width: int = 640, height: int = 320, xlabel: str = "", ylabel: str = "",
                 title: str = "", pad: float = 0.05):
        self.w, self.h, self.m = width, height, (48, 16, 40, 64)  # top, right, bottom, left
        self.xlim = self._lim(xs, pad)
        self.ylim = self._lim(ys, pad)
        self.parts: list[str] = []
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title

    @staticmethod
    def _lim(vals, pad: float) -> tuple[float, float]:
        a = np.asarray([v for v in vals if v is not None and math.isfinite(v)], dtype=float)
        if a.size == 0:
            return 0.0, 1.0
        lo, hi = float(a.min()), float(a.max())
        span = hi - lo or abs(hi) or 1.0
        return lo - pad * span, hi + pad * span

    def px(self, x: float, y: float) -> tuple[float, float]:
        t, r, b, left = self.m
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        return (left + (x - x0) / (x1 - x0) * (self.w - left - r),
                self.h - b - (y - y0) / (y1 - y0) * (self.h - t - b))

    def point(self, x, y, color, tip: str, marker: str = "o", r: float = 4) -> None:
        if not (math.isfinite(x) and math.isfinite(y)):
            return
        cx, cy = self.px(x, y)
        if marker == "x":
            d = f"M{cx - r},{cy - r}L{cx + r},{cy + r}M{cx - r},{cy + r}L{cx + r},{cy - r}"
            self.parts.append(f'<path d="{d}" stroke="{color}" stroke-width="2"><title>{escape(tip)}</title></path>')
        else:
            self.parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{color}" fill-opacity="0.8">'
                              f'<title>{escape(tip)}</title></circle>')

    def polyline(self, pts, color, width: float = 2) -> None:
        pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        d = " ".join("{:.1f},{:.1f}".format(*self.px(x, y)) for x, y in pts)
        self.parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="{width}"/>')

    def hbox(self, y: float, q: list[float], tip: str, color: str = COLORS["feasible"]) -> None:
        """Horizontal box: whiskers q[0]..q[4], box q[1]..q[3], median q[2]."""
        if not all(math.isfinite(v) for v in q):
            return
        (a, yy), (b, _), (c, _), (d, _), (e, _) = (self.px(v, y) for v in q)
        hh = 6
        self.parts.append(f'<g><title>{escape(tip)}</title>'
                          f'<line x1="{a:.1f}" y1="{yy:.1f}" x2="{e:.1f}" y2="{yy:.1f}" stroke="{color}"/>'
                          f'<rect x="{b:.1f}" y="{yy - hh:.1f}" width="{max(d - b, 1):.1f}" height="{2 * hh}" '
                          f'fill="{color}" fill-opacity="0.35" stroke="{color}"/>'
                          f'<line x1="{c:.1f}" y1="{yy - hh:.1f}" x2="{c:.1f}" y2="{yy + hh:.1f}" stroke="#000" '
                          f'stroke-width="2"/></g>')

    def _axes(self, ylabels: dict[float, str] | None = None) -> str:
        t, r, b, left = self.m
        out = [f'<rect x="{left}" y="{t}" width="{self.w - left - r}" height="{self.h - t - b}" fill="none" '
               f'stroke="#ccc"/>']
        for v in nice_ticks(*self.xlim):
            x, _ = self.px(v, self.ylim[0])
            out.append(f'<text x="{x:.1f}" y="{self.h - b + 14}" text-anchor="middle">{_fmt(v)}</text>')
        yt = ylabels or {v: _fmt(v) for v in nice_ticks(*self.ylim)}
        for v, text in yt.items():
            _, y = self.px(self.xlim[0], v)
            out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>')
        out.append(f'<text x="{(left + self.w - r) / 2}" y="{self.h - 6}" text-anchor="middle">'
                   f'{escape(self.xlabel)}</text>')
        out.append(f'<text x="12" y="{(t + self.h - b) / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {(t + self.h - b) / 2})">{escape(self.ylabel)}</text>')
        out.append(f'<text x="{left}" y="20" font-weight="bold">{escape(self.title)}</text>')
        return "".join(out)

    def render(self, ylabels: dict[float, str] | None = None) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'font-family="sans-serif" font-size="11">{self._axes(ylabels)}{"".join(self.parts)}</svg>')
