// Drives Debian's chromium through playwright-core for the dashboard tests
// (crates/cli/tests/cli/dashboard.rs): logs in with TOKEN through the login form (unless TOKEN
// is "-"; "pw:USER:PASSWORD" logs in with a user name and password instead), then visits each PATH (PATH=NAME also saves a screenshot NAME.png in SHOTS) and
// prints, as one JSON line, what each page showed. A PATH that is a whole URL (http://...) is
// another site's page, which may send the browser on to the vault (a cross-site form): the
// browser waits until it has left that site's page.
//
//   node visit.cjs URL TOKEN SHOTS PATH[=NAME]...
//
// FERRY_TEST_BROWSER: the playwright-core package folder; FERRY_TEST_CHROMIUM: the browser.
const [, , url, token, shots, ...paths] = process.argv;
const { chromium } = require(process.env.FERRY_TEST_BROWSER);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.FERRY_TEST_CHROMIUM,
    // Root in CI: chromium's sandbox needs user namespaces it may not have there.
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const out = { pages: [] };
  if (token !== '-') {
    await page.goto(url + '/login');
    if (token.startsWith('pw:')) {
      const [, user, ...pw] = token.split(':');
      await page.fill('#user', user);
      await page.fill('#password', pw.join(':'));
    } else {
      await page.fill('#token', token);
    }
    await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
    await page.waitForLoadState('load');
    out.after_login = new URL(page.url()).pathname;
    out.login_error = (await page.locator('#login-error').count()) ? await page.locator('#login-error').innerText() : null;
    out.cookies = (await context.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite }));
  }
  for (const p of paths) {
    const [path, shot] = p.split('=');
    let resp;
    if (/^https?:/.test(path)) {
      // The first answer from elsewhere (the vault's to the cross-site form) is the status.
      const site = new URL(path).origin;
      const left = page.waitForResponse((r) => new URL(r.url()).origin !== site, { timeout: 15000 });
      await page.goto(path, { waitUntil: 'commit' });
      resp = await left;
      await page.waitForURL((u) => u.origin !== site, { timeout: 15000 });
      await page.waitForLoadState('load');
    } else {
      resp = await page.goto(url + path);
    }
    const html = await page.content();
    out.pages.push({
      path,
      final: new URL(page.url()).pathname,
      status: resp ? resp.status() : 0,
      text: await page.innerText('body'),
      forms: await page.$$eval('form', (fs) => fs.map((f) => f.getAttribute('action'))),
      buttons: await page.$$eval('button, input[type=submit]', (bs) => bs.map((b) => b.innerText || b.value)),
      charts: await page.locator('svg.chart').count(),
      token_in_page: token !== '-' && html.includes(token),
    });
    if (shot) await page.screenshot({ path: `${shots}/${shot}.png`, fullPage: true });
  }
  console.log(JSON.stringify(out));
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
