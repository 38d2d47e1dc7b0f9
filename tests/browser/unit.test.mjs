// tests/browser/unit.test.mjs: the pages' pure modules under node's test
// runner (ctest `pages_unit`): the SSE parser, the Markdown renderer's
// escaping, and the leaderboard's price frontier and heatmap colours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../../static/src/sse.js';
import { renderMarkdown } from '../../static/src/markdown.js';
import { priceFrontier, heatColours, blended } from '../../static/src/lb_math.js';

const STREAM =
  ': a comment\r\n' +
  'event: turn\r\ndata: {"turn": 1}\r\n\r\n' +
  'event: token\ndata: {"side": "a", "text": "Once"}\n\n' +
  'event: token\rdata: {"side": "b", "text": "é😀"}\r\r' +
  'data: line one\ndata: line two\n\n' +
  'event:end\ndata:{"state":"ready"}\n\n' +
  'event: token\ndata: {"cut": "off"}'; // no blank line: never dispatched

const WANT = [
  ['turn', '{"turn": 1}'],
  ['token', '{"side": "a", "text": "Once"}'],
  ['token', '{"side": "b", "text": "é😀"}'],
  ['message', 'line one\nline two'],
  ['end', '{"state":"ready"}'],
];

test('SSE: every event, whatever the chunk boundaries', () => {
  for (let cut = 0; cut <= STREAM.length; cut++) {
    for (let cut2 = cut; cut2 <= STREAM.length; cut2 += 7) {
      const got = [];
      const p = new SseParser((name, data) => got.push([name, data]));
      p.push(STREAM.slice(0, cut));
      p.push(STREAM.slice(cut, cut2));
      p.push(STREAM.slice(cut2));
      assert.deepEqual(got, WANT, `split at ${cut} and ${cut2}`);
    }
  }
});

test('SSE: one character at a time', () => {
  const got = [];
  const p = new SseParser((name, data) => got.push([name, data]));
  for (const ch of STREAM) p.push(ch);
  assert.deepEqual(got, WANT);
});

test('Markdown: raw HTML is escaped, never passed through', () => {
  const html = renderMarkdown('<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n' +
                              '<a href="x" onclick="y">z</a> <b>b</b>');
  assert.doesNotMatch(html, /<script|<img|<a |<b>/i);
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(html, /&lt;img src=x onerror=alert\(2\)&gt;/);
});

test('Markdown: no script links, no images, code blocks kept', () => {
  for (const link of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', 'vbscript:x',
                      'data:text/html;base64,PHNjcmlwdD4=', 'file:///etc/passwd']) {
    const html = renderMarkdown(`[x](${link})`);
    assert.doesNotMatch(html, /href=/i, link);
  }
  assert.doesNotMatch(renderMarkdown('![x](https://example.invalid/t.png)'), /<img/);
  const code = renderMarkdown('```html\n<script>x</script>\n```');
  assert.match(code, /<pre><code class="language-html">&lt;script&gt;x&lt;\/script&gt;\n<\/code><\/pre>/);
  const link = renderMarkdown('[ok](https://example.org/a)');
  assert.match(link, /rel="nofollow noopener noreferrer"/);
  assert.match(renderMarkdown('**b** `c`'), /<strong>b<\/strong> <code>c<\/code>/);
});

test('leaderboard: price frontier', () => {
  const m = (model, rating, price_in, price_out) => ({ model, rating, price_in, price_out });
  const models = [m('big', 1300, 10, 30), m('open-mid', 1250, 0.5, 0.5), m('free', 1100, 0, 0),
                  m('pricey-bad', 1200, 5, 5), m('unknown', 1400, null, null),
                  m('same-price-worse', 1050, 0, 0)];
  assert.deepEqual(priceFrontier(models).map((x) => x.model), ['free', 'open-mid', 'big']);
  assert.equal(blended(m('x', 0, 1, 5)), 2);
  assert.equal(blended(m('x', 0, null, 5)), null);
});

test('leaderboard: heatmap text has 4.5:1 contrast on every cell colour', () => {
  const lum = (c) => c.map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; })
    .reduce((s, x, i) => s + x * [0.2126, 0.7152, 0.0722][i], 0);
  for (let i = 0; i <= 1000; i++) {
    const { bg, fg } = heatColours(i / 1000);
    const b = lum(bg.match(/\d+/g).map(Number));
    const f = fg === '#000' ? 0 : 1;
    const ratio = (Math.max(b, f) + 0.05) / (Math.min(b, f) + 0.05);
    assert.ok(ratio >= 4.5, `p=${i / 1000}: ${fg} on ${bg} is ${ratio.toFixed(2)}:1`);
  }
});
