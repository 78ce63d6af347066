"""docs/puller-state.md names every field a puller keeps in memory, and no other."""

import re
from pathlib import Path

from tests.fakes import Clock, FakeKube, make

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "puller-state.md").read_text()


def parts() -> dict[str, object]:
    """The puller's parts, by the name the page gives them."""
    controller = make(FakeKube(), Clock(100.0), Clock(1_000_000_000.0))
    return {
        "controller": controller,
        "state": controller.state,
        "offers": controller.offers,
        "lists": controller.lists,
        "source": controller.lists.source,
        "writes": controller.writes,
        "executor": controller.executor,
        "earlier": controller.executor.earlier,
        "report": controller.report,
        "loop": controller.loop,
        "watch": controller.watch,
    }


def named_in(text: str) -> set[str]:
    """`part.field` names (module names, `x.py`, are not fields)."""
    return {n for n in re.findall(r"`([a-z]+\.[a-z_]+)`", text) if not n.endswith(".py")}


def test_the_page_names_every_field_of_every_part_and_no_other():
    named = named_in(PAGE)
    fields = {f"{name}.{field}" for name, part in parts().items() for field in vars(part)}
    named_parts = {entry.split(".", 1)[0] for entry in named}
    assert fields - named == set(), "fields the page does not name"
    assert {n for n in named if n.split(".", 1)[0] in parts()} - fields == set(), (
        "fields the page names that do not exist"
    )
    assert named_parts >= set(parts())


def test_each_field_is_either_a_collaborator_or_state_with_a_reason():
    collaborators_section = PAGE.split("## State", 1)[0]
    state_section = PAGE.split("## State", 1)[1]
    collaborators = named_in(collaborators_section)
    rows = [line for line in state_section.splitlines() if line.startswith("| ")][2:]
    state = set()
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4 and cells[2] and cells[3], f"a row without its reason: {row}"
        state |= named_in(cells[1])
    assert collaborators & state == set()
