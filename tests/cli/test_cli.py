"""The layout of the command line: `edgedml --help` groups the commands by where they run, and the
device-side commands (edgedml/cli/device.py, gallery.py, assurance.py) work with torch and onnx unimportable."""

import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import BLOCK_TORCH, SHIPPED

from edgedml.cli import main

SECTIONS = {  # {heading: (commands in --help order, the modules that define them)}
    "Training and export (torch):": (["train", "eval", "export"], {"edgedml.cli.training"}),
    "On the device (numpy + OpenCV):": (["compare", "calibrate", "enroll", "verify", "identify", "revoke", "gallery",
                                         "faithfulness",
                                         "crop-faces", "build-engine", "bundles"],
                                        {"edgedml.cli.device", "edgedml.cli.gallery", "edgedml.cli.assurance"}),
    "General:": (["info"], {"edgedml.cli"}),
}


def help_sections(text: str) -> dict[str, list[str]]:
    """{heading: [command, ...]} of a click help text (headings unindented, commands indented)."""
    sections: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":") and not line.startswith("Usage"):
            heading = sections.setdefault(line, [])
        elif line.startswith("  ") and sections:
            heading.append(line.split()[0])
    return sections


def test_help_lists_every_command_once_under_where_it_runs():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    sections = help_sections(result.output)
    assert sections.pop("Options:") == ["--version", "-h,"]
    assert sections == {heading: names for heading, (names, _) in SECTIONS.items()}
    assert sorted(sum(sections.values(), [])) == sorted(main.commands)  # none left out, none twice
    for names, modules in SECTIONS.values():
        assert {main.commands[name].callback.__module__ for name in names} == modules


def test_python_dash_m_runs_the_same_command_line():
    """torchrun starts training as `python -m edgedml.cli train ...`."""
    done = subprocess.run([sys.executable, "-m", "edgedml.cli", "-h"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert help_sections(done.stdout).keys() == {"Options:", *SECTIONS}


USAGE = {  # one order: the gallery, then the identity, then images; the bundle always as --model
    "enroll": "[OPTIONS] GALLERY NAME IMG...",
    "verify": "[OPTIONS] GALLERY NAME IMG",
    "identify": "[OPTIONS] GALLERY IMG",
    "revoke": "[OPTIONS] GALLERY NAME",
    "calibrate": "--model BUNDLE --data DIR [OPTIONS]",
    "build-engine": "--model BUNDLE [OPTIONS]",
    "compare": "[OPTIONS] IMAGE_A IMAGE_B",
}


@pytest.mark.parametrize("command", sorted(USAGE))
def test_usage_lines_put_the_gallery_first_and_the_bundle_in_model(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"Usage: main {command} {USAGE[command]}"
    assert ("--model" in result.output) == (command != "revoke")  # a revocation needs no bundle


@pytest.fixture(scope="module")
def bundle(small_bundle):
    return small_bundle[1]


def test_device_commands_run_with_torch_and_onnx_blocked(bundle, tmp_path):
    a, b, pansy = (str(SHIPPED / name) for name in ("daisy_1.jpg", "daisy_2.jpg", "pansy.jpg"))
    model, gallery = ["--model", str(bundle)], str(tmp_path / "gallery.db")
    code = BLOCK_TORCH + (
        "import edgedml.cli.device\n"
        "from edgedml.cli import main\n"
        "heavy = lambda: sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx'))\n"
        "assert not heavy(), heavy()\n"
        "try:\n"
        f"    main(['compare', {a!r}, {b!r}, *{model!r}, '--json'], standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 5, exc.code  # uncalibrated: a score, no decision\n"
        f"main(['enroll', {gallery!r}, 'daisy', {a!r}, *{model!r}], standalone_mode=False)\n"
        f"main(['identify', {gallery!r}, {b!r}, *{model!r}, '--threshold', '0.5'], standalone_mode=False)\n"
        "try:\n"
        f"    main(['verify', {gallery!r}, 'daisy', {pansy!r}, *{model!r}, '--threshold', '1.9'],"
        " standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        f"main(['gallery', 'backup', {gallery!r}, {gallery + '.bak'!r}], standalone_mode=False)\n"
        f"main(['revoke', {gallery!r}, 'daisy'], standalone_mode=False)\n"
        "assert not heavy(), heavy()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert '"score"' in out and "enrolled 'daisy'" in out, out
    assert "ACCEPTED: daisy" in out and "REJECTED: daisy" in out and "exit 4\nbacked up" in out, out
    assert out.endswith(f"revoked 'daisy' in {gallery}\n"), out  # no bundle needed
