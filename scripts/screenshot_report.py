"""Screenshot a report page with headless Debian chromium (for docs/img/report.png).

    python scripts/screenshot_report.py report.html docs/img/report.png [--height 1900]

Takes the top of the page at 1280 px wide and stores it as a 256-colour PNG to keep it small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from chromium import Browser, find_chromium  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1900)
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        sys.exit("chromium is not installed (apt-get install -y chromium)")
    out = Path(args.out)
    with Browser(binary, width=args.width, height=args.height) as b:
        b.open(Path(args.page).resolve().as_uri())
        b.wait_for("document.getElementById('report').dataset.rendered")
        errors = b.errors()
        if errors:
            sys.exit(f"the page logged errors: {errors}")
        b.screenshot(out, full_page=False)
    from PIL import Image

    with Image.open(out) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
