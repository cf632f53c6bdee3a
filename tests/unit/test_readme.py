"""README and code agree: every configuration key with its default, and every exit code the code can give."""

from __future__ import annotations

import re
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from bridge import errors
from bridge.config.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTIONS: dict[str, type] = dict(typing.get_type_hints(Settings))  # every section, also ones added later


def _configuration_table() -> dict[str, str]:
    """`section.key` -> the default column, from the README's key table (rows naming several keys split)."""
    keys: dict[str, str] = {}
    for line in README.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z]+\.[a-z_]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1]) or [cells[1]]
        for n, name in enumerate(names):
            keys[name] = defaults[n] if len(defaults) == len(names) else cells[1]
    return keys


def test_every_configuration_key_is_in_the_readme_with_its_default() -> None:
    table = _configuration_table()
    in_code = {f"{section}.{f.name}": f for section, cls in SECTIONS.items() for f in fields(cls)
               if f.metadata.get("key", True)}  # not NOT_A_KEY fields, which code sets (retry.max_tries)
    assert sorted(in_code) == sorted(name for name in table if name.split(".")[0] in SECTIONS)
    for name, f in in_code.items():
        hints = typing.get_type_hints(SECTIONS[name.split(".")[0]])
        if f.default is MISSING or f.default in ("", None, 0.0) or hints[f.name] is bool and not f.default:
            continue  # required, empty or derived defaults are described in words
        shown = table[name].replace('"', "")
        assert shown == str(f.default).lower() if isinstance(f.default, bool) else shown == str(f.default), name


def _exit_code_list() -> set[int]:
    paragraph = README.split("Exit codes:", 1)[1].split("\n\n", 1)[0].strip()
    return {int(code) for code in re.findall(r"(?:^|,\s|:\s)(\d+)\s", paragraph.replace("\n", " "))}


def test_every_exit_code_is_in_the_readme_list() -> None:
    classes = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.BridgeError)]
    in_code = {cls.exit_code for cls in classes} | {130}  # 130: a second signal, or Ctrl-C (cli.py)
    assert in_code <= _exit_code_list()
