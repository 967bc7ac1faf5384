"""``gate camera snapshot``: a frame from the running lane's camera through its status socket,
saved as PNG, with what the pipeline reads in it (never the ticket's text) and how sharp it is.
A simulated lane (hw-sim's camera) runs in this process; the command runs as a technician runs
it, in a process of its own.

The frame is the one being decoded, so while a patron holds a ticket up it is the ticket; the
socket is open to every technician, who may not read tickets: every code is blacked out of the
snapshot, which the real decoders then read nothing in."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hwsim.camera import Look, SimulatedCamera, photograph, scene
from PIL import Image, ImageFilter

from drivers import camera as camera_module
from drivers.camera import CameraReader, CameraUnavailable, load_picture, sharpness
from drivers.decoders import (
    SYMBOLOGIES,
    DecoderUnavailable,
    ZxingDecoder,
    every_symbol,
    make_decoder,
    read_picture,
)
from gate.field.status_server import ask, json_lines
from tests.support.lanes import wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]


def _gate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gate", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin"}, timeout=120, check=False)


def _camera_lane(start_lane, config_data, tmp_path):
    config_data["camera"] = {"source": "simulator", "hold_off": 1.0}
    lane = start_lane(config_data)
    wait_until(lambda: lane.daemon.readers.camera.frames_decoded > 0, 30)
    return lane, write_config(tmp_path / "gate.toml", config_data)


def _readable(frame: np.ndarray) -> list[str]:
    """What any decoder this lane has reads in a picture, every pass and the exhaustive search."""
    texts = [s.text for s in every_symbol(make_decoder("zxing", SYMBOLOGIES), frame)]
    try:
        texts += [s.text for s in every_symbol(make_decoder("pyzbar", ("qr",)), frame)]
    except DecoderUnavailable:
        pass
    return texts


def _png(answer: dict) -> np.ndarray:
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(answer["png"]))) as image:
        return np.asarray(image.convert("L"))


def test_a_snapshot_of_a_ticket_held_up_blacks_it_out_and_says_what_it_read(start_lane, config_data, tickets, tmp_path):
    lane, config = _camera_lane(start_lane, config_data, tmp_path)
    ticket = tickets.static()
    camera = lane.daemon.hardware.camera
    camera.show(ticket, "qr", Look(medium="paper"), seconds=None)  # held still while the technician aims
    wait_until(lambda: camera.first_frame_at is not None and lane.daemon.readers.camera.codes > 0, 30)
    out = tmp_path / "aim.png"
    result = _gate("camera", "snapshot", "--config", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(ticket.encode()).hexdigest()[:12]
    assert "read: qr (" in result.stdout and f"{len(ticket)} characters, sha256 {digest}, blacked out" in result.stdout
    assert "a code was read and masked" in result.stdout
    assert "sharpness " in result.stdout
    assert ticket not in result.stdout and ticket[4:40] not in result.stdout + result.stderr, "never the ticket's text"
    frame = load_picture(str(out))
    assert frame.shape == (480, 640)
    assert _readable(frame) == [], "no readable code leaves the lane"
    assert np.mean(frame == 0) < 0.5 and sharpness(frame) > 0, "the rest of the frame is there, for aiming"


def test_a_snapshot_of_an_empty_lane_reads_nothing_and_json_gives_the_sharpness(start_lane, config_data, tmp_path):
    _lane, config = _camera_lane(start_lane, config_data, tmp_path)
    out = tmp_path / "empty.png"
    result = _gate("camera", "snapshot", "--config", str(config), "--out", str(out), "--json")
    assert result.returncode == 1, result.stderr  # no code in the frame
    answer = json.loads(result.stdout)
    assert answer["found"] == [] and answer["width"] == 640 and answer["sharpness"] > 0
    assert out.exists()


class _Frames:
    """A frame source that puts the given frame ``count`` times (then nothing: a stalled camera)."""

    def __init__(self, frame: np.ndarray, count: int | None = None) -> None:
        self.frame, self.count = frame, count
        self.camera = SimulatedCamera()
        self.camera.show_frames([frame], seconds=None)

    def start(self, slot) -> None:
        if self.count is None:
            self.camera.start(slot)
        else:
            for _ in range(self.count):
                slot.put(self.frame)

    def stop(self) -> None:
        self.camera.stop()


def _snapshot_of(frame: np.ndarray, describe=None) -> dict:
    """A camera reader's snapshot once it has decoded ``frame`` (shown again and again)."""
    reader = CameraReader(_Frames(frame), ZxingDecoder(), lambda *_: None)
    reader.describe = describe
    reader.start()
    try:
        wait_until(lambda: reader.frames_decoded > 0, 30)
        return reader.snapshot()
    finally:
        reader.stop()


@pytest.mark.parametrize("symbology, look", [
    ("qr", Look(medium="paper")),
    ("qr", Look(medium="phone", inverted=True, size=0.25, center=(0.3, 0.6))),  # dark mode, off centre
    ("pdf417", Look(medium="paper", size=0.6, turn=5.0)),  # read only by the pass that turns the frame 5°
    ("aztec", Look(medium="phone")),
])
def test_every_code_in_a_snapshot_is_blacked_out_whatever_pass_reads_it(tickets, symbology, look):
    ticket = tickets.static()
    frame = photograph(ticket, symbology, look)
    assert [s.text for s in read_picture(ZxingDecoder(), frame)] == [ticket], "the frame holds the ticket"
    answer = _snapshot_of(frame, describe=lambda text: "gt1" if text == ticket else None)
    snapshot = _png(answer)
    assert snapshot.shape == frame.shape and _readable(snapshot) == []
    assert [(f["symbology"], f["ticket_format"], f["chars"], f["sha256"]) for f in answer["found"]] == [
        (symbology, "gt1", len(ticket), hashlib.sha256(ticket.encode()).hexdigest()[:12])]
    assert answer["masked"] >= 1 and np.mean(snapshot == 0) < 0.5, "only the code's place is blacked out"
    assert ticket not in json.dumps({k: v for k, v in answer.items() if k != "png"})


def test_an_empty_frame_is_handed_out_as_it_is():
    frame = scene(640, 480, np.random.default_rng(0)).astype(np.uint8)  # the empty lane the simulator shows
    answer = _snapshot_of(frame)
    assert answer["found"] == [] and answer["masked"] == 0
    assert np.array_equal(_png(answer), frame)


def test_a_stalled_camera_keeps_no_frame(tickets, monkeypatch):
    monkeypatch.setattr(camera_module, "FRAME_KEEP", 0.5)
    frame = photograph(tickets.static(), "qr", Look(medium="paper"))
    reader = CameraReader(_Frames(frame, count=1), ZxingDecoder(), lambda *_: None)
    reader.start()
    try:
        wait_until(lambda: reader.frames_decoded > 0, 30)
        wait_until(lambda: reader._last_frame is None, 30)  # no new frame: the old one is let go
        with pytest.raises(CameraUnavailable, match="no frame in the last"):
            reader.snapshot()
    finally:
        reader.stop()


def test_a_lane_without_a_camera_says_so(start_lane, config_data, tmp_path):
    start_lane(config_data)
    config_data["camera"] = {"source": "simulator"}  # the technician's config has one; the lane does not
    config = write_config(tmp_path / "gate.toml", config_data)
    result = _gate("camera", "snapshot", "--config", str(config), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 1 and "no [camera]" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_no_lane_running_is_said_plainly(config_data, tmp_path):
    config_data["camera"] = {"source": "simulator"}
    config = write_config(tmp_path / "gate.toml", config_data)
    result = _gate("camera", "snapshot", "--config", str(config))
    assert result.returncode == 1 and "no lane answers" in result.stderr


def test_the_status_socket_refuses_what_it_does_not_know_and_streams_on(start_lane, config_data, tmp_path):
    _camera_lane(start_lane, config_data, tmp_path)
    path = config_data["status"]["socket"]
    assert "unknown request 'reboot'" in ask(path, "reboot")["problem"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"not json\n")
        messages = json_lines(sock)
        answer = next(m for m in messages if m["event"] != "status")
        assert answer["event"] == "error" and "JSON object" in answer["problem"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a client that only reads is not disturbed
        sock.settimeout(10)
        sock.connect(path)
        messages = json_lines(sock)
        assert next(messages)["event"] == "status" and next(messages)["event"] == "status"
    assert ask(path, "snapshot")["width"] == 640, "the lane still answers"


def test_sharpness_rises_as_the_ticket_comes_into_focus(tickets):
    frame = photograph(tickets.static(), "qr", Look(medium="paper", noise=0.0))
    blurred = [np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(r))) for r in (0.8, 1.6, 3.2)]
    values = [sharpness(f) for f in [frame, *blurred]]
    assert values == sorted(values, reverse=True) and values[0] > 2 * values[-1]
