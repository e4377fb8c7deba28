"""The widget in a real browser: headless Chromium renders a host page served from another origin.

`simqa serve` runs as a subprocess; the host page is served by a second, plain HTTP server, so the
widget's requests are cross-origin and pass only through `--allow-origin`. Chromium (Debian's
package; `.ci/run` installs it) loads the page, runs the widget and dumps the resulting DOM.
One indexed consultation carries injected markup that must show as text and never run.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from benchmarks.load import free_port, running_server
from tests.conftest import ROOT, SEED_000, SEEDS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")

EVIL = {
    "id": "evil",
    "title": "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">Twitching neck muscles",
    "question": "<script>document.body.setAttribute('data-pwned','script')</script> Muscle twitching in my neck and head.",
    "doctor": "<b>Mallory</b>",
    "department": "Neurology",
    "reply": "Twitching <img src=x onerror=alert(1)> is often benign.",
    "url": "javascript:document.body.setAttribute('data-pwned','link')",
}


def chromium(*args: str) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--virtual-time-budget=15000"]
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"simqa-chromium-{os.getpid()}"
    result = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    return result.stdout


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    (work / "evil.jsonl").write_text(json.dumps(EVIL) + "\n", encoding="utf-8")
    index = work / "index"
    subprocess.run([sys.executable, "-m", "search.cli", "index", str(SEEDS), str(work / "evil.jsonl"),
                    "--index", str(index), "--quiet"], cwd=ROOT, check=True, capture_output=True)
    host_port = free_port()
    host = f"http://127.0.0.1:{host_port}"
    site = work / "site"
    site.mkdir()
    (site / "host.html").write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>clinic</title></head>
<body><h1>A consultation page</h1>
<div id="panel" data-simqa-similar="{SEED_000}"></div>
<div id="found" data-simqa-query="muscle twitching in my neck" data-simqa-k="10"></div>
<div id="filtered" data-simqa-query="muscle twitching in my neck" data-simqa-doctor="Dr. Jiang Junyi"></div>
<div id="nothing" data-simqa-similar="{SEED_000}" data-simqa-department="Ophthalmology"></div>
<script src="API/widget.js"></script></body></html>""", encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", host_port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with running_server(index, "--allow-origin", host) as api:
            page = site / "host.html"
            page.write_text(page.read_text(encoding="utf-8").replace("API/widget.js", f"{api}/widget.js"), encoding="utf-8")
            yield {"api": api, "host": host, "work": work}
    finally:
        httpd.shutdown()


def widget_box(dom: str, box_id: str) -> str:
    match = re.search(rf'<div id="{box_id}"[^>]*>(.*?)</section></div>', dom, re.S)
    assert match, f"widget {box_id} did not render"
    return match.group(1)


def test_widget_renders_the_panel_cross_origin_and_escapes_everything(servers):
    dom = chromium("--dump-dom", servers["host"] + "/host.html")
    expected = json.load(urllib.request.urlopen(servers["api"] + f"/api/similar/{SEED_000}?k=4"))["hits"]

    panel = widget_box(dom, "panel")
    entries = re.findall(r'<article class="simqa-entry" data-simqa-id="([^"]+)">(.*?)</article>', panel, re.S)
    assert [i for i, _ in entries] == [h["id"] for h in expected]
    for (consultation_id, body), hit in zip(entries, expected):
        links = re.findall(r'<a class="simqa-(?:title|more)" href="([^"]+)">([^<]*)</a>', body)
        assert [href for href, _ in links] == [f"{servers['api']}/?id={consultation_id}"] * 2
        assert html.unescape(links[0][1]) == hit["title"]
        assert html.unescape(links[1][1]) == f"[Read More] {hit['title']}"
        assert f'<p class="simqa-doctor">Dr. {hit["doctor"]} reply Neurology</p>' in body
        assert html.unescape(re.search(r'<p class="simqa-question">(.*?)</p>', body, re.S).group(1)) == hit["question_excerpt"]

    # The Related FAQ list under the panel, as the API ranks it: Topic(Department).
    topics = json.load(urllib.request.urlopen(servers["api"] + f"/api/related-faq?id={SEED_000}&k=8"))["topics"]
    shown = re.findall(r'<li class="simqa-topic">([^<]*)</li>', panel.split('<section class="simqa-faq">', 1)[1])
    assert len(topics) == 8 and [html.unescape(t) for t in shown] == [f"{t['topic']}({t['department']})" for t in topics]

    filtered = widget_box(dom, "filtered")
    doctors = re.findall(r'<p class="simqa-doctor">([^<]*)</p>', filtered)
    assert doctors and set(doctors) == {"Dr. Jiang Junyi reply Neurology"}
    nothing = re.search(r'<div id="nothing"[^>]*>(.*?)</div>', dom, re.S).group(1)
    assert "simqa-panel" not in nothing and "simqa-faq" in nothing  # a filter matching nothing: no panel; the topics stay

    found = widget_box(dom, "found")
    assert 'data-simqa-id="evil"' in found
    assert "&lt;img src=x onerror=" in found and "&lt;script&gt;" in found and "&lt;b&gt;Mallory&lt;/b&gt;" in found
    assert "javascript:" not in found  # a non-http(s) url falls back to simqa's own page
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]
    assert "<script>document.body" not in dom


def test_search_page_and_screenshot(servers):
    dom = chromium("--dump-dom", servers["api"] + "/?q=" + urllib.request.quote("head shakes when nervous"))
    assert dom.count('<article class="hit">') == 10
    assert "<mark>" in dom  # matched terms highlighted
    assert "<h2>Related FAQ</h2>" in dom and dom.count('<li class="topic">') == 8
    shot = servers["work"] / "widget.png"
    chromium(f"--screenshot={shot}", "--window-size=900,1300", servers["host"] + "/host.html")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SIMQA_SCREENSHOT"):
        shutil.copy(shot, os.environ["SIMQA_SCREENSHOT"])
