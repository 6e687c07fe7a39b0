"""The fixtures' pure parts: generation, source material, COPY encoding, the report."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from seed_data.demo.data_set import DataSet, differences
from seed_data.demo.generate import (
    DEMO_ID_BASE,
    GENERATOR_VERSION,
    TABLES,
    DemoGenerator,
    accounts_per_customer,
    expected_rows,
    first_account_number,
)
from seed_data.demo.load import SkippedCustomer, _BlockReader, copy_text
from seed_data.demo.reference import ProductRef, ReferenceData
from seed_data.demo.report import Verdict, build_report, verdict_for
from seed_data.demo.source import (
    SOURCE_MATERIAL,
    SourceMaterialError,
    load_source_material,
)

SOURCE = load_source_material()
# A catalogue shaped like head's: generation must work from whatever the database holds.
CATALOGUE = ReferenceData(
    products=(
        ProductRef("everyday_current", "Everyday Current Account", "current_account"),
        ProductRef("easy_access_saver", "Easy Access Saver", "savings"),
        ProductRef("rewards_credit_card", "Rewards Credit Card", "credit_card"),
        ProductRef("tracker_mortgage", "Tracker Mortgage", "mortgage"),
    ),
    codes={
        "account_types": frozenset({"current_account", "savings", "credit_card", "mortgage"}),
        "account_statuses": frozenset(SOURCE.account_status_weights),
        "conversation_channels": frozenset(SOURCE.channel_weights),
        "message_roles": frozenset({SOURCE.question_role, SOURCE.reply_role}),
        "transaction_categories": frozenset(m.category for m in SOURCE.merchants),
    },
)


@pytest.fixture(scope="module")
def generator() -> DemoGenerator:
    return DemoGenerator(42, SOURCE, CATALOGUE)


def test_a_customer_is_the_same_whatever_comes_before_it(generator: DemoGenerator) -> None:
    in_sequence = list(generator.customers(30))[17]
    alone = DemoGenerator(42, SOURCE, CATALOGUE).customer(18)
    assert alone == in_sequence, "customer 18 must not depend on customers 1-17 (reruns)"
    assert DemoGenerator(43, SOURCE, CATALOGUE).customer(18) != alone


def test_accounts_alternate_and_ids_never_overlap(generator: DemoGenerator) -> None:
    customers = list(generator.customers(200))
    assert [len(c.tables[1]) for c in customers[:4]] == [2, 3, 2, 3]
    for table_index, table in enumerate(TABLES):
        ids = [row[0] for c in customers for row in c.tables[table_index]]
        assert len(ids) == len(set(ids)), f"{table} ids repeat"
        assert all(DEMO_ID_BASE < i < 2 * DEMO_ID_BASE for i in ids), f"{table} id out of block"
    assert first_account_number(201) == sum(accounts_per_customer(n) for n in range(1, 201)) + 1


def test_rows_are_realistic_and_within_the_year(generator: DemoGenerator) -> None:
    as_of = generator.as_of
    customers = list(generator.customers(2000))
    vip_share = sum(c.tables[0][0][7] for c in customers) / len(customers)
    assert 0.22 < vip_share < 0.28, "about a quarter of customers are VIP"
    for customer in customers:
        (row,) = customer.tables[0]
        assert customer.customer_id.startswith("DEMO-") and row[4].endswith("@example.com")
        accounts = customer.tables[1]
        assert accounts[0][4] == "current_account", "everyone's first account is a current one"
        opened = {a[0]: a[7] for a in accounts}
        assert all(row[9] <= a[7] <= as_of - dt.timedelta(days=366) for a in accounts)
        counts = Counter(t[1] for t in customer.tables[2])
        assert all(10 <= counts[a[0]] <= 20 for a in accounts)
        for t in customer.tables[2]:
            assert as_of - dt.timedelta(days=365) <= t[7] <= as_of
            assert t[7] > opened[t[1]]
            assert isinstance(t[2], Decimal) and t[2].as_tuple().exponent == -2
        question, reply = customer.tables[4]
        assert (question[2], question[3], reply[2], reply[3]) == (1, "customer", 2, "agent")
        assert "{" not in question[4] + reply[4], "every template placeholder is filled"
        assert reply[5] > question[5]


def test_demo_password_hash_matches_the_documented_password() -> None:
    algorithm, iterations, salt, encoded = SOURCE.password_hash.split("$")
    digest = hashlib.pbkdf2_hmac("sha256", SOURCE.password.encode(), salt.encode(), int(iterations))
    assert algorithm == "pbkdf2_sha256"
    assert base64.b64encode(digest).decode() == encoded, (
        "demo_password_hash in source_material.yaml does not match demo_password: recompute it"
    )


def test_source_material_codes_missing_from_the_database_are_all_named() -> None:
    codes = {**CATALOGUE.codes, "transaction_categories": frozenset({"groceries"})}
    with pytest.raises(SourceMaterialError, match="transaction_categories has no bills, cash"):
        ReferenceData(CATALOGUE.products, codes).check(SOURCE)
    ReferenceData(CATALOGUE.products, CATALOGUE.codes).check(SOURCE)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("as_of:", "as_of_typo:"), "KeyError"),
        (('min: "-142.60"', 'min: "-142.605"'), "at most two decimal places"),
        (("channel_weights: {web_chat: 40", "channel_weights: {web_chat: 0"), "positive integers"),
        (("merchants:", "merchants: ["), "source_material.yaml"),
    ],
)
def test_malformed_source_material_is_refused_with_the_file_named(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    broken = tmp_path / "source_material.yaml"
    broken.write_text(SOURCE_MATERIAL.read_text().replace(*edit, 1))
    with pytest.raises(SourceMaterialError, match=message) as raised:
        load_source_material(broken)
    assert str(broken) in str(raised.value)


def test_copy_text_escapes_what_copy_would_misread() -> None:
    row = ("tab\there", "new\nline", "back\\slash", None, True, False, Decimal("-1.50"))
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert copy_text([row, (1, stamp, dt.date(2000, 2, 29), "£ café")]) == (
        "tab\\there\tnew\\nline\tback\\\\slash\t\\N\tt\tf\t-1.50\n"
        "1\t2026-01-02T03:04:05+00:00\t2000-02-29\t£ café\n"
    )


def test_copy_text_round_trips_through_postgresql(engine: sa.Engine) -> None:
    values = ("tab\there", "new\nline\r", "back\\slash \\N", "£ café", None)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE t (a text, b text, c text, d text, e text)")
            cursor.copy_expert("COPY t FROM STDIN", io.StringIO(copy_text([values])))
            cursor.execute("SELECT * FROM t")
            assert cursor.fetchone() == values
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("rate", "verdict"),
    [
        (1.0, Verdict.PASSED),
        (0.99, Verdict.PASSED),
        (0.9899, Verdict.WARNING),
        (0.95, Verdict.WARNING),
        (0.9499, Verdict.FAILED),
        (0.0, Verdict.FAILED),
    ],
)
def test_verdict_thresholds(rate: float, verdict: Verdict) -> None:
    assert verdict_for(rate) is verdict


def test_report_variance_and_rate_never_let_surplus_hide_missing_rows() -> None:
    report = build_report(
        {"customers": 100, "accounts": 250},
        {"customers": 90, "accounts": 260},
        skipped=[SkippedCustomer("DEMO-00000001", "boom")],
        duration_seconds=2.0,
        rows_written=340,
    )
    assert [(e.entity, e.variance) for e in report.entities] == [
        ("customers", -10),
        ("accounts", 10),
    ]
    assert report.success_rate == pytest.approx(340 / 350)
    assert report.missing_rows == 10
    assert report.verdict is Verdict.WARNING
    assert (report.exit_code(), report.exit_code(strict=True)) == (0, 1)
    document = report.as_json(seed=42)
    assert document["seed"] == 42 and document["rows_per_second"] == 170.0
    assert document["skipped_customers"] == [{"customer_id": "DEMO-00000001", "reason": "boom"}]


def test_report_of_nothing_expected_is_complete() -> None:
    report = build_report({"customers": 0}, {"customers": 0})
    assert (report.success_rate, report.verdict, report.exit_code()) == (1.0, Verdict.PASSED, 0)


# What generator version 1 gives for seed 42, 30 customers, this catalogue and the source
# material as committed (its SHA-256 is pinned too, so the failure can say which changed).
PINNED_GENERATOR = (
    GENERATOR_VERSION,
    "502d4e983cb3e0610e686944f9b1cc8b1a3a492b24bec452f7c5414501ea9d5f",
    "7258bcf3c4127d99880ab9d2837cab03763e951b83c90772fc490e308cd57131",
)


def test_generated_rows_change_only_with_the_generator_version(generator: DemoGenerator) -> None:
    digest = hashlib.sha256()
    for customer in generator.customers(30):
        for rows in customer.tables:
            digest.update(copy_text(rows).encode())
    version, source_sha256, rows_sha256 = PINNED_GENERATOR
    if SOURCE.sha256 != source_sha256:
        pytest.skip("source_material.yaml changed: re-pin PINNED_GENERATOR's digests")
    assert (GENERATOR_VERSION, digest.hexdigest()) == (version, rows_sha256), (
        "generate.py now gives other rows for the same seed: bump GENERATOR_VERSION (so "
        "databases loaded by the old generator are refused, not mixed) and re-pin "
        "PINNED_GENERATOR; a new Faker major changes the names too"
    )


def test_expected_rows_match_what_is_generated(generator: DemoGenerator) -> None:
    for customer in generator.customers(300):
        assert customer.row_counts() == expected_rows(42, customer.ordinal), (
            f"customer {customer.ordinal}: expected_rows() must predict the generated rows, "
            "or reruns would report wrong expected counts for customers already loaded"
        )


def test_data_set_differences_are_named_in_the_users_terms() -> None:
    recorded = DataSet(1, dt.date(2026, 11, 1), "a" * 64, "b" * 64, 1)
    wanted = DataSet(2, dt.date(2025, 1, 1), "c" * 64, "d" * 64, 2)
    assert differences(recorded, wanted) == [
        "--seed 1 (this run: 2)",
        "--as-of 2026-11-01 (this run: 2025-01-01)",
        "the source material (seed_data/demo/source_material.yaml) has changed",
        "the products on sale have changed",
        "generator version 1 (this checkout: 2)",
    ]
    assert differences(recorded, recorded) == []


def test_catalogue_fingerprint_follows_the_products_on_sale() -> None:
    fewer = ReferenceData(CATALOGUE.products[:-1], CATALOGUE.codes)
    assert fewer.catalogue_sha256 != CATALOGUE.catalogue_sha256
    assert ReferenceData(CATALOGUE.products, {}).catalogue_sha256 == CATALOGUE.catalogue_sha256


def test_report_counts_every_skipped_customer_but_lists_a_bounded_number() -> None:
    listed = [SkippedCustomer(f"DEMO-{n:08d}", "boom") for n in range(3)]
    report = build_report(
        {"customers": 5000}, {"customers": 0}, skipped=listed, customers_skipped=5000
    )
    document = report.as_json()
    assert document["customers_skipped"] == 5000
    assert len(document["skipped_customers"]) == 3


def test_copy_text_reaches_psycopg2_in_chunks_of_whole_blocks() -> None:
    reader = _BlockReader(["ab\n", "cd\n", "ef\n"])
    assert reader.read(4) == "ab\ncd\n"
    assert reader.read(4) == "ef\n"
    assert reader.read(4) == ""
