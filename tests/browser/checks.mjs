// tests/browser/checks.mjs: the browser checks, run in order against one
// server by run.mjs. Each check prints "ok" or "FAIL" with what it saw, and
// saves screenshots to shots/ (a failing check saves one of its page too).

const ANSWER_TIMEOUT = 120000; // the ASan build of the server is slower

class CheckError extends Error {}
function assert(cond, msg) {
  if (!cond) throw new CheckError(msg);
}

export async function checks({ browser, base, shots, adminPassword, withApi = true }) {
  const results = [];
  const skipped = [];
  const figures = {};
  let current = null; // the page of the running check, for failure shots

  async function check(name, fn) {
    const t0 = Date.now();
    current = null;
    try {
      await fn();
      results.push({ name, ok: true });
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      results.push({ name, ok: false });
      console.log(`FAIL ${name}: ${e instanceof CheckError ? e.message : e.stack || e}`);
      if (current) {
        const file = `${shots}/FAILED-${name.replace(/[^a-z0-9]+/gi, '-')}.png`;
        await current.screenshot({ path: file, fullPage: true }).catch(() => {});
        const notice = await current.textContent('#notice').catch(() => null);
        if (notice) console.log(`     the page said: ${notice}`);
      }
    }
  }

  // A check that needs the battle API (issue 5), and optionally further
  // endpoints: it is skipped, and says so, only while one of them answers
  // 404 (not built yet); any other answer lets it run and count.
  async function apiCheck(name, fn, needs = []) {
    if (!withApi) {
      skipped.push(name);
      console.log(`skip ${name} (needs the battle API)`);
      return;
    }
    for (const path of needs) {
      const status = (await fetch(base + path)).status;
      if (status === 404) {
        skipped.push(name);
        console.log(`skip ${name}: GET ${path} answers 404 (not built yet)`);
        return;
      }
    }
    return check(name, fn);
  }

  // A page that fails its check on any script error or dialog (a dialog
  // would mean injected script ran).
  async function open(ctx, path) {
    const page = await ctx.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    page.on('dialog', (d) => { page.errors.push(`dialog opened: ${d.message()}`); d.dismiss(); });
    current = page;
    if (path) await page.goto(base + path);
    return page;
  }
  const noErrors = (page) =>
    assert(page.errors.length === 0, `errors in the page: ${page.errors.join('; ')}`);
  const shot = (page, name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  async function ready(page) {
    await page.waitForSelector('#app[data-ready="true"]', { timeout: 15000 });
  }

  // Sends a prompt from the arena page and waits until the turn is over.
  // Returns the final state and samples of both panes' text lengths, taken
  // every 10 ms while the answers streamed.
  async function sendTurn(page, prompt, { viaButton = false } = {}) {
    await page.fill('#prompt', prompt);
    const turnsBefore = await page.evaluate(() =>
      document.querySelectorAll('.pane[data-side="a"] .msg.bot').length);
    await page.evaluate(() => {
      window.__samples = [];
      const len = (side) => {
        const b = document.querySelectorAll(`.pane[data-side="${side}"] .msg.bot .md`);
        return b.length ? b[b.length - 1].textContent.length : 0;
      };
      clearInterval(window.__sampler);
      window.__sampler = setInterval(() => {
        const state = document.querySelector('#app').dataset.state;
        if (state === 'streaming') window.__samples.push([len('a'), len('b')]);
      }, 10);
    });
    if (viaButton) await page.click('#send');
    else await page.press('#prompt', 'Enter');
    await page.waitForFunction((n) => {
      const app = document.querySelector('#app');
      return document.querySelectorAll('.pane[data-side="a"] .msg.bot').length > n &&
             ['ready', 'failed', 'open', 'voted'].includes(app.dataset.state);
    }, turnsBefore, { timeout: ANSWER_TIMEOUT, polling: 20 });
    return page.evaluate(() => {
      clearInterval(window.__sampler);
      return { state: document.querySelector('#app').dataset.state,
               samples: window.__samples,
               notice: document.querySelector('#notice').textContent };
    });
  }

  // How many different non-empty lengths a side went through while
  // streaming: more than one means it appeared piece by piece.
  const steps = (samples, i) => new Set(samples.map((s) => s[i]).filter((x) => x > 0)).size;

  const paneText = (page, side) => page.evaluate((s) =>
    [...document.querySelectorAll(`.pane[data-side="${s}"] .msg.bot .md`)]
      .map((x) => x.textContent).join('\n'), side);

  const apiJson = async (ctx, path) => {
    const r = await ctx.request.get(base + path);
    return { status: r.status(), body: r.ok() ? await r.json() : null };
  };

  // -------------------------------------------------------------------------

  await check('first load of / is under 150 KB and interactive under 1 s', async () => {
    // Start Chromium's renderer machinery once in a throwaway context, so
    // the figures are the page's, not the browser's cold start; the
    // measured context still has an empty cache and no cookies.
    const warm = await browser.newContext();
    await (await warm.newPage()).goto(base + '/healthz');
    await warm.close();
    // Three cold loads, each in a fresh context (empty cache, no cookies);
    // the median decides, so one stall of a busy machine does not.
    const runs = [];
    let page = null;
    let ctx = null;
    for (let i = 0; i < 3; i++) {
      if (ctx) await ctx.close();
      ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      page = await open(ctx);
      const cdp = await ctx.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
      const reqs = new Map();
      cdp.on('Network.responseReceived', (e) => reqs.set(e.requestId, {
        url: e.response.url.replace(base, ''), status: e.response.status,
        encoding: Object.entries(e.response.headers)
          .find(([k]) => k.toLowerCase() === 'content-encoding')?.[1] || 'identity' }));
      cdp.on('Network.loadingFinished', (e) => {
        const r = reqs.get(e.requestId);
        if (r) r.bytes = e.encodedDataLength;
      });
      await page.goto(base + '/', { waitUntil: 'load' });
      await ready(page);
      await page.waitForLoadState('networkidle');
      const t = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        const m = performance.getEntriesByName('arena-ready')[0];
        return { ttfb: n.responseStart, domInteractive: n.domInteractive,
                 domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd,
                 ready: m ? m.startTime : Infinity };
      });
      const total = [...reqs.values()].reduce((sum, r) => sum + (r.bytes || 0), 0);
      if (i === 0)
        for (const r of reqs.values())
          console.log(`     ${String(r.bytes).padStart(7)} B  ${r.status} ${r.encoding.padEnd(8)} ${r.url}`);
      console.log(`     cold load ${i + 1}: ${total} B in ${reqs.size} requests; ` +
                  `ttfb ${t.ttfb.toFixed(1)} ms, DOM interactive ${t.domInteractive.toFixed(1)} ms, ` +
                  `DOMContentLoaded ${t.domContentLoaded.toFixed(1)} ms, load ${t.load.toFixed(1)} ms, ` +
                  `page interactive (handlers wired) ${t.ready.toFixed(1)} ms`);
      runs.push({ bytes: total, ...t });
      assert(total < 150 * 1024, `first load transferred ${total} B, over 150 KB`);
    }
    const median = [...runs].sort((a, b) => a.ready - b.ready)[1];
    figures.firstLoad = median;
    // Typing works at once.
    await page.fill('#prompt', 'hello');
    assert(await page.inputValue('#prompt') === 'hello', 'cannot type in the message box');
    assert(median.ready < 1000,
           `page interactive after ${median.ready.toFixed(0)} ms (median of 3), not under 1 s`);
    await shot(page, 'arena-first-load');
    noErrors(page);
    await ctx.close();
  });

  // One visitor (one cookie) for the battles, the leaderboard check after.
  const visitor = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const before = await apiJson(visitor, '/api/leaderboard?category=overall');
  const votesBefore = before.body ? before.body.votes : null;
  const voted = { counted: 0, models: new Set() };
  const models = (await apiJson(visitor, '/api/models')).body;
  const modelNames = models ? models.models.flatMap((m) => [m.name, m.display_name]) : [];

  await apiCheck('anonymous battle: both sides stream, vote, then the reveal', async () => {
    const page = await open(visitor, '/');
    await ready(page);
    // Watch the turn's response arrive: chunks and their times.
    const cdp = await visitor.newCDPSession(page);
    await cdp.send('Network.enable');
    // The story models answer in a fifth of a second, faster than a loaded
    // page may sample: a slow link (4 KB/s, a weak phone connection) spreads
    // the stream out so its arrival on screen can be watched. (At 8 KB/s a
    // short turn, 4.3 KB in all, once came in 2 chunks within 184 ms.)
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: 4096, uploadThroughput: -1 });
    let turnId = null;
    const chunks = [];
    cdp.on('Network.requestWillBeSent', (e) => {
      if (e.request.url.endsWith('/turns')) turnId = e.requestId;
    });
    cdp.on('Network.dataReceived', (e) => {
      if (e.requestId === turnId) chunks.push(e.timestamp);
    });
    const r = await sendTurn(page, 'Once upon a time, a little dog found a ball.');
    assert(r.state === 'ready', `after the turn the battle is "${r.state}" (${r.notice})`);
    const a = await paneText(page, 'a'), b = await paneText(page, 'b');
    assert(a.length > 0 && b.length > 0, `empty answer: A ${a.length} chars, B ${b.length}`);
    const tokens = await page.$$eval('.msg.bot .stats', (xs) =>
      xs.map((x) => parseInt(x.textContent, 10)));
    const spread = chunks.length ? 1000 * (chunks[chunks.length - 1] - chunks[0]) : 0;
    console.log(`     answers: A ${a.length} chars (${tokens[0]} tokens), B ${b.length} chars ` +
                `(${tokens[1]} tokens); on screen in ${steps(r.samples, 0)} and ` +
                `${steps(r.samples, 1)} visible steps; the stream came in ${chunks.length} ` +
                `chunks over ${spread.toFixed(0)} ms`);
    assert(chunks.length > 2 && spread > 0, 'the turn did not arrive as a stream');
    // A quick answer may land within one frame (on a loaded machine the
    // page's 10 ms sampler can stall for a few hundred ms); one that took
    // over half a second to generate must not.
    const genMs = await page.$$eval('.msg.bot .stats', (xs) => xs.map((x) => {
      const m = x.textContent.match(/(\d+) tokens.*?([\d.]+) tokens\/s/);
      return m ? 1000 * parseInt(m[1], 10) / parseFloat(m[2]) : 0;
    }));
    console.log(`     generation took ${genMs.map((x) => x.toFixed(0)).join(' and ')} ms`);
    for (const [i, side] of [[0, 'A'], [1, 'B']])
      assert(!(genMs[i] >= 500) || steps(r.samples, i) > 1,
             `answer ${side} (${tokens[i]} tokens in ${genMs[i].toFixed(0)} ms) ` +
             'appeared all at once, not token by token');
    assert(Math.max(steps(r.samples, 0), steps(r.samples, 1)) > 1, 'nothing appeared gradually');
    // Anonymous until the vote: no name on the page.
    const who = await page.$$eval('.pane .who', (xs) => xs.map((x) => x.textContent));
    assert(who.every((x) => x === ''), `names shown before the vote: ${who}`);
    const heads = await page.$$eval('.pane .side', (xs) => xs.map((x) => x.textContent));
    assert(heads[0] === 'Model A' && heads[1] === 'Model B', `headers ${heads}`);
    const bodyText = await page.textContent('.panes');
    for (const n of modelNames)
      assert(!n || !bodyText.includes(n), `model name "${n}" visible before the vote`);
    const enabled = await page.$$eval('#votes button', (xs) => xs.map((x) => !x.disabled));
    assert(enabled.length === 4 && enabled.every(Boolean), `vote buttons enabled: ${enabled}`);
    await shot(page, 'battle-ready');
    const [resp] = await Promise.all([
      page.waitForResponse((x) => x.url().endsWith('/vote')),
      page.click('#votes button[data-vote="model_a"]'),
    ]);
    assert(resp.status() === 200, `vote answered ${resp.status()}`);
    const v = await resp.json();
    await page.waitForSelector('#app[data-state="voted"]');
    const revealed = await page.$$eval('.pane .who .reveal', (xs) => xs.map((x) => x.textContent));
    const want = [v.models.a.display_name || v.models.a.name, v.models.b.display_name || v.models.b.name];
    assert(revealed.join('|') === want.join('|'), `revealed ${revealed}, vote said ${want}`);
    console.log(`     revealed: A = ${want[0]}, B = ${want[1]}; counted: ${v.counted}`);
    if (v.counted) voted.counted++;
    voted.models.add(v.models.a.name).add(v.models.b.name);
    const disabled = await page.$$eval('#votes button', (xs) => xs.every((x) => x.disabled));
    assert(disabled, 'vote buttons still enabled after the vote');
    await shot(page, 'battle-revealed');
    noErrors(page);
    await page.close();
  });

  await apiCheck('multi-turn battle, regenerate, keyboard vote', async () => {
    const page = await open(visitor, '/');
    await ready(page);
    const r1 = await sendTurn(page, 'Tell me a story about a cat.');
    assert(r1.state === 'ready', `turn 1 ended "${r1.state}" (${r1.notice})`);
    const r2 = await sendTurn(page, 'What happened next? <img src=x onerror="window.__xss=7">',
                              { viaButton: true });
    assert(r2.state === 'ready', `turn 2 ended "${r2.state}" (${r2.notice})`);
    const counts = await page.evaluate(() => ['a', 'b'].map((s) => [
      document.querySelectorAll(`.pane[data-side="${s}"] .msg.user`).length,
      document.querySelectorAll(`.pane[data-side="${s}"] .msg.bot`).length]));
    assert(JSON.stringify(counts) === '[[2,2],[2,2]]', `messages per pane ${JSON.stringify(counts)}`);
    const turns = await page.textContent('#turns');
    assert(/^Turn 2 of \d+$/.test(turns), `turn counter "${turns}"`);
    // The prompt with markup is shown as text.
    const echo = await page.$$eval('.pane[data-side="a"] .msg.user', (xs) => xs[1].innerHTML);
    assert(echo.includes('&lt;img') && !(await page.$('.msg.user img')), `prompt echo: ${echo}`);
    // A reload of the tab brings the open battle back (GET /api/battles/{id}).
    const textA = await paneText(page, 'a');
    await page.reload();
    await ready(page);
    await page.waitForFunction(() =>
      document.querySelectorAll('.pane[data-side="b"] .msg.bot').length === 2, null,
      { timeout: 15000 });
    await page.evaluate(() => window.arenaUI.markdownReady.then(() => new Promise((r) =>
      requestAnimationFrame(() => requestAnimationFrame(r)))));
    const textA2 = await paneText(page, 'a');
    assert(textA2 === textA, `the restored answers differ from the streamed ones: ${JSON.stringify(textA)} then ${JSON.stringify(textA2)}`);
    assert(await page.evaluate(() => document.querySelector('#app').dataset.state) === 'ready',
           'the restored battle cannot be voted on');
    // Regenerate both answers of turn 2.
    await page.click('#regen');
    await page.waitForFunction(() => document.querySelector('#app').dataset.state === 'streaming' ||
      document.querySelectorAll('.msg.bot.streaming').length > 0, null, { timeout: 10000 })
      .catch(() => {}); // it may finish before we look
    await page.waitForFunction(() => ['ready', 'failed'].includes(
      document.querySelector('#app').dataset.state), null, { timeout: ANSWER_TIMEOUT });
    const after = await page.$$eval('.pane[data-side="a"] .msg.bot', (xs) => xs.length);
    assert(after === 2, `regenerate left ${after} answers in pane A, want 2`);
    assert(await page.evaluate(() => document.querySelector('#app').dataset.state) === 'ready',
           'not votable after regenerate');
    await shot(page, 'multi-turn');
    // Keyboard: leave the box, press 3 (tie).
    await page.focus('#prompt');
    await page.keyboard.press('Escape');
    const [resp] = await Promise.all([
      page.waitForResponse((x) => x.url().endsWith('/vote')),
      page.keyboard.press('3'),
    ]);
    const v = await resp.json();
    assert(resp.status() === 200 && v.winner === 'tie', `keyboard vote: ${resp.status()} ${JSON.stringify(v)}`);
    if (v.counted) voted.counted++;
    voted.models.add(v.models.a.name).add(v.models.b.name);
    await page.waitForSelector('#app[data-state="voted"]');
    assert(await page.evaluate(() => window.__xss === undefined), 'injected handler ran');
    await shot(page, 'multi-turn-voted');
    noErrors(page);
    await page.close();
  });

  await apiCheck('the leaderboard reflects the new votes', async () => {
    const page = await open(visitor);
    const want = (votesBefore || 0) + voted.counted;
    let seen = null;
    const t0 = Date.now();
    while (Date.now() - t0 < 20000) {
      await page.goto(base + '/leaderboard/');
      await ready(page);
      const s = await page.textContent('#summary');
      seen = parseInt(s.replace(/,/g, ''), 10);
      if (seen >= want) break;
      await page.waitForTimeout(500);
    }
    console.log(`     leaderboard votes: before ${votesBefore}, counted now ${voted.counted}, shows ${seen}`);
    assert(seen >= want, `the leaderboard shows ${seen} votes, want at least ${want}`);
    const rows = await page.$$eval('#board tbody tr', (xs) => xs.map((x) => x.dataset.model));
    for (const m of voted.models) assert(rows.includes(m), `model ${m} not in the table (${rows})`);
    const canvases = await page.$$eval('canvas', (xs) => xs.map((c) => c.width * c.height));
    assert(canvases.length >= 2 && canvases.every((x) => x > 0), 'charts not drawn');
    const heat = await page.$$eval('#heat-obs td', (xs) => xs.length);
    assert(heat > 0, 'no win-rate heatmap');
    await shot(page, 'leaderboard');
    noErrors(page);
    await page.close();
  }, ['/api/leaderboard?category=overall', '/api/leaderboard/matrices?category=overall']);

  await apiCheck('named side-by-side and direct chat from the same page', async () => {
    const page = await open(visitor, '/');
    await ready(page);
    await page.click('.modes button[data-mode="named"]');
    await page.waitForFunction(() => document.querySelectorAll('#model-a option').length > 1);
    const opts = await page.$$eval('#model-a option', (xs) => xs.map((x) => x.value));
    await page.selectOption('#model-a', opts[0]);
    await page.selectOption('#model-b', opts[1]);
    const r = await sendTurn(page, 'A princess and a dragon.');
    assert(r.state === 'ready', `named battle ended "${r.state}" (${r.notice})`);
    const who = await page.$$eval('.pane .who .reveal', (xs) => xs.map((x) => x.textContent));
    assert(who.length === 2, `named mode shows names before the vote: got ${who}`);
    await shot(page, 'named');
    await page.click('.modes button[data-mode="direct"]');
    assert(await page.isHidden('.pane[data-side="b"]'), 'direct chat shows two panes');
    assert(await page.isHidden('#votes'), 'direct chat shows vote buttons');
    await page.selectOption('#model-a', opts[opts.length - 1]);
    const d = await sendTurn(page, 'Hello there!');
    assert(d.state === 'open', `direct chat ended "${d.state}" (${d.notice})`);
    assert((await paneText(page, 'a')).length > 0, 'empty direct answer');
    const d2 = await sendTurn(page, 'And then?');
    assert(d2.state === 'open', `direct turn 2 ended "${d2.state}"`);
    await shot(page, 'direct');
    noErrors(page);
    await page.close();
  });

  await check('model output with <script> and <img onerror> renders as text', async () => {
    const page = await open(visitor, '/');
    await ready(page);
    const payload = [
      'Here is code:', '<script>window.__xss = 1; alert("x")</script>',
      '<img src=x onerror="window.__xss = 2">', '<svg onload="window.__xss = 3"></svg>',
      '[click me](javascript:window.__xss=4)', '<iframe src="javascript:parent.__xss=5"></iframe>',
      '<a href="#" onclick="window.__xss=6">x</a>',
      '```html\n<script>window.__xss = 8</script>\n```', '**bold** and `<b>code</b>`',
    ].join('\n\n');
    // The page's own renderer, assigned the way the page assigns a pane's
    // answer (innerHTML of a .md element inside the pane).
    const r = await page.evaluate(async (text) => {
      const renderMarkdown = await window.arenaUI.markdownReady;
      window.__xss = 0;
      const md = document.createElement('div');
      md.className = 'md';
      document.querySelector('.pane[data-side="a"] .msgs').append(md);
      md.innerHTML = renderMarkdown(text);
      const attrs = [...md.querySelectorAll('*')].flatMap((e) =>
        [...e.attributes].map((a) => a.name)).filter((n) => n.startsWith('on'));
      return {
        bad: md.querySelectorAll('script, img, svg, iframe, object, embed').length,
        attrs, hrefs: [...md.querySelectorAll('a')].map((a) => a.getAttribute('href')),
        text: md.textContent, strong: md.querySelectorAll('strong').length,
        pre: md.querySelectorAll('pre code').length,
      };
    }, payload);
    await page.waitForTimeout(300);
    const xss = await page.evaluate(() => window.__xss);
    assert(r.bad === 0, `${r.bad} active elements in the rendered answer`);
    assert(r.attrs.length === 0, `event handler attributes: ${r.attrs}`);
    assert(r.hrefs.every((h) => !h || !/^\s*javascript:/i.test(h)), `links: ${r.hrefs}`);
    assert(r.text.includes('<script>window.__xss = 1; alert("x")</script>') &&
           r.text.includes('<img src=x onerror="window.__xss = 2">'), 'the markup is not shown as text');
    assert(r.strong === 1 && r.pre === 1, 'Markdown itself no longer renders');
    assert(xss === 0, `injected script ran: window.__xss = ${xss}`);
    await page.$eval('.pane[data-side="a"] .msgs', (x) => x.scrollIntoView());
    await shot(page, 'xss-as-text');
    noErrors(page);
    await page.close();
  });

  await apiCheck('a prompt over the size limit gets a clear message', async () => {
    const page = await open(visitor, '/');
    await ready(page);
    const big = 'a'.repeat(400 * 1024);
    await page.fill('#prompt', big);
    const [resp] = await Promise.all([
      page.waitForResponse((x) => x.url().endsWith('/turns'), { timeout: 30000 }),
      page.click('#send'),
    ]);
    assert(resp.status() === 413, `a ${big.length}-byte prompt was answered ${resp.status()}`);
    await page.waitForFunction(() => document.querySelector('#notice').textContent.length > 0);
    const n = await page.textContent('#notice');
    assert(/too long/i.test(n), `the message was "${n}"`);
    assert((await page.inputValue('#prompt')).length === big.length, 'the prompt was lost');
    await page.fill('#prompt', 'short');
    await shot(page, 'prompt-too-large');
    noErrors(page);
    await page.close();
  });

  await check('every control has a label; Tab order follows the page', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await open(ctx);
    for (const path of ['/', '/leaderboard/', '/admin/']) {
      await page.goto(base + path);
      await page.waitForFunction(() => document.querySelector('#app').dataset.ready !== 'false');
      const bad = await page.evaluate(() => [
        ...[...document.querySelectorAll('input, select, textarea')]
          .filter((e) => !e.labels.length && !e.getAttribute('aria-label'))
          .map((e) => `${e.tagName.toLowerCase()}#${e.id}`),
        ...[...document.querySelectorAll('button, a[href]')]
          .filter((e) => !e.textContent.trim() && !e.getAttribute('aria-label'))
          .map((e) => `${e.tagName.toLowerCase()} without text`)]);
      assert(!bad.length, `${path}: unlabelled: ${bad.join(', ')}`);
    }
    await page.goto(base + '/');
    await ready(page);
    const order = [];
    for (let i = 0; i < 20; i++) {
      await page.keyboard.press('Tab');
      order.push(await page.evaluate(() => {
        const e = document.activeElement;
        return e.id || e.dataset.mode || e.getAttribute('href') || e.tagName;
      }));
    }
    console.log(`     Tab order on /: ${order.join(' → ')}`);
    const at = (x) => order.indexOf(x);
    assert(at('#prompt') === 0, 'the first Tab does not reach the skip link');
    assert(at('theme') > 0 && at('anonymous') > at('theme') && at('prompt') > at('direct') &&
           at('send') > at('prompt') && at('new') > at('send'), 'Tab order is not the page order');
    noErrors(page);
    await ctx.close();
  });

  await check('light and dark themes meet WCAG AA contrast', async () => {
    const ctx = await browser.newContext({ colorScheme: 'light', viewport: { width: 1000, height: 700 } });
    const page = await open(ctx, '/');
    await ready(page);
    const measure = () => page.evaluate(() => {
      const hex = (v) => {
        v = getComputedStyle(document.documentElement).getPropertyValue(v).trim();
        const m = /^#([0-9a-f]{6})$/i.exec(v);
        return m ? [0, 2, 4].map((i) => parseInt(m[1].slice(i, i + 2), 16)) : null;
      };
      const lum = (c) => c.map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; })
        .reduce((s, x, i) => s + x * [0.2126, 0.7152, 0.0722][i], 0);
      const ratio = (a, b) => { const [x, y] = [lum(hex(a)), lum(hex(b))].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
      const pairs = [['--fg', '--bg', 4.5], ['--muted', '--bg', 4.5], ['--muted', '--bg2', 4.5],
        ['--fg', '--bg2', 4.5], ['--accent', '--bg', 4.5], ['--accent-fg', '--accent', 4.5],
        ['--a', '--bg', 4.5], ['--b', '--bg', 4.5], ['--good', '--bg', 4.5], ['--bad', '--bg', 4.5],
        ['--warn-fg', '--warn-bg', 4.5], ['--err-fg', '--err-bg', 4.5], ['--fg', '--code-bg', 4.5],
        ['--border', '--bg', 3], ['--accent', '--bg2', 3]];
      return { theme: document.documentElement.dataset.theme || 'system',
               bg: getComputedStyle(document.body).backgroundColor,
               pairs: pairs.map(([f, b, min]) => ({ f, b, min, r: ratio(f, b) })) };
    });
    const light = await measure();
    await page.click('#theme');
    const dark = await measure();
    assert(dark.theme === 'dark' && light.bg !== dark.bg, `the toggle did not switch (${light.bg} -> ${dark.bg})`);
    for (const t of [light, dark]) {
      const bad = t.pairs.filter((p) => p.r < p.min);
      console.log(`     ${t.theme}: lowest contrast ${Math.min(...t.pairs.map((p) => p.r)).toFixed(2)}:1`);
      assert(!bad.length, `${t.theme}: ${bad.map((p) => `${p.f} on ${p.b} ${p.r.toFixed(2)}:1`).join(', ')}`);
    }
    await page.fill('#prompt', 'Dark theme');
    await shot(page, 'arena-dark');
    // The choice survives a reload; a dark-preferring system starts dark.
    await page.reload();
    await ready(page);
    assert(await page.evaluate(() => document.documentElement.dataset.theme) === 'dark', 'theme not kept');
    noErrors(page);
    await ctx.close();
    const ctx2 = await browser.newContext({ colorScheme: 'dark' });
    const p2 = await open(ctx2, '/leaderboard/');
    await ready(p2);
    const bg = await p2.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert(bg === 'rgb(15, 17, 21)', `prefers-color-scheme: dark gave background ${bg}`);
    await shot(p2, 'leaderboard-dark');
    await ctx2.close();
  });

  await check('375-pixel-wide layout', async () => {
    const ctx = await browser.newContext({ viewport: { width: 375, height: 812 },
                                           deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const page = await open(ctx, '/');
    await ready(page);
    if (withApi) {
      const r = await sendTurn(page, 'A short story about the sea.', { viaButton: true });
      assert(r.state === 'ready', `battle at 375 px ended "${r.state}" (${r.notice})`);
    }
    const box = await page.evaluate(() => {
      const rect = (s) => document.querySelector(s).getBoundingClientRect();
      return { scroll: document.documentElement.scrollWidth,
               a: rect('.pane[data-side="a"]').bottom, b: rect('.pane[data-side="b"]').top,
               right: Math.max(...[...document.querySelectorAll('button, textarea')]
                 .filter((x) => x.offsetParent).map((x) => x.getBoundingClientRect().right)),
               small: [...document.querySelectorAll('#votes button, #send, #new, #regen')]
                 .map((x) => x.getBoundingClientRect().height).filter((h) => h < 40) };
    });
    assert(box.scroll <= 375, `the page scrolls sideways: ${box.scroll} px wide`);
    assert(box.b >= box.a, 'the panes are not stacked');
    assert(box.right <= 375, `a control reaches ${box.right} px`);
    assert(!box.small.length, `touch targets under 40 px: ${box.small}`);
    await shot(page, 'arena-375');
    await page.goto(base + '/leaderboard/');
    await ready(page);
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= 375, `the leaderboard scrolls sideways: ${w} px`);
    await shot(page, 'leaderboard-375');
    noErrors(page);
    await ctx.close();
  });

  await apiCheck('the dashboard is refused without sign-in and shown after it', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await open(ctx, '/admin/');
    await page.waitForSelector('#app[data-ready="signin"]', { timeout: 15000 });
    assert(await page.isVisible('#signin-form') && await page.isHidden('#dash'), 'no sign-in form');
    const statsBuilt = (await ctx.request.get(base + '/api/admin/dashboard')).status() !== 404;
    for (const p of statsBuilt ? ['/api/admin/dashboard', '/api/admin/models'] : ['/api/admin/models']) {
      const s = (await ctx.request.get(base + p)).status();
      assert(s === 401, `${p} without sign-in answered ${s}`);
    }
    await page.fill('#password', 'not-the-password');
    await page.click('#signin-form button');
    await page.waitForFunction(() => /wrong password/i.test(document.querySelector('#notice').textContent));
    await shot(page, 'admin-signin');
    await page.fill('#password', adminPassword);
    await page.click('#signin-form button');
    await page.waitForSelector(`#app[data-ready="${statsBuilt ? 'true' : 'partial'}"]`,
                               { timeout: 15000 });
    assert(await page.isVisible('#dash'), 'dashboard not shown after sign-in');
    if (statsBuilt) {
      for (const id of ['#c-time', '#c-ttft', '#c-tps', '#c-cat', '#c-lang'])
        assert(await page.isVisible(id), `chart ${id} not shown`);
    } else {
      skipped.push('dashboard statistics (GET /api/admin/dashboard answers 404)');
      console.log('     GET /api/admin/dashboard answers 404 (not built yet): the statistics ' +
                  'were not checked; sign-in, the registry and the exports were');
    }
    const kpi = await page.textContent('#kpis');
    const rows = await page.$$eval('#t-models tbody tr[data-model]', (xs) => xs.map((x) => x.dataset.model));
    assert(rows.length >= 2, `models registry rows: ${rows}`);
    console.log(`     dashboard: ${kpi.replace(/\s+/g, ' ')}; registry: ${rows.join(', ')}`);
    await shot(page, 'admin-dashboard');
    // The on/off switch saves through PATCH, and back.
    const sel = `#t-models tr[data-model="${rows[0]}"] input[type=checkbox]`;
    const was = await page.isChecked(sel);
    for (const want of [!was, was]) {
      const [resp] = await Promise.all([
        page.waitForResponse((x) => x.request().method() === 'PATCH'),
        page.click(sel),
      ]);
      assert(resp.status() === 200, `PATCH answered ${resp.status()}`);
      const list = (await apiJson(ctx, '/api/admin/models')).body.models;
      const m = list.find((x) => x.name === rows[0]);
      assert(m && m.enabled === want, `${rows[0]} enabled is ${m && m.enabled}, want ${want}`);
    }
    // Adding a model through the form: a remote one (disabled), then the
    // same name again (409) and a bad name (400), each said in the notice.
    await page.click('#add-model summary');
    assert(await page.isHidden('#a-path') && await page.isVisible('#a-endpoint'),
           'remote fields not the ones shown');
    await page.selectOption('#a-kind', 'local');
    assert(await page.isVisible('#a-path') && await page.isHidden('#a-endpoint'),
           'local fields not the ones shown');
    await page.selectOption('#a-kind', 'remote');
    const addRemote = async (name) => {
      await page.fill('#a-name', name);
      await page.fill('#a-display', 'Form Model');
      await page.fill('#a-org', 'Nowhere');
      await page.selectOption('#a-license', 'closed');
      await page.fill('#a-endpoint', 'http://127.0.0.1:9/v1');
      await page.fill('#a-remote', 'x');
      await page.fill('#a-keyenv', 'FORM_MODEL_KEY');
      await page.fill('#a-pin', '1.5');
      await page.fill('#a-pout', '3');
      const [resp] = await Promise.all([
        page.waitForResponse((x) => x.request().method() === 'POST' &&
                                    x.url().endsWith('/api/admin/models')),
        page.click('#add-form button[type=submit]'),
      ]);
      return resp;
    };
    let resp = await addRemote('form-model');
    assert(resp.status() === 201, `adding answered ${resp.status()}`);
    await page.waitForSelector('#t-models tr[data-model="form-model"]');
    const added = (await apiJson(ctx, '/api/admin/models')).body.models.find((x) => x.name === 'form-model');
    assert(added && added.kind === 'remote' && added.enabled === false && added.price_in === 1.5 &&
           added.price_out === 3 && added.organization === 'Nowhere' && added.license === 'closed' &&
           added.display_name === 'Form Model' && added.endpoint === 'http://127.0.0.1:9/v1',
           `added model: ${JSON.stringify(added)}`);
    assert(/Added form-model/.test(await page.textContent('#notice')), 'no notice of the addition');
    assert(await page.inputValue('#a-name') === '', 'the form was not reset');
    resp = await addRemote('form-model');
    assert(resp.status() === 409, `adding it again answered ${resp.status()}`);
    await page.waitForFunction(() => /Could not add the model/.test(document.querySelector('#notice').textContent));
    resp = await addRemote('bad name');
    assert(resp.status() === 400, `a bad name answered ${resp.status()}`);
    await page.waitForFunction(() => /name:/.test(document.querySelector('#notice').textContent));
    await shot(page, 'admin-add-model');
    const links = await page.$$eval('#export-links a', (xs) => xs.map((a) => a.getAttribute('href')));
    assert(links.length === 3, 'export links missing');
    await page.click('#signout');
    await page.waitForSelector('#app[data-ready="signin"]');
    for (const p of statsBuilt ? ['/api/admin/dashboard', '/api/admin/models'] : ['/api/admin/models']) {
      const s = (await ctx.request.get(base + p)).status();
      assert(s === 401, `after sign-out ${p} answered ${s}`);
    }
    noErrors(page);
    await ctx.close();
  }, ['/api/admin/models']);

  await visitor.close();
  if (figures.firstLoad)
    console.log(`figures: first load ${figures.firstLoad.bytes} B, interactive ` +
                `${figures.firstLoad.ready && figures.firstLoad.ready.toFixed(0)} ms`);
  return { results, skipped };
}
