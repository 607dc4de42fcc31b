"""The commands the docs give to copy (code blocks of the README and docs/, the shipped YAML files' comments) are
read by the CLIs they name: every option exists, and each value is one the option takes. Placeholders stand for
values (`N`, `...`), and a command shown in part (`--checkpoint A B ...  # several`) is not missing its required
options. (docs/figures.md quotes commands in its prose too: those are the ones run, not checked here.)"""

import argparse
import functools
import importlib
import re
import shlex

import pytest
from conftest import REPO

GUIDES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "docker" / "README.md"]
DOCS = [*GUIDES, *sorted((REPO / "configs").glob("*.yaml")), *sorted((REPO / "search_spaces").glob("*.yaml"))]
CODE_BLOCK = re.compile(r"```.*?```", re.S)
COMMAND = re.compile(r"python3? -m ((?:vgan|tuner)\.\w+)((?: [^#\n]*)?)")
PLACEHOLDERS = {"N": "3", "FACTOR": "2", "T": "0.5"}  # `...` stays: a path (--checkpoint ...), or one more


def documented_commands() -> list[tuple[str, str, str]]:
    """(where, module, arguments) of each command in a README's code blocks or a YAML file's comments."""
    found = []
    for path in DOCS:
        text = path.read_text().replace("\\\n", " ")  # a command continued on the next line
        if path.suffix == ".md":  # fenced code blocks, and blocks indented four spaces
            lines = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
            lines += [line for line in CODE_BLOCK.sub("", text).splitlines()
                      if line.startswith("    ")]
        else:  # a comment gives a command after a word of its own ("Meant for a GPU:  python -m ...")
            lines = [line[line.index("python"):] for line in text.splitlines()
                     if line.lstrip().startswith("#") and "python" in line]
        for line in lines:  # a command begins its line: elsewhere in a README's block, a module is named, not run
            m = COMMAND.match(line.strip())
            if m:
                found.append((f"{path.relative_to(REPO)}: {m.group(0).strip()}", m.group(1), m.group(2)))
    return found


def argv_of(arguments: str) -> list[str]:
    """The words of a command's arguments: placeholders made values, the brackets of an optional part (`[--a X]`)
    dropped, an alternative (`--scale auto|FACTOR`) taken as its first."""
    words = shlex.split(re.sub(r"[\[\]]", " ", arguments))
    return [PLACEHOLDERS.get(w, w.split("|")[0]) for w in words]


class Parsed(Exception):
    pass


@pytest.fixture
def parse_only(monkeypatch):
    """Each CLI's own parser, stopped once it has read its arguments, none of them required."""
    parse = argparse.ArgumentParser.parse_args

    def read(self, args=None, namespace=None):
        for action in self._actions:
            action.required = False
        for group in self._mutually_exclusive_groups:
            group.required = False
        raise Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", read)


def test_the_docs_give_commands_of_every_cli():
    """What is checked below is found: a command of every CLI (tuner.replay's, which a study prints with its own
    options, is quoted in prose only)."""
    modules = {module for _, module, _ in documented_commands()}
    assert modules == {"vgan.train", "vgan.prepare", "vgan.evaluate", "vgan.compare", "vgan.predict", "vgan.export",
                       "tuner.run", "tuner.predict", "tuner.promote", "tuner.export"}


@pytest.mark.parametrize("where, module, arguments", documented_commands(), ids=lambda v: v[:90])
def test_a_documented_command_is_read_by_its_cli(where, module, arguments, parse_only, capsys):
    cli = importlib.import_module(module)
    with pytest.raises((Parsed, SystemExit)) as ended:
        (getattr(cli, "_main", None) or cli.main)(argv_of(arguments))
    assert ended.type is Parsed, f"{where}\n{capsys.readouterr().err}"


MARKDOWN = [*GUIDES, *sorted((REPO / "benchmarks" / "results").glob("*/README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@functools.cache
def anchors(path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (those outside code blocks)."""
    text = CODE_BLOCK.sub("", path.read_text())
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_the_docs_links_lead_somewhere(doc):
    """Each link of a doc to a file of the project names one that is there, and a heading of it that is there."""
    broken = []
    for target in LINK.findall(CODE_BLOCK.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, mailto:: not this project's
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no such heading in {path.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)
