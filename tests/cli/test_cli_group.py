"""The lazy ``sc-inverse`` group: every command resolves, and the group's help stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from sc_inverse.cli import COMMAND_HELP, COMMANDS, LazyGroup, cli


def test_every_command_resolves_to_its_click_command():
    assert set(COMMAND_HELP) == set(COMMANDS)
    ctx = click.Context(cli)
    for name in COMMANDS:
        cmd = LazyGroup.get_command(cli, ctx, name)
        assert isinstance(cmd, click.Command) and cmd.name == name, name


def test_group_help_imports_no_heavy_or_domain_code():
    code = ("import json, sys\nfrom sc_inverse.cli import main\nsys.argv = ['sc-inverse', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'jobflow', 'pymatgen', 'fireworks') or m.startswith('sc_inverse.qe'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands:" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_python_dash_m_runs_the_same_cli():
    proc = subprocess.run([sys.executable, "-m", "sc_inverse.cli", "submit", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "inverse-design" in proc.stdout
