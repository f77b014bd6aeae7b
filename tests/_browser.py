"""Open a Snakemake HTML report in a real headless browser and report what rendered.

The report is a single page (React) whose results appear when clicked. A probe script,
appended to a copy of the report, shows every result the way a click does (``app.setView``)
and records, per image, the decoded size of the ``<img>`` the page mounted, and per HTML
result, whether its ``<iframe>`` was mounted and how many table rows the browser's HTML
parser finds in it (the frame itself is a ``data:`` URL, opaque to the page's script).
Chromium's ``--dump-dom`` prints the page after its scripts ran; the probe's JSON is read
from there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

PROBE = r"""
<script>
window.addEventListener("load", async () => {
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = { images: {}, tables: {}, errors: [] };
  try {
    await wait(300);
    for (const [path, entry] of Object.entries(results)) {
      const uri = entry.data_uri;
      if (entry.mime_type.startsWith("image/")) {
        app.setView({ content: "img", contentPath: uri, resultPath: path });
        let img = null;
        for (let i = 0; i < 100; i++) {
          await wait(50);
          img = Array.from(document.images).find((x) => x.src === uri);
          if (img && img.complete && img.naturalWidth > 0) break;
        }
        out.images[path] = img ? [img.naturalWidth, img.naturalHeight] : null;
      } else if (entry.mime_type === "text/html") {
        app.setView({ content: "html", contentPath: uri, resultPath: path });
        let frame = null;
        for (let i = 0; i < 100 && !frame; i++) {
          await wait(50);
          frame = Array.from(document.querySelectorAll("iframe")).find((f) => f.src === uri);
        }
        const bytes = Uint8Array.from(atob(uri.split(",")[1]), (c) => c.charCodeAt(0));
        const doc = new DOMParser().parseFromString(
          new TextDecoder().decode(bytes), "text/html");
        out.tables[path] = {
          mounted: frame !== null,
          tables: doc.querySelectorAll("table").length,
          rows: doc.querySelectorAll("tr").length,
          title: doc.title,
        };
      }
    }
  } catch (e) {
    out.errors.push(String(e));
  }
  const pre = document.createElement("pre");
  pre.id = "facecluster-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def find_browser() -> str | None:
    """The first headless-capable Chromium on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def probe_report(report: Path, browser: str, workdir: Path, timeout: int = 180) -> dict:
    """Render ``report`` in ``browser`` with the probe; return the probe's findings."""
    html = report.read_text()
    probed = workdir / "probed_report.html"
    end = html.rfind("</body>")  # the page's own: results may hold "</body>" too
    if end < 0:
        raise AssertionError(f"{report}: no </body>; not an HTML report")
    probed.write_text(html[:end] + PROBE + html[end:])
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={workdir / 'chromium-profile'}",
            "--virtual-time-budget=60000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    found = re.search(r'<pre id="facecluster-probe">(.*?)</pre>', proc.stdout, flags=re.S)
    if not found:
        raise AssertionError(
            f"the probe did not report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(text.replace("&amp;", "&"))
