"""docs/drug-library.md lists every value of the drug library with its source (issue 11,
item 8): the page's generated table is the one host/druglib_table.py makes from druglib.json."""

from __future__ import annotations

from host import druglib_table
from pump import druglib


def test_drug_library_page_lists_every_value_with_its_source() -> None:
    page = druglib_table.DOC.read_text(encoding="utf-8")
    assert druglib_table.section(page) == druglib_table.table(), (
        "docs/drug-library.md is stale: python -m host.druglib_table --write")


def test_every_value_is_a_row() -> None:
    table = druglib_table.table()
    doc = druglib.read()
    bags = doc["drugs"][0]["bags"]
    for bag in bags:
        for key in bag:
            if key != "hours":
                assert "| `bags/%dh/%s` |" % (bag["hours"], key) in table
    for line in table.splitlines():
        if line.startswith("| `"):
            source = line.rsplit("|", 2)[1].strip()
            assert len(source) > 5, line
