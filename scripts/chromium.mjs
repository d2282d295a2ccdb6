// How the Playwright tests and benchmarks start Debian's Chromium: its binary (CHROMIUM=
// to use another) with the flags of scripts/webdriver.json, the wasm-bindgen tests'
// (headless, no sandbox, no GPU, no QUIC, nothing fetched in the background), so that
// one list serves every browser this repository starts.
import { readFileSync } from "node:fs";

const chrome = JSON.parse(
  readFileSync(new URL("./webdriver.json", import.meta.url), "utf8"),
)["goog:chromeOptions"];

/** The binary. */
export const CHROMIUM = process.env.CHROMIUM ?? chrome.binary;

/** Options for `chromium.launch()` and `chromium.launchPersistentContext()`. */
export const chromiumOptions = {
  executablePath: CHROMIUM,
  headless: true,
  args: chrome.args,
};
