"""``gate decode IMAGE…``: what the camera pipeline reads from pictures.

For a technician aiming the camera (save a frame, decode it here) and for anyone asking why a
ticket does not read. Pictures are read with the decoder, symbologies, region of interest and
downscale of the config's ``[camera]`` table when there is one (region and downscale apply to
pictures of the camera's own size), else with the defaults. Each picture gets every decoder
pass, then the exhaustive search: the camera would need a few frames for the same.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2
MAX_PICTURE_BYTES = 64 * 1024 * 1024
# A Camera Module 3 takes 12 MP. A small file can declare a huge picture (a 120 KB PNG took
# 455 MB to decode): the header's size is checked before any pixel is read.
MAX_PIXELS = 16_000_000


def _checked(path: str) -> None:
    """Refuse a picture too large to decode here (UsageError, exit 2), before decoding it."""
    from PIL import Image, UnidentifiedImageError

    from gate.cli.common import UsageError

    try:
        size = os.path.getsize(path)
        if size > MAX_PICTURE_BYTES:
            raise UsageError(f"{path}: {size // 2**20} MiB, more than {MAX_PICTURE_BYTES // 2**20} MiB: not a camera frame")
        with Image.open(path) as image:
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"{path}: declares a picture far too large to decode ({exc})") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise UsageError(f"{path}: not a picture ({exc})") from None
    if width * height > MAX_PIXELS:
        raise UsageError(f"{path}: {width}x{height} pixels, more than {MAX_PIXELS // 1_000_000} MP: scale it down first")


def _camera_settings(args: argparse.Namespace) -> Any:
    from gate import config as config_module

    explicit = args.config != config_module.default_path() or "GATE_CONFIG" in os.environ
    if not explicit and not os.path.exists(args.config):
        return config_module.CameraConfig()  # a laptop without a gate config: the defaults
    return config_module.load(args.config).camera or config_module.CameraConfig()


def _shown(text: str) -> str:
    return text if text.isprintable() else json.dumps(text)[1:-1]


def cmd_decode(args: argparse.Namespace) -> int:
    from PIL import UnidentifiedImageError

    from drivers.camera import Region, crop, load_picture
    from drivers.decoders import DECODER_SYMBOLOGIES, DecoderUnavailable, make_decoder, read_picture
    from gate import formats
    from gate.cli.common import UsageError

    camera = _camera_settings(args)
    decoder_name = args.decoder or camera.decoder
    if args.symbology:
        symbologies = tuple(dict.fromkeys(args.symbology))
    else:  # the camera's, as far as this decoder reads them
        symbologies = tuple(s for s in camera.symbologies if s in DECODER_SYMBOLOGIES[decoder_name])
    try:
        decoder = make_decoder(decoder_name, symbologies)
    except (DecoderUnavailable, ValueError) as exc:
        raise UsageError(str(exc)) from None
    ticket_formats = formats.enabled(tuple(formats.FORMATS))
    region = Region(*camera.region) if camera.region else None
    code = EXIT_OK
    for path in args.images:
        _checked(path)
        try:
            frame = load_picture(path)
        except (OSError, UnidentifiedImageError) as exc:
            raise UsageError(f"{path}: not a picture ({exc})") from None
        if frame.shape == (camera.height, camera.width):
            frame = crop(frame, region, camera.downscale)
        started = time.perf_counter()
        symbols = read_picture(decoder, frame)
        elapsed_ms = (time.perf_counter() - started) * 1000
        found = []
        for symbol in symbols:
            ticket = formats.identify(symbol.text, ticket_formats)
            found.append({"symbology": symbol.symbology, "ticket_format": ticket.name if ticket else None, "text": symbol.text})
        if not found:
            code = EXIT_NOTHING
        if args.json:
            print(json.dumps({"image": path, "decoder": decoder.name, "ms": round(elapsed_ms, 3), "found": found}, ensure_ascii=False))
            continue
        if not found:
            print(f"{path}: no code ({elapsed_ms:.1f} ms, {decoder.name}: {', '.join(symbologies)})")
        for item in found:
            kind = f"{item['ticket_format']} ticket" if item["ticket_format"] else "not a ticket format this gate knows"
            print(f"{path}: {item['symbology']} ({kind}), {elapsed_ms:.1f} ms: {_shown(item['text'])}")
    return code


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    from drivers.decoders import DECODERS, SYMBOLOGIES

    p = sub.add_parser("decode", parents=[common], help="what the camera pipeline reads from pictures")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, BMP or PGM files")
    p.add_argument("--decoder", choices=DECODERS, help="default: the config's camera.decoder, else zxing")
    p.add_argument("--symbology", action="append", choices=SYMBOLOGIES, help="search only this one (repeat)")
    p.add_argument("--json", action="store_true", help="one JSON line per picture")
    p.set_defaults(fn=cmd_decode)
