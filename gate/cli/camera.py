"""``gate camera snapshot``: the running lane's camera frame, for aiming and focusing.

The lane holds the camera, so nothing else can open it (``rpicam-still`` fails while the lane
runs). This asks the lane for its newest frame through the status socket, saves it as PNG,
reads it with the config's decoder as the lane does (every pass, then the exhaustive search),
and prints the frame's sharpness. What is read is shown by symbology, ticket format, length and
the first characters of its SHA-256: never the ticket's text.

The frame may show a patron's ticket (it is the frame the lane decodes), and the socket is
open to every technician: the lane blacks out every code it reads in it before it answers
(``CameraReader.snapshot``) and says what it read there; the PNG never holds a readable code.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import sys
import time
from typing import Any

from gate.cli.common import UsageError

EXIT_OK, EXIT_NOTHING, EXIT_FAILED = 0, 1, 1  # 1: no code in the frame, or no frame; 2: usage or config
MAX_PIXELS = 16_000_000  # gate decode's limit: the lane's answer is parsed as any input is


def _frame(answer: dict[str, Any]) -> tuple[bytes, Any]:
    """The PNG's bytes and its luminance, checked before any pixel is decoded."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        png = base64.b64decode(answer["png"], validate=True)
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG" or image.width * image.height > MAX_PIXELS:
                raise ValueError(f"not a camera frame: {image.format} {image.width}x{image.height}")
            return png, np.asarray(image.convert("L"))
    except (KeyError, TypeError, binascii.Error, ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UsageError(f"the lane's answer holds no readable frame ({exc})") from None


def _lane_found(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """What the lane read and blacked out, as it says (checked: it is input like any other)."""
    items = answer.get("found") or []
    if not isinstance(items, list):
        raise UsageError("the lane's answer has a malformed 'found'")
    found = []
    for item in items[:16]:
        if not (isinstance(item, dict) and isinstance(item.get("symbology"), str) and isinstance(item.get("chars"), int)
                and isinstance(item.get("sha256"), str)):
            raise UsageError("the lane's answer has a malformed 'found' item")
        ticket_format = item.get("ticket_format")
        found.append({"symbology": item["symbology"][:16], "chars": item["chars"], "sha256": item["sha256"][:12],
                      "ticket_format": ticket_format[:16] if isinstance(ticket_format, str) else None, "masked": True})
    return found


def _found(text: str, symbology: str, ticket_formats: Any) -> dict[str, Any]:
    from gate import formats

    ticket = formats.identify(text, ticket_formats)
    return {"symbology": symbology, "ticket_format": ticket.name if ticket else None, "chars": len(text),
            "sha256": hashlib.sha256(text.encode()).hexdigest()[:12]}


def cmd_snapshot(args: argparse.Namespace) -> int:
    from drivers.camera import Region, crop, sharpness
    from drivers.decoders import DecoderUnavailable, make_decoder, read_picture
    from gate import config as config_module
    from gate import formats
    from gate.field.status_server import ask

    config = config_module.load(args.config)
    camera, path = config.camera, config.status.socket
    if camera is None:
        raise UsageError(f"{config.path} has no [camera]")
    if not path:
        raise UsageError(f"{config.path} has no [status] socket: the running lane cannot be asked")
    try:
        answer = ask(path, "snapshot", timeout=args.timeout)
    except OSError as exc:
        print(f"gate: no lane answers on {path} ({getattr(exc, 'strerror', None) or exc}): is it running? systemctl status gate",
              file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:
        print(f"gate: the lane's answer is not JSON ({exc})", file=sys.stderr)
        return EXIT_FAILED
    if answer.get("event") != "snapshot":
        print(f"gate: the lane gave no frame: {answer.get('problem', answer)}", file=sys.stderr)
        return EXIT_FAILED
    png, frame = _frame(answer)
    out = args.out or time.strftime("snapshot-%Y%m%d-%H%M%S.png")
    try:
        with open(out, "wb") as file:
            file.write(png)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    region = Region(*camera.region) if camera.region and frame.shape == (camera.height, camera.width) else None
    view = crop(frame, region, camera.downscale)
    try:
        decoder = make_decoder(camera.decoder, camera.symbologies)
    except DecoderUnavailable as exc:
        raise UsageError(str(exc)) from None
    ticket_formats = formats.enabled(tuple(formats.FORMATS))
    found = _lane_found(answer)
    found += [_found(s.text, s.symbology, ticket_formats) for s in read_picture(decoder, view)]  # a lane without masking
    lane_sharpness = answer.get("sharpness")  # the unmasked frame's: a black box is sharp edges
    sharp = round(float(lane_sharpness) if isinstance(lane_sharpness, (int, float)) else sharpness(view), 1)
    masked = answer.get("masked") if isinstance(answer.get("masked"), int) else 0
    if args.json:
        print(json.dumps({"file": out, "width": frame.shape[1], "height": frame.shape[0], "age_s": answer.get("age_s"),
                          "sharpness": sharp, "region": answer.get("region"), "found": found, "masked": masked}))
        return EXIT_OK if found else EXIT_NOTHING
    where = f"region {camera.region}" if region is not None else "whole frame"
    print(f"{out}: {frame.shape[1]}x{frame.shape[0]}, {answer.get('age_s', 0):.2f} s old")
    print(f"sharpness {sharp} ({where}; variance of the Laplacian: higher is sharper, compare while focusing)")
    for item in found:
        if item["ticket_format"]:
            kind = f"{item['ticket_format']} ticket"
        elif item.get("masked"):
            kind = "ticket format not told by the lane"
        else:
            kind = "not a ticket format this gate knows"
        where = ", blacked out in the PNG" if item.get("masked") else ""
        print(f"read: {item['symbology']} ({kind}), {item['chars']} characters, sha256 {item['sha256']}{where}")
    if masked:
        print(f"a code was read and masked: {masked} area(s) blacked out in {out} (tickets never leave the lane); "
              "the rest of the frame is as the camera sees it, for aiming")
    if not found:
        print(f"read: nothing ({decoder.name}: {', '.join(camera.symbologies)})")
    return EXIT_OK if found else EXIT_NOTHING


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("camera", help="the running lane's camera: a snapshot for aiming and focusing")
    camera_sub = p.add_subparsers(dest="camera_command", required=True, metavar="COMMAND")
    s = camera_sub.add_parser("snapshot", parents=[common],
                              help="save the lane's newest camera frame as PNG; print what it reads and how sharp it is")
    s.add_argument("--out", metavar="FILE.png", help="where to save it (default: snapshot-DATE-TIME.png here)")
    s.add_argument("--json", action="store_true", help="one JSON line instead of text")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the lane (default 10)")
    s.set_defaults(fn=cmd_snapshot)

