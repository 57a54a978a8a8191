"""The diff page in a real headless browser: its script runs, nodes render, a changed node is highlighted.

Needs Chromium (Debian package ``chromium``; ``.ci/run`` installs it); skipped where it is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ir import diff, diff_html, graph_html
from tests.test_graph_view import CHAIN, WITHOUT_NEG, model

CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")

# As root in a container: no sandbox; no GPU; and no background connections (the network is closed).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def page(tmp_path):
    before, after = model(CHAIN), model(WITHOUT_NEG)
    paths = ("/models/a/chain.onnx", "/models/b/chain.onnx")
    text = diff_html.render_html(diff.structural_diff(before, after), title=diff_html.diff_title(paths), models=(before, after), paths=paths)
    path = tmp_path / "diff.html"
    path.write_text(text)
    data = json.loads(re.search(r'id="graph-data">(.*?)</script>', text, re.S).group(1))
    changed = next(key for key, node in data.items() if node["state"] == "changed")
    return path, changed


def test_the_script_runs_and_opening_a_node_shows_what_changed(tmp_path, page):
    path, changed = page
    dom = chromium(tmp_path, "--dump-dom", f"{path.as_uri()}#node={changed}").stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom)
    details = re.search(r'<aside id="details"[^>]*data-node="([^"]+)"[^>]*>(.*?)</aside>', dom, re.S)
    assert details and details.group(1) == changed
    assert "Sigmoid" in details.group(2) and "rewired" in details.group(2)
    assert re.search(rf'<g class="n changed sel" data-k="{changed}"', dom)  # selected on both sides


def test_searching_by_op_marks_the_matching_nodes_on_both_sides(tmp_path, page):
    path, _ = page
    dom = chromium(tmp_path, "--dump-dom", f"{path.as_uri()}#search=relu").stdout
    assert len(re.findall(r'<g class="n [a-z]+ hit"', dom)) == 2  # Relu, drawn before and after
    assert re.search(r'<span id="graph-found"[^>]*>1 found</span>', dom)


def test_the_screenshot_shows_nodes_and_the_changed_and_removed_ones_in_their_colours(tmp_path, page):
    import numpy as np
    from PIL import Image

    path, _ = page
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,1100", path.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)

    def count(colour: str) -> int:
        target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
        return int(np.all(np.abs(pixels - target) <= 3, axis=-1).sum())

    box = graph_html.NODE_WIDTH * graph_html.NODE_HEIGHT
    # The changed Sigmoid is drawn in both panels, the removed Neg in the left one; the text and
    # the border take part of each box, the legend adds a little.
    assert count(graph_html.COLOURS["changed"]) > 1.2 * box
    assert count(graph_html.COLOURS["removed"]) > 0.6 * box
    assert count(graph_html.COLOURS["same"]) > 1.2 * box  # Relu and the input, on both sides


def test_a_real_detector_diff_page_renders_every_box_and_opens_a_changed_node(tmp_path):
    from ir import io, shapes
    from models import zoo
    from passes.manager import PassManager

    if not zoo.available("ppocr-det"):
        pytest.skip("rapidocr-onnxruntime is not installed")
    path = zoo.model_path("ppocr-det")
    before = io.load(path)
    shapes.fix_input_shapes(before, zoo.default_input_shapes("ppocr-det"))
    after = PassManager("fold", verify="off").run(io.copy_model(before)).model
    text = diff_html.render_html(diff.structural_diff(before, after), models=(before, after), paths=(str(path), "folded"))
    page = tmp_path / "det.html"
    page.write_text(text)
    data = json.loads(re.search(r'id="graph-data">(.*?)</script>', text, re.S).group(1))
    changed = next(key for key, node in data.items() if node["state"] == "changed" and node["op"] == "Conv")
    dom = chromium(tmp_path, "--dump-dom", f"{page.as_uri()}#node={changed}").stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom)
    assert dom.count('<g class="n ') == text.count('<g class="n ') > 300
    assert re.search(rf'<aside id="details"[^>]*data-node="{changed}"', dom)
