"""Receiving uploads: where a submission's body turns into ciphertext in the store.

- ``multipart``: the transport, a streaming multipart/form-data reader that never spools;
- ``upload``: the two forms an upload arrives in (plain, or encrypted by the browser),
  the CSRF-token-first rule, the message field's checks;
- ``draft``: the submission in progress, encrypted item by item, kept all or nothing.

Plain Python and Werkzeug's sans-IO parser: nothing here imports Flask
(tests/intake/test_imports.py), so it can be driven without a request.
"""
