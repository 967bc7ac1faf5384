"""``gate camera snapshot``: a frame from the running lane's camera through its status socket,
saved as PNG, with what the pipeline reads in it (never the ticket's text) and how sharp it is.
A simulated lane (hw-sim's camera) runs in this process; the command runs as a technician runs
it, in a process of its own."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from hwsim.camera import Look, photograph
from PIL import Image, ImageFilter

from drivers.camera import load_picture, sharpness
from drivers.decoders import make_decoder, read_picture
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


def test_a_snapshot_of_a_ticket_held_up_saves_the_frame_and_says_what_it_reads(start_lane, config_data, tickets, tmp_path):
    lane, config = _camera_lane(start_lane, config_data, tmp_path)
    ticket = tickets.static()
    camera = lane.daemon.hardware.camera
    camera.show(ticket, "qr", Look(medium="paper"), seconds=None)  # held still while the technician aims
    wait_until(lambda: camera.first_frame_at is not None and lane.daemon.readers.camera.codes > 0, 30)
    out = tmp_path / "aim.png"
    result = _gate("camera", "snapshot", "--config", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(ticket.encode()).hexdigest()[:12]
    assert f"read: qr (gt1 ticket), {len(ticket)} characters, sha256 {digest}" in result.stdout
    assert "sharpness " in result.stdout
    assert ticket not in result.stdout and ticket[4:40] not in result.stdout + result.stderr, "never the ticket's text"
    frame = load_picture(str(out))
    assert frame.shape == (480, 640)
    assert [s.text for s in read_picture(make_decoder("zxing", ("qr",)), frame)] == [ticket], "the PNG is the camera's frame"


def test_a_snapshot_of_an_empty_lane_reads_nothing_and_json_gives_the_sharpness(start_lane, config_data, tmp_path):
    _lane, config = _camera_lane(start_lane, config_data, tmp_path)
    out = tmp_path / "empty.png"
    result = _gate("camera", "snapshot", "--config", str(config), "--out", str(out), "--json")
    assert result.returncode == 1, result.stderr  # no code in the frame
    answer = json.loads(result.stdout)
    assert answer["found"] == [] and answer["width"] == 640 and answer["sharpness"] > 0
    assert out.exists()


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
