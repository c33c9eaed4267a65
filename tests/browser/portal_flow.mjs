// Drives Debian chromium (headless) through playwright-core for
// tests/test_portal_browser.py. One JSON argument says what to do:
//   {"mode": "officer", "url", "pfx", "passphrase", "badTsv", "goodTsv", "artifacts"}
//     signs in with the officer's client certificate, uploads a TSV with an
//     error, reads the row error, uploads the fixed file and applies it, then
//     screenshots the dashboard (and other pages, both languages).
//   {"mode": "anonymous", "url"}  a browser without a certificate.
//   {"mode": "subscriber", "link", "downloadTo"}  opens a retrieval link, downloads.
// Prints one JSON line with what it saw; exits non-zero on failure.
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2]);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = {};
let current = null; // the page to photograph if something fails
try {
  if (args.mode === "anonymous") {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const response = await page.goto(args.url + "/");
    seen.status = response.status();
    seen.text = await page.locator("main").innerText();
    seen.lang = await page.locator("html").getAttribute("lang");
  } else if (args.mode === "subscriber") {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    await page.goto(args.link);
    seen.pageText = await page.locator("body").innerText();
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: /Download/ }).click(),
    ]);
    await download.saveAs(args.downloadTo);
    seen.filename = download.suggestedFilename();
  } else if (args.mode === "officer") {
    const origin = new URL(args.url).origin;
    const context = await browser.newContext({
      ignoreHTTPSErrors: true, // the server certificate names portal.server_name, not 127.0.0.1
      locale: "ja-JP",
      viewport: { width: 1200, height: 900 },
      clientCertificates: [{ origin, pfxPath: args.pfx, passphrase: args.passphrase }],
    });
    const page = await context.newPage();
    current = page;
    let response = await page.goto(args.url + "/");
    seen.dashboardStatus = response.status();
    seen.signedInAs = await page.locator(".who").innerText();

    // Upload a TSV with an error: check it.
    await page.getByRole("link", { name: "TSV申請" }).click();
    await page.getByLabel("TSVファイル").setInputFiles(args.badTsv);
    await page.getByRole("button", { name: "確認" }).click();
    await page.waitForSelector("#row-errors");
    seen.errorRows = await page.$$eval("#row-errors tbody tr", (trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => td.innerText.trim())),
    );
    await page.screenshot({ path: `${args.artifacts}/tsv-errors-ja.png`, fullPage: true });
    await page.goto(page.url() === args.url + "/tsv" ? args.url + "/tsv?lang=en" : args.url + "/tsv?lang=en");
    await page.getByLabel("TSV file").setInputFiles(args.badTsv);
    await page.getByRole("button", { name: "Check" }).click();
    await page.waitForSelector("#row-errors");
    await page.screenshot({ path: `${args.artifacts}/tsv-errors-en.png`, fullPage: true });
    await page.goto(args.url + "/tsv?lang=ja");

    // The fixed file: check, then apply (issue).
    await page.getByLabel("TSVファイル").setInputFiles(args.goodTsv);
    await page.getByRole("button", { name: "確認" }).click();
    seen.checkOk = await page.locator("#tsv-ok").innerText();
    await page.getByLabel("TSVファイル").setInputFiles(args.goodTsv);
    await page.getByRole("button", { name: "申請(発行)" }).click();
    seen.applied = await page.locator("#tsv-applied").innerText();
    seen.serial = (await page.locator("#row-results tbody tr td a").first().innerText()).trim();
    await page.screenshot({ path: `${args.artifacts}/tsv-applied-ja.png`, fullPage: true });

    // Certificate detail (both languages), EAB page (issue one: key shown once).
    await page.locator("#row-results tbody tr td a").first().click();
    seen.detailTitle = await page.locator("h1").innerText();
    await page.screenshot({ path: `${args.artifacts}/certificate-ja.png`, fullPage: true });
    await page.goto(page.url() + "?lang=en");
    await page.screenshot({ path: `${args.artifacts}/certificate-en.png`, fullPage: true });
    await page.goto(args.url + "/eab");
    await page.getByRole("button", { name: "Issue" }).click();
    seen.eabKid = await page.locator("#new-kid").innerText();
    await page.screenshot({ path: `${args.artifacts}/eab-en.png`, fullPage: true });
    await page.goto(args.url + "/eab?lang=ja");
    seen.eabKeyShownAgain = (await page.locator("#new-hmac").count()) > 0;
    await page.screenshot({ path: `${args.artifacts}/eab-ja.png`, fullPage: true });

    // The dashboard, both languages; the Japanese one is the artifact the issue asks for.
    await page.goto(args.url + "/?lang=en");
    await page.screenshot({ path: `${args.artifacts}/dashboard-en.png`, fullPage: true });
    await page.goto(args.url + "/?lang=ja");
    seen.dashboardText = await page.locator("main").innerText();
    seen.chartBars = await page.locator("svg rect.bar").count();
    await page.screenshot({ path: `${args.artifacts}/dashboard.png`, fullPage: true });
    await page.goto(args.url + "/revocations");
    await page.screenshot({ path: `${args.artifacts}/revocations-ja.png`, fullPage: true });
  } else {
    throw new Error(`unknown mode ${args.mode}`);
  }
  console.log(JSON.stringify(seen));
} catch (e) {
  if (current && args.artifacts) {
    await current.screenshot({ path: `${args.artifacts}/failure.png`, fullPage: true });
    console.error("page text at failure:", await current.locator("body").innerText());
  }
  throw e;
} finally {
  await browser.close();
}
