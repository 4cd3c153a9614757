#!/usr/bin/env node
// Loads DHAT files written by `Profile::write_dhat` into valgrind's own
// viewer, dh_view.html, in headless Chromium, and checks that it draws the
// tree without error, under every sort metric it offers. Not part of CI
// (it needs Chromium and valgrind's viewer); run by hand:
//
//   apt-get install -y chromium valgrind
//   node scripts/dh_view_check.js                  # a fresh traced run
//   node scripts/dh_view_check.js FILE.json...     # given files
//
// With no file, it runs `cargo test --test dhat_view` with
// TRACEALLOC_DHAT_OUT set, which writes a profile of blocks allocated at
// known lines (run.json), the live blocks of a snapshot (run-live.json) and
// an empty profile (run-empty.json), and expects the run's functions in the
// drawn tree. Two broken copies of run.json (no `tg`; a program point
// repeated) must make the viewer fail: they show the check can fail.
//
// The viewer reads files through an <input type=file>; the page here is
// dh_view.html with the file inlined and a few lines that hand it to that
// input (DataTransfer), so the viewer's own loadFile / buildTree /
// displayTree run. Environment: DH_VIEW_DIR (default: the folder of
// dh_view.html in the valgrind package), CHROMIUM (default: chromium),
// SCREENSHOT (default: target/dh_view.png).

"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");

const CHROMIUM = process.env.CHROMIUM || "chromium";

function dhViewDir() {
  if (process.env.DH_VIEW_DIR) return process.env.DH_VIEW_DIR;
  const files = execFileSync("dpkg", ["-L", "valgrind"], { encoding: "utf8" });
  const html = files.split("\n").find((f) => f.endsWith("/dh_view.html"));
  if (!html) throw new Error("dh_view.html not found in the valgrind package");
  return path.dirname(html);
}

// The page's driver: hands the inlined file to the viewer's input, waits
// for the tree (or an error), then redraws under each sort metric, and
// writes what it saw into <div id="check-result"> as JSON.
const DRIVER = `
window.addEventListener("load", () => setTimeout(checkRun, 0));
function checkRun() {
  const r = { windowErrors: [], metrics: [] };
  window.addEventListener("error", (ev) => r.windowErrors.push(String(ev.message)));
  const errorText = () => {
    const e = document.querySelector(".error");
    return e ? e.textContent : null;
  };
  const done = () => {
    const pre = document.querySelector("pre");
    r.text = pre ? pre.textContent : "";
    const d = document.createElement("div");
    d.id = "check-result";
    d.textContent = JSON.stringify(r);
    document.body.appendChild(d);
  };
  const text = document.getElementById("dhat-data").textContent;
  const dt = new DataTransfer();
  dt.items.add(new File([text], document.getElementById("dhat-data").dataset.name));
  gInput.files = dt.files;
  gInput.dispatchEvent(new Event("change"));
  let polls = 0;
  const wait = () => {
    const err = errorText();
    if (!document.querySelector("pre") && !err) {
      if (++polls > 500) { r.loadError = "timed out"; return done(); }
      return setTimeout(wait, 10);
    }
    r.loadError = err;
    if (!err && document.getElementById("dhat-data").dataset.metrics === "yes") {
      const first = gSelect.selectedIndex;
      for (const [i, opt] of [...gSelect.options].entries()) {
        if (opt.disabled) { r.metrics.push({ label: opt.label, disabled: true }); continue; }
        gSelect.selectedIndex = i;
        try { changeSortMetric(); } catch (e) { /* shown in the page */ }
        const pre = document.querySelector("pre");
        r.metrics.push({ label: opt.label, error: errorText(),
                         pps: pre ? (pre.textContent.match(/PP [\\d.]+\\/\\d+/g) || []).length : 0 });
      }
      gSelect.selectedIndex = first;
      try { changeSortMetric(); } catch (e) { }
    }
    done();
  };
  wait();
}
`;

// Writes the check page for `file` into `dir`, beside copies of the
// viewer's files; returns its path.
function page(dir, viewer, file, metrics = true) {
  for (const f of ["dh_view.js", "dh_view.css"]) {
    fs.copyFileSync(path.join(viewer, f), path.join(dir, f));
  }
  // JSON has '<' only inside strings, where \\u003c means the same.
  const data = fs.readFileSync(file, "utf8").replace(/</g, "\\u003c");
  const inject =
    `<script id="dhat-data" type="application/json" data-name="${path.basename(file)}" ` +
    `data-metrics="${metrics ? "yes" : "no"}">` +
    `${data}</script>\n<script>${DRIVER}</script>\n</head>`;
  const html = fs.readFileSync(path.join(viewer, "dh_view.html"), "utf8");
  if (!html.includes("</head>")) throw new Error("dh_view.html has no </head>");
  const out = path.join(dir, path.basename(file, ".json") + (metrics ? "" : "-shot") + ".html");
  fs.writeFileSync(out, html.replace("</head>", inject));
  return out;
}

const CHROME_ARGS = ["--headless", "--disable-gpu", "--no-sandbox",
  "--allow-file-access-from-files", "--virtual-time-budget=10000"];

function view(dir, viewer, file) {
  const p = page(dir, viewer, file);
  const dom = execFileSync(CHROMIUM, [...CHROME_ARGS, "--dump-dom", "file://" + p],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 1 << 28 });
  const m = dom.match(/<div id="check-result">([\s\S]*?)<\/div>/);
  if (!m) throw new Error(`${file}: the page wrote no result`);
  const unescape = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">")
    .replace(/&nbsp;/g, "\u00a0").replace(/&amp;/g, "&");
  return { page: p, result: JSON.parse(unescape(m[1])) };
}

function screenshot(dir, viewer, file, png) {
  const pagePath = page(dir, viewer, file, false);
  fs.mkdirSync(path.dirname(png), { recursive: true });
  execFileSync(CHROMIUM, [...CHROME_ARGS, "--hide-scrollbars", "--window-size=1400,1500",
    `--screenshot=${path.resolve(png)}`, "file://" + pagePath],
    { stdio: ["ignore", "ignore", "ignore"] });
}

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

// Checks that `file` draws without error; `expect` are texts the drawn
// tree must contain.
function good(dir, viewer, file, expect) {
  const { result: r } = view(dir, viewer, file);
  const name = path.basename(file);
  check(r.loadError === null && r.windowErrors.length === 0,
    `${name}: loaded without error` +
    (r.loadError || r.windowErrors.length ? `: ${r.loadError} ${r.windowErrors}` : ""));
  const drawn = r.metrics.filter((m) => !m.disabled);
  const bad = drawn.filter((m) => m.error !== null || m.pps === 0);
  check(drawn.length > 0 && bad.length === 0,
    `${name}: drawn under ${drawn.length} sort metrics` +
    (bad.length ? `; failing: ${JSON.stringify(bad)}` : "") +
    `; ${r.metrics.length - drawn.length} disabled (accesses: bkacc false)`);
  check(r.text.includes("Mode:    rust-heap"), `${name}: shows "Mode:    rust-heap"`);
  check(!/NaN|undefined/.test(r.text), `${name}: no NaN or undefined in the tree`);
  for (const e of expect) check(r.text.includes(e), `${name}: the tree shows ${e}`);
  const pps = (r.text.match(/PP [\d.]+\/\d+/g) || []);
  console.log(`     ${pps.length} tree nodes drawn; first lines:\n` +
    r.text.split("\n").filter((l) => l.trim()).slice(0, 16).map((l) => "     | " + l).join("\n"));
}

// Checks that the viewer refuses `json` with `message`.
function broken(dir, viewer, name, json, message) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify(json));
  const { result: r } = view(dir, viewer, file);
  check(r.loadError !== null && r.loadError.includes(message),
    `${name}: refused by the viewer: ${r.loadError}`);
}

function main() {
  const viewer = dhViewDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dh-view-check-"));
  console.log(`viewer: ${viewer}/dh_view.html; ${execFileSync(CHROMIUM, ["--version"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()}; pages in ${dir}`);
  let files = process.argv.slice(2);
  let expect = [];
  if (files.length === 0) {
    const run = path.join(dir, "run.json");
    console.log("running: cargo test --test dhat_view (TRACEALLOC_DHAT_OUT=" + run + ")");
    execFileSync("cargo", ["test", "--quiet", "--test", "dhat_view"], {
      env: { ...process.env, TRACEALLOC_DHAT_OUT: run },
      stdio: ["ignore", "inherit", "inherit"],
    });
    files = [run, path.join(dir, "run-live.json"), path.join(dir, "run-empty.json")];
    expect = ["load_model (tests/dhat_view.rs:", "churn (tests/dhat_view.rs:",
      "fill_cache (tests/dhat_view.rs:"];
  }
  for (const [i, f] of files.entries()) {
    good(dir, viewer, f, i === 0 ? expect : []);
  }
  // The check can fail: the viewer's own errors for two broken copies.
  const data = JSON.parse(fs.readFileSync(files[0], "utf8"));
  const noTg = { ...data };
  delete noTg.tg;
  broken(dir, viewer, "no-tg.json", noTg, "data file is missing a field: tg");
  if (data.pps.length > 0) {
    const twice = { ...data, pps: [...data.pps, data.pps[0]] };
    broken(dir, viewer, "repeated.json", twice, "data file contains a repeated location");
  }
  const png = process.env.SCREENSHOT || "target/dh_view.png";
  screenshot(dir, viewer, files[0], png);
  console.log(`screenshot of ${path.basename(files[0])}: ${png}`);
  console.log(failures === 0 ? "dh_view check: all passed" : `dh_view check: ${failures} FAILED`);
  process.exit(failures === 0 ? 0 : 1);
}

main();
