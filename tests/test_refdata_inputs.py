"""Declared files the toolkit must refuse (with ``file:line``), or read as a person would.

The refusals that need no database run against an unreachable server, which proves they
happen before anything is touched; those that only the database can judge (a CHECK
constraint, a unique index or a trigger made in a migration) run on both servers. Either
way: exit 2, the line named, nothing written and nothing recorded.
"""

from __future__ import annotations

import pytest

from seed_data.refdata.declared import DeclarationError, load_declared
from tests.refdata_support import Workspace

# case -> (file, text to replace, replacement, what the refusal says)
REFUSED = {
    "duplicate key": (
        "account_types",
        "- {code: savings,",
        "- {code: current_account, label: Again, sort_order: 15}\n- {code: savings,",
        "duplicate code 'current_account' (first declared on line 8)",
    ),
    "unknown column": (
        "message_roles",
        "- {code: agent, label: Agent,",
        "- {code: agent, colour: blue, label: Agent,",
        "unknown column colour for message_roles",
    ),
    "text for a number": (
        "transaction_categories",
        "sort_order: 10}",
        "sort_order: ten}",
        "sort_order: expected a whole number, got 'ten'",
    ),
    "quoted number": (
        "transaction_categories",
        "sort_order: 10}",
        "sort_order: '10'}",
        "sort_order: expected a whole number, got the quoted text '10': unquote it",
    ),
    "non-ASCII digits": (
        "faqs",
        "sort_order: 10",
        "sort_order: \u0661\u0660",
        "sort_order: expected a whole number, got '\u0661\u0660'",
    ),
    "float for an integer": (
        "faqs",
        "sort_order: 10",
        "sort_order: 10.5",
        "sort_order: expected a whole number, got '10.5'",
    ),
    "too many decimal places": (
        "products",
        "interest_rate: 4.74",
        "interest_rate: 4.745",
        "interest_rate: 4.745 has more than 2 decimal places",
    ),
    "too many digits": (
        "products",
        "interest_rate: 4.74",
        "interest_rate: 1234.5",
        "interest_rate: 1234.5 does not fit NUMERIC(5, 2)",
    ),
    "integer out of range": (
        "faqs",
        "sort_order: 10",
        "sort_order: 3000000000",
        "sort_order: 3000000000 is outside INTEGER's range (-2147483648 to 2147483647)",
    ),
    "NaN": (
        "products",
        "interest_rate: 4.74",
        "interest_rate: .nan",
        "interest_rate: .nan: NaN and infinity are not allowed here",
    ),
    "infinity": (
        "products",
        "interest_rate: 4.74",
        "interest_rate: -.inf",
        "interest_rate: -.inf: NaN and infinity are not allowed here",
    ),
    "YAML 1.1 base-60": (
        "products",
        "interest_rate: 4.74",
        "interest_rate: 1:30.5",
        "interest_rate: 1:30.5 is a base-60 number in YAML 1.1 (90.5)",
    ),
    "YAML 1.1 octal": (
        "faqs",
        "sort_order: 10",
        "sort_order: 010",
        "sort_order: 010 has a leading zero (YAML 1.1 reads it as octal 8): write 10",
    ),
    "YAML 1.1 boolean": (
        "faqs",
        "is_active: true",
        "is_active: yes",
        "is_active: yes means true or false only in YAML 1.1: write true or false",
    ),
    "underscores": (
        "faqs",
        "sort_order: 10",
        "sort_order: 1_000",
        "sort_order: 1_000: write the number without underscores (1000)",
    ),
    "hexadecimal": (
        "faqs",
        "sort_order: 10",
        "sort_order: 0x1A",
        "sort_order: 0x1A: write the number in decimal digits",
    ),
    "explicit tag": (
        "faqs",
        "sort_order: 10",
        "sort_order: !!int 10",
        "sort_order: the tag !!int is not supported: write the value without a tag",
    ),
    "explicit str tag": (
        "faqs",
        "category: accounts",
        "category: !!str accounts",
        "category: the tag !!str is not supported: write the value without a tag",
    ),
    "explicit str tag on quoted text": (
        "faqs",
        "category: accounts",
        "category: !!str 'accounts'",
        "category: the tag !!str is not supported: write the value without a tag",
    ),
    "exponent for a decimal": (
        "products",
        "interest_rate: 4.74",
        "interest_rate: 1e2",
        "interest_rate: 1e2: write the number in plain digits, without an exponent",
    ),
    "null for a NOT NULL number": (
        "faqs",
        "sort_order: 10",
        "sort_order: null",
        "sort_order: must have a value (the column is NOT NULL)\n",
    ),
    "null for a NOT NULL boolean": (
        "faqs",
        "is_active: true",
        "is_active: ~",
        "is_active: must have a value (the column is NOT NULL)\n",
    ),
    "null for NOT NULL": (
        "faqs",
        "category: accounts",
        "category: null",
        "category: must have a value (the column is NOT NULL); quote it if you mean that text",
    ),
    "text too long": (
        "account_types",
        "label: Mortgage,",
        f"label: {'M' * 101},",
        "label: longer than 100 characters (101)",
    ),
    "NUL character": (
        "account_types",
        "label: Mortgage,",
        'label: "Mort\\0gage",',
        "label: contains a NUL character (\\0), which PostgreSQL text cannot hold",
    ),
    "tab": (
        "account_types",
        "label: Mortgage,",
        'label: "Mort\\tgage",',
        "label: contains a tab, which `alembic upgrade --sql` would write as four spaces",
    ),
    "control character": (
        "account_types",
        "label: Mortgage,",
        'label: "Mort\\x07gage",',
        "label: contains the control character U+0007: remove it",
    ),
    "lone surrogate": (
        "account_types",
        "label: Mortgage,",
        'label: "Mort\\ud800gage",',
        "label: contains U+D800, half of a UTF-16 surrogate pair",
    ),
    "tab in a list item": (
        "products",
        "  - No arrangement fee\n",
        '  - "No\\tfee"\n',
        "features: item 3 contains a tab",
    ),
    "unique value twice": (
        "products",
        "name: Premier Current Account",
        "name: Personal Loan",
        "name 'Personal Loan' is also declared on line 93 (uq_products_name",
    ),
    "missing column": (
        "conversation_channels",
        "- {code: phone, label: Phone, sort_order: 30}",
        "- {code: phone, label: Phone}",
        "missing column sort_order",
    ),
    "merge key": (
        "faqs",
        "  category: accounts\n",
        "  <<: {category: accounts}\n",
        "`<<` merge keys (YAML 1.1) are not supported",
    ),
    "missing lookup value": (
        "products",
        "account_type_code: personal_loan",
        "account_type_code: car_finance",
        "account_type_code 'car_finance' is not declared in account_types.yaml",
    ),
    "malformed YAML": (
        "faqs",
        "- slug: contacting-us\n  question: How can I contact the bank?",
        "- slug: [contacting-us\n  question: How can I contact the bank?",
        "not valid YAML: expected ',' or ']', but got ':' (in a flow sequence that starts on line 18)",
    ),
}


def line_of(workspace: Workspace, table: str, text: str) -> int:
    """The line of the declared file where ``text`` starts."""
    content = (workspace.reference / f"{table}.yaml").read_text(encoding="utf-8")
    return content[: content.index(text)].count("\n") + 1


# The parser meets this mistake on the line after it.
NEXT_LINE = {"malformed YAML"}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_invalid_declarations_are_refused_with_file_and_line_before_any_database(
    files_workspace: Workspace, case: str
) -> None:
    table, old, new, message = REFUSED[case]
    line = line_of(files_workspace, table, old) + (case in NEXT_LINE)
    files_workspace.edit(table, old, new)

    with pytest.raises(DeclarationError) as raised:
        load_declared(files_workspace.reference)
    (problem,) = raised.value.problems  # one mistake, one line: nothing cascades
    # A message ending in a newline is the whole line (no hint after it).
    assert (problem + "\n").startswith(
        f"{files_workspace.reference}/{table}.yaml:{line}: {message}"
    ), problem

    for command_args in (["check"], ["revision", "-m", "never written"]):
        result = files_workspace.refdata(*command_args)
        assert result.code == 2, "bad declarations are refused before any database is touched"
        assert message in result.err and "cannot create a scratch database" not in result.err
    assert files_workspace.untouched()


def test_an_invalid_lookup_row_does_not_cascade_into_the_rows_using_it(
    files_workspace: Workspace,
) -> None:
    files_workspace.edit(
        "account_types",
        "{code: mortgage, label: Mortgage, sort_order: 40}",
        "{code: mortgage, label: Mortgage, sort_order: forty}",
    )
    files_workspace.edit("faqs", "- slug: contacting-us\n", "- slug: [broken\n")
    with pytest.raises(DeclarationError) as raised:
        load_declared(files_workspace.reference)
    problems = raised.value.problems
    assert len(problems) == 2, problems  # not the products that use mortgage
    assert "account_types.yaml:12: sort_order: expected a whole number, got 'forty'" in problems[0]
    assert "faqs.yaml:" in problems[1] and "not valid YAML" in problems[1]


def test_broken_encodings_and_empty_files_are_named(files_workspace: Workspace) -> None:
    path = files_workspace.reference / "message_roles.yaml"
    data = path.read_bytes().replace(b"label: Agent", b"label: Ag\xe9nt")
    path.write_bytes(data)
    bad = data.index(b"\xe9")
    line, column = data[:bad].count(b"\n") + 1, bad - data.rfind(b"\n", 0, bad)
    (files_workspace.reference / "conversation_channels.yaml").write_text("# all gone\n")
    (files_workspace.reference / "faqs.yaml").unlink()
    (files_workspace.reference / "product.yaml").write_text("[]\n")

    with pytest.raises(DeclarationError) as raised:
        load_declared(files_workspace.reference)
    text = "\n".join(raised.value.problems)
    assert f"message_roles.yaml:{line}: not UTF-8 (byte 0xe9 at column {column})" in text
    assert (
        "conversation_channels.yaml: the file declares nothing: list the rows, or write []" in text
    )
    assert (
        "faqs.yaml: missing: faqs is marked as reference data in seed_data/models.py; declare "
        "its rows there (a list of rows, or [] for none), or in faqs.csv" in text
    )
    assert "product.yaml:1: no model has __tablename__ = 'product': add one to" in text
    result = files_workspace.refdata("check")
    assert result.code == 2 and "not UTF-8" in result.err
    assert "Traceback" not in result.err


def test_a_missing_reference_directory_is_one_line(files_workspace: Workspace) -> None:
    result = files_workspace.refdata(
        "--reference-dir", str(files_workspace.root / "nowhere"), "check"
    )
    assert result.code == 2
    assert result.err.strip().endswith(
        "nowhere: does not exist (expected the declared reference files)"
    )


def test_plain_values_in_text_columns_read_as_written(files_workspace: Workspace) -> None:
    """YAML 1.1 would make these a boolean, a base-60 number and a float; a person means text."""
    files_workspace.edit(
        "account_statuses",
        "- {code: closed, label: Closed, sort_order: 40}",
        "- {code: closed, label: No, sort_order: 40}\n- {code: '010', label: 1:30, sort_order: 50}\n"
        "- {code: 2027-01-01, label: 4.50, sort_order: 60}",
    )
    rows = load_declared(files_workspace.reference)["account_statuses"]
    assert rows["closed"]["label"] == "No"
    assert rows["010"]["label"] == "1:30"
    assert rows["2027-01-01"]["label"] == "4.50"


def test_many_problems_are_listed_but_capped(files_workspace: Workspace) -> None:
    path = files_workspace.reference / "transaction_categories.yaml"
    path.write_text(
        "".join(f"- {{code: c{n}, label: L, sort_order: x}}\n" for n in range(200)),
        encoding="utf-8",
    )
    result = files_workspace.refdata("check")
    assert result.code == 2
    assert result.err.count("\n") < 50 and "... and 160 more" in result.err


# case -> (migration adding the rule, or None; edit; the text whose line is named; message)
DATABASE_RULES = {
    "CHECK constraint": (
        None,
        ("products", "interest_rate: 4.74", "interest_rate: -0.25"),
        "interest_rate: -0.25",
        "interest_rate Decimal('-0.25') breaks ck_products_interest_rate_not_negative: "
        "CHECK ((interest_rate >= (0)::numeric))",
    ),
    "unique index made in a migration": (
        (
            "CREATE UNIQUE INDEX uq_faqs_lower_question ON faqs (lower(question))",
            "DROP INDEX uq_faqs_lower_question",
        ),
        (
            "faqs",
            "question: What can I do in the mobile app?",
            "question: HOW CAN I CONTACT THE BANK?",
        ),
        "- slug: mobile-app",
        "slug 'mobile-app' breaks uq_faqs_lower_question: Key (lower(question))=(how can i "
        "contact the bank?) already exists.",
    ),
    "trigger": (
        (
            "CREATE FUNCTION no_crypto() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.name ILIKE '%crypto%' THEN RAISE EXCEPTION 'no crypto products'; END IF; "
            "RETURN NEW; END $$; CREATE TRIGGER no_crypto BEFORE INSERT OR UPDATE ON products "
            "FOR EACH ROW EXECUTE FUNCTION no_crypto()",
            "DROP TRIGGER no_crypto ON products; DROP FUNCTION no_crypto()",
        ),
        ("products", "name: Personal Loan", "name: Personal Crypto Loan"),
        "- code: personal_loan",
        "code 'personal_loan': no crypto products",
    ),
}


@pytest.mark.parametrize("case", DATABASE_RULES, ids=list(DATABASE_RULES))
def test_rows_the_database_refuses_are_named_before_anything_is_written(
    workspace: Workspace, case: str
) -> None:
    migration, (table, old, new), at, message = DATABASE_RULES[case]
    if migration:
        workspace.add_revision("rules made by hand", *migration)
    lock_before = workspace.lock.read_text()
    versions_before = sorted(workspace.versions.glob("*.py"))
    workspace.edit(table, old, new)
    line = line_of(workspace, table, at)

    for args in (["check"], ["revision", "-m", "never written"]):
        result = workspace.refdata(*args)
        assert result.code == 2, result.out + result.err
        assert f"{table}.yaml:{line}: {message}" in result.err, result.err
    assert sorted(workspace.versions.glob("*.py")) == versions_before
    assert workspace.lock.read_text() == lock_before


# Rules the row check cannot see, so the proof meets them: case -> (migration adding the
# rule, undoing it; edit; the row whose line is named; the refusal, with {where} for it).
PROOF_FAILURES = {
    "a trigger forbids deleting": (
        (
            "CREATE FUNCTION keep_faqs() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'FAQs are retired, never deleted'; END $$; CREATE TRIGGER "
            "keep_faqs BEFORE DELETE ON faqs FOR EACH ROW EXECUTE FUNCTION keep_faqs()",
            "DROP TRIGGER keep_faqs ON faqs; DROP FUNCTION keep_faqs()",
        ),
        ("- slug: mobile-app", "- slug: mobile-app-v2"),
        "- slug: mobile-app-v2",
        "the generated revision fails on the scratch database (upgrade): {where}, faqs "
        "mobile-app (removed): FAQs are retired, never deleted; nothing was written or recorded",
    ),
    "a trigger acts on the way back only": (
        (
            "CREATE FUNCTION note_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO message_roles VALUES (left('gone_' || OLD.slug, 32), 'Gone', 999); "
            "RETURN OLD; END $$; CREATE TRIGGER note_deleted AFTER DELETE ON faqs "
            "FOR EACH ROW EXECUTE FUNCTION note_deleted()",
            "DROP TRIGGER note_deleted ON faqs; DROP FUNCTION note_deleted()",
        ),
        (
            "- slug: mobile-app",
            "- slug: savings-goals\n  question: Can I set a goal?\n"
            "  answer: 'Yes.'\n  category: saving\n  sort_order: 70\n  is_active: true\n\n"
            "- slug: mobile-app",
        ),
        "- slug: savings-goals",
        "the generated revision leaves other rows than expected after downgrade "
        "(message_roles gone_savings-goals): something in the database changes the values "
        "(a trigger, a rule), or this is a bug in refdata.py; nothing was written or recorded",
    ),
    "a trigger rewrites values": (
        (
            "CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "NEW.question := upper(NEW.question); RETURN NEW; END $$; CREATE TRIGGER shout "
            "BEFORE UPDATE ON faqs FOR EACH ROW EXECUTE FUNCTION shout()",
            "DROP TRIGGER shout ON faqs; DROP FUNCTION shout()",
        ),
        ("question: How can I contact the bank?", "question: How do I reach you?"),
        "- slug: contacting-us",
        "the generated revision leaves other rows than expected after upgrade (faqs "
        "contacting-us, declared at {where}): something in the database changes the values "
        "(a trigger, a rule), or this is a bug in refdata.py; nothing was written or recorded",
    ),
}


@pytest.mark.parametrize("case", PROOF_FAILURES, ids=list(PROOF_FAILURES))
def test_a_failure_only_the_migration_meets_is_named_and_nothing_is_written(
    workspace: Workspace, case: str
) -> None:
    migration, (old, new), at, message = PROOF_FAILURES[case]
    workspace.add_revision("rules made by hand", *migration)
    lock_before = workspace.lock.read_text()
    versions_before = sorted(workspace.versions.glob("*.py"))
    workspace.edit("faqs", old, new)

    result = workspace.refdata("revision", "-m", "never written")

    assert result.code == 2
    where = f"{workspace.reference}/faqs.yaml:{line_of(workspace, 'faqs', at)}"
    assert result.err == f"error: {message.format(where=where)}\n"
    assert sorted(workspace.versions.glob("*.py")) == versions_before
    assert workspace.lock.read_text() == lock_before


def test_a_raw_control_character_in_a_file_is_named(files_workspace: Workspace) -> None:
    path = files_workspace.reference / "message_roles.yaml"
    data = path.read_bytes().replace(b"label: Agent", b"label: Ag\x00ent")
    path.write_bytes(data)
    line = data[: data.index(b"\x00")].count(b"\n") + 1
    result = files_workspace.refdata("check")
    assert result.code == 2
    assert (
        f"message_roles.yaml:{line}: not valid YAML: the control character U+0000 is not "
        "allowed in a YAML file: remove it" in result.err
    )


def test_rows_that_refer_to_a_changed_lookup_are_tried_against_the_rules_again(
    workspace: Workspace,
) -> None:
    workspace.add_revision(
        "products need an open account type",
        "CREATE FUNCTION open_type() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF (SELECT label FROM account_types WHERE code = NEW.account_type_code) LIKE 'Closed%' "
        "THEN RAISE EXCEPTION 'account type % is closed', NEW.account_type_code; END IF; "
        "RETURN NEW; END $$; CREATE TRIGGER open_type BEFORE INSERT OR UPDATE ON products "
        "FOR EACH ROW EXECUTE FUNCTION open_type()",
        "DROP TRIGGER open_type ON products; DROP FUNCTION open_type()",
    )
    versions_before, lock_before = sorted(workspace.versions.iterdir()), workspace.lock.read_text()
    workspace.edit("account_types", "label: Mortgage,", "label: Closed to new business,")
    line = line_of(workspace, "products", "- code: tracker_mortgage")

    for args in (["check"], ["revision", "-m", "never written"]):
        result = workspace.refdata(*args)

        assert result.code == 2, result.out + result.err
        assert (
            f"products.yaml:{line}: code 'tracker_mortgage': account type mortgage is closed"
        ) in result.err, "the products were not changed, but their lookup was"
    assert sorted(workspace.versions.iterdir()) == versions_before
    assert workspace.lock.read_text() == lock_before
