// Drives Debian chromium (headless) through playwright-core for
// tests/test_enrollment_browser.py: enrollment in the browser (TSV download
// method 3). One JSON argument: {"link", "password", "pin", "downloadTo", "artifacts"}.
// Opens the link, types the password twice (or, with "pin", the access PIN the
// page asks for), presses the button, waits for the
// PKCS#12 the page builds and saves it; then opens the link again (used).
// Prints one JSON line with what it saw; exits non-zero on failure.
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = { console: [], requests: [] };
let page = null;
try {
  const context = await browser.newContext({ acceptDownloads: true, locale: "ja-JP" });
  page = await context.newPage();
  page.on("console", (m) => seen.console.push(`${m.type()}: ${m.text()}`));
  page.on("request", (r) => {
    if (r.method() === "POST") seen.requests.push({ url: r.url(), body: r.postData() });
  });
  const response = await page.goto(args.link);
  seen.status = response.status();
  seen.csp = response.headers()["content-security-policy"];
  seen.pageText = await page.locator("body").innerText();
  if (args.pin) {
    await page.getByLabel("アクセスPIN / Access PIN").fill(args.pin);
  } else {
    await page.getByLabel("パスワード / Password", { exact: true }).fill(args.password);
    await page.getByLabel("パスワード(確認) / Password again").fill(args.password);
  }
  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: 120000 }),
    page.getByRole("button", { name: /Make the key/ }).click(),
  ]);
  await download.saveAs(args.downloadTo);
  seen.filename = download.suggestedFilename();
  seen.statusText = await page.locator("#status").innerText();
  if (args.artifacts) {
    await page.screenshot({ path: `${args.artifacts}/enroll-done${args.pin ? "-pin" : ""}.png`, fullPage: true });
  }

  const again = await context.newPage();
  const second = await again.goto(args.link);
  seen.againStatus = second.status();
  seen.againText = await again.locator("body").innerText();
  console.log(JSON.stringify(seen));
} catch (e) {
  if (page) console.error("page text at failure:", await page.locator("body").innerText().catch(() => "?"));
  console.error("console:", JSON.stringify(seen.console));
  throw e;
} finally {
  await browser.close();
}
