// lb_math.js: the leaderboard's pure helpers (no DOM), tested under node
// by tests/browser/unit.test.mjs.

// Blended price per million tokens, 3 input : 1 output; null if unknown.
export const blended = (m) =>
  m.price_in == null || m.price_out == null ? null : (3 * m.price_in + m.price_out) / 4;

// The price frontier: walking up in price, the models that beat every
// cheaper model's rating. Returns them in price order.
export function priceFrontier(models) {
  const priced = models.filter((m) => blended(m) != null)
    .sort((a, b) => blended(a) - blended(b) || b.rating - a.rating);
  const out = [];
  let best = -Infinity;
  for (const m of priced) {
    if (m.rating > best) { out.push(m); best = m.rating; }
  }
  return out;
}

function lum([r, g, b]) {
  const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}

function hslToRgb(h, s, l) {
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [f(0), f(8), f(4)].map((x) => Math.round(255 * x));
}

// A cell colour for p in [0,1] (blue above one half, orange below), and a
// text colour (black or white) with the higher contrast on it: at least
// 4.5:1 for every background this can produce.
export function heatColours(p) {
  const d = Math.min(1, Math.abs(p - 0.5) * 2);
  const rgb = hslToRgb(p >= 0.5 ? 215 : 25, 0.75, 0.93 - 0.5 * d);
  const L = lum(rgb);
  const text = (L + 0.05) / 0.05 >= 1.05 / (L + 0.05) ? '#000' : '#fff';
  return { bg: `rgb(${rgb.join(',')})`, fg: text };
}

