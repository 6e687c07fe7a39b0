"""A reference table declared as ``<table>.csv`` (the form for tables of hundreds of rows and
up): read by each column's type as the YAML form is, refused with ``file:line`` when a cell
or the header is wrong, and checked and migrated like any other declared table."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from seed_data.refdata.declared import DeclarationError, load_declared
from seed_data.refdata.tables import reference_tables
from tests.refdata_support import Workspace


def as_csv(workspace: Workspace, table: str) -> str:
    """The table's declared rows as CSV text: what a person exporting them would write."""
    (described,) = (t for t in reference_tables() if t.name == table)
    rows = load_declared(workspace.reference)[table]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(described.column_names)
    for row in rows.values():
        writer.writerow(
            json.dumps(v, ensure_ascii=False)
            if isinstance(v, list)
            else ("true" if v else "false")
            if isinstance(v, bool)
            else ""
            if v is None
            else v
            for v in row.values()
        )
    return out.getvalue()


def declare_as_csv(workspace: Workspace, table: str) -> str:
    text = as_csv(workspace, table)
    (workspace.reference / f"{table}.yaml").unlink()
    (workspace.reference / f"{table}.csv").write_text(text, encoding="utf-8")
    return text


@pytest.mark.parametrize("table", ["products", "faqs", "account_types"])
def test_a_csv_declaration_reads_as_the_yaml_one(files_workspace: Workspace, table: str) -> None:
    expected = load_declared(files_workspace.reference)
    declare_as_csv(files_workspace, table)

    declared = load_declared(files_workspace.reference)

    assert declared == expected
    assert declared.where(table, next(iter(declared[table]))).endswith(f"{table}.csv:2")


def test_a_table_declared_as_csv_agrees_with_head_and_generates_revisions(
    workspace: Workspace,
) -> None:
    text = declare_as_csv(workspace, "products")
    assert workspace.refdata("check").code == 0
    path = workspace.reference / "products.csv"
    path.write_text(text.replace(",4.74,", ",4.49,"), encoding="utf-8")

    result = workspace.refdata("revision", "-m", "tracker cut")

    assert result.code == 0, result.err
    assert "      interest_rate: Decimal('4.74') -> Decimal('4.49')" in result.out
    assert load_declared(workspace.reference)["products"]["tracker_mortgage"][
        "interest_rate"
    ] == Decimal("4.49")


# case -> (what replaces the file's text: old -> new, or a whole header; the line; the problem)
REFUSED = {
    "unknown column": (
        "header",
        "slug,question,answer,category,sort_order,is_active,colour",
        1,
        "unknown column colour for faqs: the header must name each column once",
    ),
    "missing column": (
        "header",
        "slug,question,answer,category,sort_order",
        1,
        "missing column is_active: the header must name each column once",
    ),
    "column twice": (
        "header",
        "slug,question,answer,category,sort_order,is_active,slug",
        1,
        "column slug given twice: the header must name each column once",
    ),
    "a cell too many": (",10,true", ",10,true,extra", 2, "1 more cell(s) than the header has"),
    "a number that is text": (
        ",10,true",
        ",ten,true",
        2,
        "sort_order: expected a whole number, got 'ten'",
    ),
    "a YAML 1.1 boolean": (
        ",10,true",
        ",10,yes",
        2,
        "is_active: yes means true or false only in YAML 1.1",
    ),
    "an empty NOT NULL cell": (
        ",accounts,10,",
        ",,10,",
        2,
        "category: must have a value (the column is NOT NULL) (an empty cell is NULL)",
    ),
    "an exponent": (",10,true", ",1e1,true", 2, "sort_order: 1e1: write the number in plain"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_wrong_csv_cell_or_header_is_named_with_its_line(
    files_workspace: Workspace, case: str
) -> None:
    text = declare_as_csv(files_workspace, "faqs")
    old, new, line, problem = REFUSED[case]
    lines = text.splitlines(keepends=True)
    if old == "header":
        lines[0] = new + "\n"
    else:
        assert old in lines[1], f"{old!r} not in {lines[1]!r}: the test's edit is out of date"
        lines[1] = lines[1].replace(old, new, 1)
    path = files_workspace.reference / "faqs.csv"
    path.write_text("".join(lines), encoding="utf-8")

    with pytest.raises(DeclarationError) as raised:
        load_declared(files_workspace.reference)

    (found,) = raised.value.problems
    assert found.startswith(f"{path}:{line}: {problem}"), found
    result = files_workspace.refdata("revision", "-m", "never written")
    assert result.code == 2 and files_workspace.untouched()


def test_a_list_cell_must_be_a_json_list_of_texts(files_workspace: Workspace) -> None:
    text = declare_as_csv(files_workspace, "products")
    path = files_workspace.reference / "products.csv"
    first = '"[""4.05% AER'
    path.write_text(text.replace(first, '"[1, ""4.05% AER', 1), encoding="utf-8")
    before = text.count("\n", 0, text.index(first))

    with pytest.raises(DeclarationError) as raised:
        load_declared(files_workspace.reference)

    (found,) = raised.value.problems
    assert found.startswith(f"{path}:{before + 1}: features: expected a JSON list of texts"), found


def test_a_table_declared_twice_or_in_broken_csv_is_named(files_workspace: Workspace) -> None:
    (files_workspace.reference / "faqs.csv").write_text(as_csv(files_workspace, "faqs"))
    (files_workspace.reference / "account_types.csv").write_text(
        'code,label,sort_order\nsavings,"Savings\n'
    )
    (files_workspace.reference / "account_types.yaml").unlink()
    (files_workspace.reference / "message_roles.yaml").unlink()
    (files_workspace.reference / "message_roles.csv").write_text("")

    with pytest.raises(DeclarationError) as raised:
        load_declared(files_workspace.reference)

    text = "\n".join(raised.value.problems)
    reference = files_workspace.reference
    assert f"{reference}/faqs.csv: faqs is declared twice (also in faqs.yaml): keep one" in text
    assert f"{reference}/account_types.csv:2: not valid CSV: unexpected end of data" in text
    assert (
        f"{reference}/message_roles.csv: the file is empty: write the header row "
        "(code,label,sort_order)"
    ) in text
