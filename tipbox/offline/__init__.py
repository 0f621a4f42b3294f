"""``tipbox-open``: the tool for the newsroom's air-gapped machine.

It opens export bundles (docs/bundle-format.md), checks every ciphertext against the
manifest, decrypts with the local keyring and writes each item back under a safe name.
It imports only the standard library, python-gnupg, ``tipbox.crypto.gpg`` and
``tipbox.errors``: nothing from the web interfaces or the database, which the offline
machine does not have.
"""
