"""The layout's rules that import-linter does not state (its contracts run in scripts/test):
no module takes another module's private names, and the wheel a Pi installs holds the product
and not the simulator."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "gate", ROOT / "drivers", ROOT / "hw-sim" / "hwsim"]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_another_module_s_private_names() -> None:
    offences = []
    for folder in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("gate", "drivers", "hwsim"):
                    offences += [f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}"
                                 for a in node.names if _private(a.name)]
                    if any(_private(part) for part in node.module.split(".")):
                        offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports from {node.module}")
    assert offences == []


def test_the_wheel_holds_gate_and_its_drivers_and_not_the_simulator(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "gate", "drivers", "hw-sim"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("gate-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"gate", "drivers"}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[gate.hardware]" in text and "pi = gate.lane.pi:PiHardware" in text and "simulator" not in text
