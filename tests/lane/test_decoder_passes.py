"""The camera's passes on what a lane really sees: PDF417 tickets held a few degrees off level
(rendered GT1 tickets, both signs, 4-12°), the ZXing photographs read by the camera's passes
alone (no exhaustive search: one pass per frame is all a live camera gets), and nothing read
in a scene without a code."""

from __future__ import annotations

import numpy as np
import pytest
from hwsim import corpus
from hwsim.camera import Look, SimulatedCamera, photograph

from drivers.camera import load_picture
from drivers.decoders import Symbol, ZxingDecoder, camera_passes

needs_corpus = pytest.mark.skipif(not corpus.available(), reason=f"barcode photos not found at {corpus.CORPUS} (GATE_CORPUS)")


def camera_reads(decoder: ZxingDecoder, frame: np.ndarray) -> list[Symbol]:
    """What one round of the camera's schedule reads in a frame held still (each pass once)."""
    for scan in dict.fromkeys(camera_passes(decoder.symbologies)):
        found = decoder.decode(frame, scan)
        if found:
            return found
    return []


TURNS = [sign * t for t in (4, 5, 6, 7, 8, 9, 10, 11, 12) for sign in (1, -1)]


def turned_tickets(tickets) -> list[tuple[str, np.ndarray]]:
    frames = []
    for i, turn in enumerate(TURNS):
        text = tickets.static()
        look = Look(medium="paper" if i % 2 else "phone", size=0.9, turn=turn, tilt=0.05 * (i % 3), noise=2)
        frames.append((text, photograph(text, "pdf417", look, seed=i)))
    return frames


def test_pdf417_held_up_to_twelve_degrees_off_level_is_read(tickets) -> None:
    decoder = ZxingDecoder(("qr", "pdf417", "aztec"))
    read = sum(text in [s.text for s in camera_reads(decoder, frame)] for text, frame in turned_tickets(tickets))
    assert read / len(TURNS) >= 0.9, f"{read}/{len(TURNS)} read"


@pytest.mark.xfail(strict=True, reason="zxing-cpp misreads one of these PDF417 frames (turned 4°) on the as-printed "
                                       "pass, with valid=True: a wrong text that the lane refuses (unreadable), then "
                                       "reads right on a later pass. Open: a second read before a PDF417 counts")
def test_no_pass_misreads_a_turned_pdf417(tickets) -> None:
    decoder = ZxingDecoder(("qr", "pdf417", "aztec"))
    wrong = []
    for text, frame in turned_tickets(tickets):
        for scan in dict.fromkeys(camera_passes(decoder.symbologies)):
            wrong += [scan.name for s in decoder.decode(frame, scan) if s.text != text]
    assert not wrong


def test_no_pass_reads_anything_in_an_idle_scene() -> None:
    decoder = ZxingDecoder(("qr", "pdf417", "aztec"))
    for frame in SimulatedCamera()._idle:
        for scan in dict.fromkeys(camera_passes(decoder.symbologies)):
            assert decoder.decode(frame, scan) == [], scan.name


@needs_corpus
def test_the_camera_passes_alone_read_nine_in_ten_pdf417_photographs_and_nothing_wrong() -> None:
    decoder = ZxingDecoder(("qr", "pdf417", "aztec"))
    rates: dict[str, list[int]] = {}
    wrong = []
    for item in corpus.manifest():
        if item["format"] not in ("qr", "pdf417", "aztec", "none"):
            continue
        folder = item["image"].split("/")[0]
        found = camera_reads(decoder, load_picture(str(corpus.CORPUS / item["image"])))
        counts = rates.setdefault(folder, [0, 0])
        counts[1] += 1
        if item.get("expected_file") is None:
            wrong += [f"{item['image']}: {s.text[:30]!r} without a code" for s in found]
            continue
        expected = (corpus.CORPUS / item["expected_file"]).read_bytes()
        if any(s.raw == expected or s.text == expected.decode("utf-8", "replace") for s in found):
            counts[0] += 1
        elif found:
            wrong.append(f"{item['image']}: {found[0].text[:30]!r}")
    assert not wrong
    assert corpus.share(rates, "pdf417") >= 0.90, rates
    assert corpus.share(rates, "qrcode") >= 0.90 and corpus.share(rates, "aztec") >= 0.90, rates
