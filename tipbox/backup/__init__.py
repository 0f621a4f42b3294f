"""Encrypted backups of a running instance, and their restore onto an empty data folder.

- :mod:`tipbox.backup.encryption`: the system gpg as a filter, with the passphrase handed
  over through a pipe (never argv, the environment or the disk), or to a key file.
- :mod:`tipbox.backup.database`: a consistent snapshot of the database (SQLite's online
  backup, or ``pg_dump`` on an exported PostgreSQL snapshot) and its restore.
- :mod:`tipbox.backup.tar_stream`: tar headers by ``tarfile``, contents moved by the
  kernel (``sendfile`` into gpg, ``splice`` out of it), so memory stays flat.
- :mod:`tipbox.backup.archive`: the backup itself, a tar stream written straight into gpg,
  and why its order (database first, then the files its rows name) is consistent.
- :mod:`tipbox.backup.restore`: decryption into a staging folder, renamed into place only
  once gpg has vouched for the whole archive.

Plain Python, no click and no printing: ``tipbox backup`` and ``tipbox restore``
(:mod:`tipbox.cli.backup_commands`) print the outcomes these return.
"""
