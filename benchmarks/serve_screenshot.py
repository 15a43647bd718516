"""The README's picture of the served page: a real `foveal serve` of MODEL, one image uploaded in
headless Chromium (Debian's package, driven by Playwright), the page saved as a PNG.

    python benchmarks/serve_screenshot.py runs/train ../shared/data/cifar10/test/cat/0001.jpg
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from foveal.serving.process import ServerProcess

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("image", type=Path)
    parser.add_argument("--method", default=None, help="the explanation method shown [default: the page's]")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs/images/serve-page.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with ServerProcess([args.model]) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 960, "height": 640})
        page.goto(server.url + "/", wait_until="load")
        page.wait_for_function("document.getElementById('method').options.length > 0")
        if args.method:
            page.select_option("#method", args.method)
        page.set_input_files("#file", str(args.image))
        page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        print(f"{page.text_content('#top-label')}; saved {args.out}")
        browser.close()


if __name__ == "__main__":
    main()
