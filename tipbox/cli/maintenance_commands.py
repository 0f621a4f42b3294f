"""`tipbox prune` and `tipbox doctor`: the retention policy and the installation's
health, both fit to run from a timer."""

from __future__ import annotations

import datetime as dt
import sys

import click

from tipbox.cli.services import Services, open_services, settings_from_env
from tipbox.config import Settings


@click.command()
@click.option("--older-than", "days", type=click.IntRange(min=1), default=None, metavar="DAYS",
              help="Days without a submission or a reply (default: TIPBOX_RETENTION_DAYS).")
@click.option("--include-unread", is_flag=True,
              help="Delete sources past the cutoff even if nobody has read all their items.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--counts/--no-counts", default=None,
              help="Print how many sources, items and replies (default: only on a terminal).")
def prune(days: int | None, include_unread: bool, dry_run: bool, counts: bool | None) -> None:
    """Delete sources gone quiet, with all their items and replies (a retention policy).

    Run it daily (cron or a systemd timer) so that a seized server holds as little as
    possible. A source with an item no journalist has read is kept unless
    --include-unread. Run from a timer, it prints no counts: a daily count with its date
    would keep in the system log when each deleted source was last active."""
    settings = settings_from_env()
    days = days or settings.retention_days
    if days is None:
        raise click.ClickException("How old? Give --older-than DAYS, or set "
                                   "TIPBOX_RETENTION_DAYS.")
    if counts is None:
        counts = sys.stdout.isatty()
    with open_services(settings) as services:
        plan = services.inbox.pruning(_retention_cutoff(days), include_unread=include_unread)
        period = f"quiet for more than {days} day(s)"
        if dry_run:
            click.echo(f"Would delete {len(plan.source_ids)} source(s) with {plan.items} "
                       f"item(s) and {plan.replies} reply(ies), {period}.")
        else:
            # Not in the audit log, like every deletion: an entry per run would date the
            # last activity of the sources it deleted.
            deleted = services.inbox.delete_sources(plan.source_ids, quiet_since=plan.cutoff,
                                                    keep_unread=not include_unread)
            if counts:
                spared = len(plan.source_ids) - deleted
                click.echo(f"Deleted {deleted} source(s), {period}"
                           + (f"; {spared} sent something while this ran and were kept"
                              if spared else "") + ".")
            else:
                click.echo(f"Done: deleted the sources {period}.")
    if plan.kept_unread:
        how_many = f"{plan.kept_unread} source(s)" if counts or dry_run else "sources"
        click.echo(f"Kept {how_many} just as old whose items nobody has read all of: read "
                   "them, or use --include-unread.")


def _retention_cutoff(days: int) -> dt.date:
    from tipbox.clock import today

    return today() - dt.timedelta(days=days)


@click.command()
def doctor() -> None:
    """Check the installation and the newsroom keys; say what to fix."""
    from tipbox.crypto.keyring import secret_material_problem

    settings = settings_from_env()
    problems: list[str] = []
    notes: list[str] = []
    # An out-of-date schema is one of the problems to report, not a reason to stop.
    with open_services(settings, allow_outdated_schema=True) as services:
        if not services.schema_current:
            problems.append("The database schema is out of date: run `tipbox init`.")
        folder = secret_material_problem(settings.keys_dir, settings.gnupg_dir,
                                         settings.gpg_binary)
        if folder:
            problems.append(folder)
        active = [r for r in services.keys.records() if r.state.value == "active"]
        notes.append(f"{len(active)} active key(s): "
                     + (", ".join(r.fingerprint for r in active) or "none"))
        problems.extend(services.keys.expiry_warnings())
        if settings.retention_days is not None and services.schema_current:
            _check_retention(services, settings.retention_days, problems, notes)
        if services.schema_current:
            _check_leftovers(services, problems)
    _check_data_folder_temps(settings, problems)
    _check_free_space(settings, problems, notes)
    _check_onion_services(settings, problems, notes)
    for note in notes:
        click.echo(note)
    for problem in problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("All checks passed.")


def _check_retention(services: Services, days: int, problems: list[str],
                     notes: list[str]) -> None:
    # A day's grace: the cutoff is a UTC day, and a daily timer may run at local
    # midnight, hours after the UTC day changed.
    plan = services.inbox.pruning(_retention_cutoff(days + 1))
    notes.append(f"Retention: sources quiet for {days} days are deleted by `tipbox prune`.")
    if plan.source_ids:
        problems.append(f"{len(plan.source_ids)} source(s) have been quiet for more than "
                        f"{days + 1} days but are still here: schedule `tipbox prune` to run "
                        "daily (docs/admin-guide.md).")
    if plan.kept_unread:
        notes.append(f"{plan.kept_unread} source(s) past the retention period are kept "
                     "because nobody has read all their items.")


def _check_leftovers(services: Services, problems: list[str]) -> None:
    from tipbox.storage import CiphertextStore
    from tipbox.store_sweep import survey

    found = survey(CiphertextStore(services.settings.store_dir), services.sessions)
    if found.unnamed_store:
        problems.append(
            f"The store ({services.settings.store_dir}) holds {found.unnamed_store} file(s) "
            "and the database names none of them, so nothing removes them: check that "
            "TIPBOX_DATABASE_URL is this instance's database. If it is, those files are "
            "what a deletion cut short left: remove them by hand.")
    if found.found:
        problems.append(
            f"The store holds what crashes left: {found.dead_claims} unfinished upload(s) or "
            f"reply(ies), {found.temp_files} temp file(s), {found.orphans} file(s) without "
            "a row. The running service removes them within 10 minutes (or at its next "
            "start); `tipbox init` removes them now. Uploads in progress are never counted.")


def _check_data_folder_temps(settings: Settings, problems: list[str]) -> None:
    from tipbox.durable import dead_temps

    left = [temp.name for path in settings.written_whole for temp in dead_temps(path)]
    if left:
        problems.append(
            f"The data folder ({settings.data_dir}) holds {len(left)} temporary file(s) that "
            f"a killed writer left: {', '.join(left)}. A copy of the instance secrets may be "
            "among them: `tipbox init` removes them now, the service at its next start.")


def _check_free_space(settings: Settings, problems: list[str], notes: list[str]) -> None:
    from tipbox.errors import binary_size
    from tipbox.storage import CiphertextStore

    free = CiphertextStore(settings.store_dir).free_bytes()
    reserve = binary_size(settings.min_free_bytes)
    if free < settings.min_free_bytes:
        problems.append(f"Only {binary_size(free)} free on the disk that holds "
                        f"{settings.store_dir}, under the reserve of {reserve} "
                        "(TIPBOX_MIN_FREE_BYTES): the source interface refuses every upload. "
                        "Free some space (or add a disk); nothing needs restarting.")
    else:
        notes.append(f"{binary_size(free)} free for the store (uploads stop at {reserve}).")


def _check_onion_services(settings: Settings, problems: list[str], notes: list[str]) -> None:
    if settings.tor is None:
        notes.append("Onion services: not checked (TIPBOX_ONION_DIR is not set).")
        return
    from tipbox.onion import OnionLayout, onion_health

    health = onion_health(OnionLayout(settings.tor.tor_dir), settings.tor.pid_file,
                          settings.tor.torrc)
    notes.extend(health.notes)
    problems.extend(health.problems)
