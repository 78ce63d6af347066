"""The README's configuration table and command list stay true to the code."""

import re
from pathlib import Path

import pytest

from imagepuller.cli import build_parser
from imagepuller.config import load_config
from imagepuller.settings import TABLE, Setting
from tests.recording_env import RecordingEnv

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
REQUIRED = {"IMAGES": "a=quay.io/a:1"}


def config_table() -> dict[str, str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", section, flags=re.M)
    return {name: default.strip() for name, default in rows}


def test_the_table_lists_exactly_the_variables_the_code_reads():
    env = RecordingEnv(REQUIRED)
    load_config(env)
    assert set(config_table()) == env.asked


def documented_default(setting: Setting) -> str:
    if setting.required:
        return "required"
    return "empty" if setting.default == "" else f"`{setting.default}`"


def test_the_readme_table_is_the_field_table():
    assert config_table() == {setting.variable: documented_default(setting) for setting in TABLE}


@pytest.mark.parametrize("variable", sorted(config_table()))
def test_documented_default_is_the_code_default(variable):
    default = config_table()[variable]
    if default in ("required", "empty"):
        if default == "required":
            with pytest.raises(ValueError):
                load_config({})
        return
    value = re.fullmatch(r"`([^`]*)`", default)
    assert value, f"default of {variable} should be `quoted`, got {default!r}"
    assert load_config({**REQUIRED, variable: value.group(1)}) == load_config(REQUIRED)


def test_readme_commands_exist_in_help():
    documented = set(re.findall(r"^imagepuller (\w+)", README, flags=re.M))
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # the subcommands
    assert documented == commands
    help_text = parser.format_help()
    for command in commands:
        assert command in help_text


def test_readme_starts_with_the_two_commands():
    first_block = README.split("```", 2)[1]
    assert "make run" in first_block and "make test" in first_block


def logged_events() -> set[str]:
    """Every event name the package logs: the first argument of each `log.<level>(...)`."""
    import ast

    names = set()
    for path in (Path(__file__).resolve().parents[2] / "imagepuller").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"debug", "info", "warning", "error", "exception"}
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    return names


def test_every_logged_event_is_in_the_readme_logs_table():
    section = README.split("## Logs", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    events = logged_events()
    assert len(events) > 20  # the scan found them
    assert events - documented == set()


def test_refresh_strategies_follow_the_table_and_name_what_the_code_does():
    from imagepuller.daemonset import REFRESH_ANNOTATION
    from imagepuller.valueparsers import REFRESH_STRATEGIES

    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    after_table = section.split("| `KUBECONFIG` |", 1)[1].split("\n\n", 2)[1]
    assert after_table.startswith("**Refresh strategies.**")
    for strategy in REFRESH_STRATEGIES:
        assert f"`{strategy}`" in after_table
    for fact in (f"`{REFRESH_ANNOTATION}`", "`maxUnavailable: 0`", "REFRESH_MAX_SURGE",
                 "`imagePullPolicy: IfNotPresent`"):  # fmt: skip
        assert fact in after_table, fact


def test_the_module_map_names_every_module_once_and_no_other():
    section = README.split("Module map of", 1)[1].split("\n### ", 1)[0]
    named = re.findall(r"`(\w+\.py)`", section)
    package = Path(__file__).resolve().parents[2] / "imagepuller"
    assert sorted(named) == sorted(path.name for path in package.glob("*.py"))
