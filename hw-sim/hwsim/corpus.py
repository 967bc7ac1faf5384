"""The barcode photographs in ``../shared/corpus/zxing-blackbox`` (read in place, never copied
into the project): detection rates of a decoder, for the tests and the bench."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("GATE_CORPUS", ROOT.parent / "shared" / "corpus" / "zxing-blackbox"))


def available() -> bool:
    return (CORPUS / "manifest.json").is_file()


def manifest() -> list[dict[str, Any]]:
    return json.loads((CORPUS / "manifest.json").read_text())


def detection_rates(decoder: Any) -> tuple[dict[str, list[int]], list[str]]:
    """Per folder [read, pictures] for the symbologies the decoder searches, and every picture
    where something other than the expected content was reported (a wrong read, or any read
    on a picture without a code)."""
    from drivers.camera import load_picture
    from drivers.decoders import read_picture

    rates: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    wrong = []
    for item in manifest():
        if item["format"] not in (*decoder.symbologies, "none"):
            continue
        folder = item["image"].split("/")[0]
        found = read_picture(decoder, load_picture(str(CORPUS / item["image"])))
        rates[folder][1] += 1
        if item.get("expected_file") is None:
            wrong += [f"{item['image']}: {s.text[:40]!r} on a picture without a code" for s in found]
            continue
        expected = (CORPUS / item["expected_file"]).read_bytes()
        if any(s.raw == expected or s.text == expected.decode("utf-8", "replace") for s in found):
            rates[folder][0] += 1
        elif found:
            wrong.append(f"{item['image']}: read {found[0].text[:40]!r}")
    return dict(rates), wrong


def share(rates: dict[str, list[int]], prefix: str) -> float:
    """The part of the pictures read, over the folders whose name starts with ``prefix``."""
    read = sum(r for folder, (r, _) in rates.items() if folder.startswith(prefix))
    total = sum(t for folder, (_, t) in rates.items() if folder.startswith(prefix))
    return read / total if total else 0.0
