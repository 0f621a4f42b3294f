"""`tipbox prune`, the retention policy, and what `tipbox doctor` says about it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.helpers import cli_env, sqlite_bytes
from tests.newsroom_fixtures import add_journalist, store_ids, submit
from tipbox.cli import main
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.inbox import InboxService
from tipbox.models import AuditEntry, Item, Source
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore, new_item_id

TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture
def db(settings: Settings) -> sessionmaker[Session]:
    return make_session_factory(make_engine(settings.database_url))


def source_last_heard(settings: Settings, db: sessionmaker[Session], days_ago: int, *,
                      read: bool = True) -> int:
    ring = load_keyring(settings.keys_dir, settings.gnupg_dir)
    store = CiphertextStore(settings.store_dir)
    source_id = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(
        generate_codename())
    submit(db, ring, store, source_id, "a tip", day=TODAY - dt.timedelta(days=days_ago))
    if read:
        reader = add_journalist(db, f"reader{source_id}")
        InboxService(db, store).mark_source_read(reader, source_id)
    return source_id


def prune(settings: Settings, *args: str, **extra: str) -> Result:
    return CliRunner().invoke(main, ["prune", *args], env=cli_env(settings, **extra))


def remaining(db: sessionmaker[Session]) -> list[int]:
    with db() as s:
        return sorted(s.scalars(select(Source.id)))


def test_prune_deletes_sources_quiet_for_longer_than_asked(
        settings: Settings, db: sessionmaker[Session]) -> None:
    old = source_last_heard(settings, db, 100)
    new = source_last_heard(settings, db, 5)
    files_before = store_ids(settings.store_dir)

    dry = prune(settings, "--older-than", "30", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would delete 1 source(s) with 1 item(s) and 0 reply(ies)" in dry.output
    assert remaining(db) == sorted([old, new])

    done = prune(settings, "--older-than", "30", "--counts")
    assert done.exit_code == 0, done.output
    assert "Deleted 1 source(s), quiet for more than 30 day(s)." in done.output
    assert remaining(db) == [new]
    assert len(files_before - store_ids(settings.store_dir)) == 1

    again = prune(settings, "--older-than", "30", "--counts")
    assert again.exit_code == 0 and "Deleted 0 source(s)" in again.output


def test_prune_run_from_a_timer_leaves_no_counts_or_dates_in_any_log(
        settings: Settings, db: sessionmaker[Session]) -> None:
    # A count per day would tell when each deleted source was last active.
    source_last_heard(settings, db, 100)
    with db() as s:
        audit_entries_at_init = s.scalar(select(func.count()).select_from(AuditEntry))
    done = prune(settings, "--older-than", "30")  # not a terminal, as under systemd
    assert done.exit_code == 0
    assert done.output == "Done: deleted the sources quiet for more than 30 day(s).\n"
    assert remaining(db) == []
    with db() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == audit_entries_at_init


def test_what_prune_deleted_is_gone_from_the_database_file_and_its_log(
        settings: Settings, db: sessionmaker[Session]) -> None:
    assert settings.database_url.startswith("sqlite")
    old = source_last_heard(settings, db, 100)
    with db() as s:
        designation = s.get_one(Source, old).designation.encode()
        item_ids = [i.encode() for i in s.scalars(select(Item.id).where(Item.source_id == old))]
    assert item_ids and all(marker in sqlite_bytes(settings.data_dir)
                            for marker in [designation, *item_ids])

    assert prune(settings, "--older-than", "30").exit_code == 0

    assert remaining(db) == []
    kept = sqlite_bytes(settings.data_dir)
    assert not any(marker in kept for marker in [designation, *item_ids])


def test_prune_keeps_unread_tips_unless_told(settings: Settings,
                                             db: sessionmaker[Session]) -> None:
    unread = source_last_heard(settings, db, 100, read=False)
    kept = prune(settings, "--older-than", "30", "--counts")
    assert kept.exit_code == 0
    assert "Kept 1 source(s) just as old whose items nobody has read" in kept.output
    assert remaining(db) == [unread]
    assert prune(settings, "--older-than", "30", "--include-unread").exit_code == 0
    assert remaining(db) == []


def test_prune_takes_the_period_from_the_setting_or_asks(
        settings: Settings, db: sessionmaker[Session]) -> None:
    source_last_heard(settings, db, 100)
    asked = prune(settings)
    assert asked.exit_code != 0
    assert "--older-than DAYS, or set TIPBOX_RETENTION_DAYS" in asked.output
    assert "Deleted 0 source(s)" in prune(settings, "--counts",
                                          TIPBOX_RETENTION_DAYS="200").output
    assert "Deleted 1 source(s)" in prune(settings, "--counts",
                                          TIPBOX_RETENTION_DAYS="90").output
    bad = prune(settings, TIPBOX_RETENTION_DAYS="0")
    assert bad.exit_code != 0 and "TIPBOX_RETENTION_DAYS must be a positive" in bad.output


def test_doctor_says_when_prune_is_not_running(settings: Settings,
                                               db: sessionmaker[Session]) -> None:
    runner = CliRunner()
    source_last_heard(settings, db, 100)
    unset = runner.invoke(main, ["doctor"], env=cli_env(settings))
    assert unset.exit_code == 0 and "Retention" not in unset.output

    overdue = runner.invoke(main, ["doctor"], env=cli_env(settings, TIPBOX_RETENTION_DAYS="30"))
    assert overdue.exit_code == 1
    # One day of grace: the cutoff is a UTC day, a daily timer may run at local midnight.
    assert "1 source(s) have been quiet for more than 31 days" in overdue.output
    assert "schedule `tipbox prune`" in overdue.output

    assert prune(settings, TIPBOX_RETENTION_DAYS="30").exit_code == 0
    fine = runner.invoke(main, ["doctor"], env=cli_env(settings, TIPBOX_RETENTION_DAYS="30"))
    assert fine.exit_code == 0, fine.output
    assert "Retention: sources quiet for 30 days are deleted" in fine.output


def test_nothing_is_pruned_on_a_database_that_needs_init(
        settings: Settings, db: sessionmaker[Session]) -> None:
    source_last_heard(settings, db, 100)
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0004'")
    engine.dispose()
    result = prune(settings, "--older-than", "1")
    assert result.exit_code != 0 and "run `tipbox init`" in result.output
    with make_session_factory(make_engine(settings.database_url))() as s:
        assert s.scalar(select(func.count()).select_from(Source)) == 1


def test_doctor_reports_what_crashes_left_until_it_is_swept_and_init_spares_live_uploads(
        settings: Settings, db: sessionmaker[Session]) -> None:
    from tipbox.provisioning import initialise
    from tipbox.storage import new_item_id
    from tipbox.store_claims import StoreClaim

    store = CiphertextStore(settings.store_dir)
    runner = CliRunner()
    # A submission the database names: the store is this database's.
    source_id = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(
        generate_codename())
    submit(db, load_keyring(settings.keys_dir, settings.gnupg_dir), store,
           source_id, "kept")
    assert runner.invoke(main, ["doctor"], env=cli_env(settings)).exit_code == 0
    store.path_for(new_item_id()).write_bytes(b"ciphertext with no row")
    (store.tmp / f"{'1' * 32}.part").write_bytes(b"an upload nobody writes any more")
    live = StoreClaim(store)  # an upload still arriving, in this very process
    arriving = live.temp_path()
    arriving.write_bytes(b"still arriving")

    reported = runner.invoke(main, ["doctor"], env=cli_env(settings))
    assert reported.exit_code == 1
    assert "1 temp file(s), 1 file(s) without a row" in reported.output

    initialise(settings)  # `tipbox init` while the upload goes on
    assert arriving.read_bytes() == b"still arriving"
    assert runner.invoke(main, ["doctor"], env=cli_env(settings)).exit_code == 0
    arriving.unlink()
    live.release()


def test_doctor_reports_a_store_that_the_database_names_nothing_of(
        settings: Settings, tmp_path: Path) -> None:
    store = CiphertextStore(settings.store_dir)
    store.path_for(new_item_id()).write_bytes(b"a submission of the real database")
    elsewhere = cli_env(settings, TIPBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}")
    assert CliRunner().invoke(main, ["init"], env=elsewhere).exit_code == 0

    reported = CliRunner().invoke(main, ["doctor"], env=elsewhere)

    assert reported.exit_code == 1
    assert "holds 1 file(s) and the database names none of them" in reported.output
    assert "check that TIPBOX_DATABASE_URL is this instance's database" in reported.output
    assert len(list(settings.store_dir.glob("*.gpg"))) == 1


def test_doctor_reports_temporaries_that_killed_writers_left_in_the_data_folder(
        settings: Settings) -> None:
    from tipbox.provisioning import initialise

    runner = CliRunner()
    left = settings.data_dir / ".instance-secrets.json.k1ll3d00"
    left.write_text('{"flask_secret_key": "a copy of the secrets"}')
    left.chmod(0o600)  # as mkstemp made it

    reported = runner.invoke(main, ["doctor"], env=cli_env(settings))

    assert reported.exit_code == 1
    assert (f"The data folder ({settings.data_dir}) holds 1 temporary file(s) that a killed "
            "writer left: .instance-secrets.json.k1ll3d00") in reported.output
    assert left.exists()  # doctor only looks
    initialise(settings)
    assert runner.invoke(main, ["doctor"], env=cli_env(settings)).exit_code == 0
