/* tipbox: encrypt the submission in the source's browser before any byte of it is sent.
 *
 * Progressive enhancement of the submission form (templates/source/submit.html). Without
 * this script, or when it cannot run, the form posts as it does with JavaScript off and the
 * server encrypts on arrival. With it, the message and each file are encrypted with
 * OpenPGP.js (served from this origin, see tipbox/web/browser_encryption.py) to every
 * active newsroom key, then uploaded as ciphertext only. The server checks that each item
 * is exactly an OpenPGP message to those keys (tipbox/crypto/message_check.py).
 *
 * Rules kept here: no inline script, no eval, no innerHTML (the page's CSP enforces all
 * three); nothing is ever sent unencrypted unless the source presses "Send without
 * in-browser encryption" after a failure; files are read as streams, never whole. Their
 * ciphertext is sent in pieces as it is made, from a dedicated worker that runs this same
 * file (see sendInWorker and workerMain), or, for a server without the piece routes, waits
 * for one upload in Blobs or, when large, in the site's private storage (see openSpool).
 */
'use strict';

(function () {
  // What the page and the worker share (this file runs in both: see workerMain). Declared
  // before the worker's early return, which would leave anything declared after it
  // uninitialised there.
  //
  // Plaintext is handed to OpenPGP.js in chunks this big. In the worker, 64 KiB (as
  // File.stream() gives them): Firefox's page process, where the worker lives, rose by
  // +270 to +277 MiB for a 1 GiB upload as built, against +449 to +470 with 1 MiB chunks,
  // for about a tenth of the speed. On the page's own thread 1 MiB, whose heap rose less
  // that way (docs/benchmarks.md).
  const CHUNK_BYTES = (typeof document === 'undefined' ? 64 : 1024) * 1024;
  const ROLL_UP_BYTES = 8 * 1024 * 1024; // ciphertext is handed to a Blob in pieces this big
  // How far the encryption may read ahead of the ciphertext the upload has taken (see
  // countedChunks), so OpenPGP.js always has the next chunks.
  const AHEAD_BYTES = 2 * 1024 * 1024;
  const SPOOL_PREFIX = 'tipbox-upload-'; // folders of spooled ciphertext in private storage
  const MAX_FILENAME_BYTES = 255; // an OpenPGP literal data packet's limit
  const RETRY_SECONDS = [1, 2, 4, 8, 15, 30]; // then every 30 s, for as long as it takes

  let config = null;
  let T = null;
  let keys = null;
  // How the upload in pieces reports to the page and asks it for things: calls in the
  // page (pageUi), messages from the worker (see workerMain).
  let ui = null;

  class Cancelled extends Error {}

  class Refused extends Error {
    constructor(message, options) {
      super(message);
      this.options = options || {};
    }
  }

  if (typeof document === 'undefined') {
    workerMain();
    return;
  }

  const form = document.getElementById('submit-form');
  const configElement = document.getElementById('encrypt-config');
  const panel = document.getElementById('encrypt-panel');
  if (!form || !configElement || !panel || typeof openpgp === 'undefined' ||
      typeof ReadableStream === 'undefined' || typeof TransformStream === 'undefined' ||
      typeof Blob.prototype.stream !== 'function' || !window.crypto || !window.crypto.subtle) {
    return; // The plain form stays as it is.
  }

  config = JSON.parse(configElement.textContent);
  T = config.text;
  const workerUrl = trustedWorkerUrl(config.worker);

  let busy = false;
  let job = null;

  document.getElementById('encrypt-note').hidden = false;
  const restartNote = document.getElementById('restart-note'); // for the plain form only
  if (restartNote) {
    restartNote.hidden = true;
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (!busy) {
      run();
    }
  });
  window.addEventListener('beforeunload', function (event) {
    if (busy) {
      event.preventDefault();
      event.returnValue = '';
    }
  });

  // Cancel, in the page or in the worker: whatever the attempt is waiting for gives up.
  function stopJob(current) {
    current.cancelled = true;
    if (current.wakeReader) {
      current.wakeReader();
    }
    if (current.reader) {
      current.reader.cancel().catch(function () {});
    }
    if (current.xhr) {
      current.xhr.abort();
    }
    if (current.pieces) {
      current.pieces.cancel();
    }
    if (current.worker) {
      current.worker.postMessage({ type: 'cancel' });
    }
  }

  async function run() {
    const message = form.elements.message.value;
    const chosen = Array.from(form.elements.files.files);
    const files = chosen.filter(function (file) { return file.size > 0; });
    const problem = checkLimits(message, files);
    if (problem) {
      showPanel([]);
      fail(problem, { retry: false, plain: false });
      return;
    }
    const items = [];
    if (message.trim()) {
      items.push({ field: 'message', label: T.message, text: message,
                   size: new TextEncoder().encode(message).length });
    }
    files.forEach(function (file, i) {
      items.push({ field: 'files', label: file.name, file: file, size: file.size, index: i + 1 });
    });
    items.forEach(function (item, position) { item.position = position; });
    const current = { cancelled: false, reader: null, xhr: null, spool: null, pieces: null,
                      worker: null };
    let next = null; // the confirmation page, once the server has kept everything
    job = current;
    setBusy(true);
    showPanel(items);
    delete panel.dataset.sentBy; // set again once this attempt's sender is known
    try {
      keys = keys || await readKeys();
      // The flood defence's proof (static/pow.js), when the site asks for one: it goes
      // with the request that starts the submission.
      current.proof = window.tipboxProof ? await window.tipboxProof() : null;
      if (current.cancelled) {
        throw new Cancelled(); // pressed while the keys were read or the proof worked out
      }
      const emptyFiles = chosen.length - files.length;
      if (!config.pieces) {
        next = await sendWhole(items, files, emptyFiles, current);
      } else if (workerUrl) {
        next = await sendInWorker(items, emptyFiles, current);
      } else {
        next = await sendFromPage(items, emptyFiles, current);
      }
    } catch (error) {
      if (current.cancelled || error instanceof Cancelled) {
        fail(T.cancelled, {});
      } else if (error instanceof Refused) {
        fail(error.message, error.options);
      } else {
        fail(T.encryptFailed, {});
      }
    } finally {
      items.forEach(function (item) { item.blob = null; }); // let the ciphertext go
      if (current.spool) {
        await current.spool.discard();
      }
      if (current.pieces) {
        current.pieces.stop();
      }
    }
    if (next) {
      setBusy(false);
      setStatus(T.done, false);
      panelButtons([]);
      window.location.assign(next);
    }
  }

  // The whole submission in one request, its ciphertext spooled first: for a server
  // without the piece routes (config.pieces unset).
  async function sendWhole(items, files, emptyFiles, current) {
    const size = files.reduce(function (sum, file) { return sum + file.size; }, 0);
    current.spool = await openSpool(size > config.spoolBytes);
    for (const item of items) {
      item.blob = await encryptItem(item, current);
    }
    const total = items.reduce(function (sum, item) { return sum + item.blob.size; }, 0);
    if (total > config.maxBytes) {
      throw new Refused(T.tooLarge, { retry: false });
    }
    // A browser that had to keep a large submission in memory may refuse to upload it.
    const strained = !current.spool.onDisk && size > config.spoolBytes;
    const answer = await upload(items, emptyFiles, current,
                                strained ? T.memoryFailed : T.networkFailed);
    return outcome(answer);
  }

  function checkLimits(message, files) {
    if (!message.trim() && !files.length) {
      return T.nothing;
    }
    if (Array.from(message).length > config.maxMessageChars) {
      return T.tooLong;
    }
    if (files.length > config.maxFiles) {
      return T.tooMany;
    }
    const size = files.reduce(function (sum, file) { return sum + file.size; }, 0);
    return size > config.maxBytes ? T.tooLarge : null;
  }

  // --- encryption -------------------------------------------------------------------

  // SEIPDv1 (integrity protected with MDC) and AES-256: what GnuPG 2.2 and sq both read.
  function pgpConfig() {
    return {
      aeadProtect: false,
      preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
      preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed,
    };
  }

  async function readKeys() {
    if (!config.keys.length) {
      throw new Error('no newsroom key');
    }
    const result = [];
    for (const entry of config.keys) {
      const key = await openpgp.readKey({ armoredKey: entry.armored });
      if (key.isPrivate() || key.getFingerprint().toUpperCase() !== entry.fingerprint) {
        throw new Error('unexpected key');
      }
      onlySeipdV1(key);
      result.push(key);
    }
    return result;
  }

  // OpenPGP.js writes SEIPDv2 (AEAD) when every key advertises it; GnuPG 2.2 cannot read
  // that and the server refuses it. Forget the advertisement on our parsed copy only
  // (signature checks use the signed bytes, not these parsed fields).
  function onlySeipdV1(key) {
    const signatures = key.directSignatures.slice();
    key.users.forEach(function (user) { signatures.push.apply(signatures, user.selfCertifications); });
    signatures.forEach(function (signature) {
      if (signature.features) {
        signature.features[0] &= ~openpgp.enums.features.seipdv2;
      }
    });
  }

  async function encryptItem(item, current) {
    const encrypted = await encryptedOutput(item, current);
    if (encrypted instanceof Uint8Array) {
      return new Blob([encrypted], { type: 'application/octet-stream' });
    }
    return current.spool.store(encrypted, current);
  }

  // OpenPGP.js's output for one item: a Uint8Array for the message, a stream of
  // ciphertext for a file (read as it is encrypted, never whole).
  async function encryptedOutput(item, current) {
    // The literal data packet's date, to the day: no finer time than the server keeps.
    const now = new Date();
    const day = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
    let input;
    if (item.field === 'message') {
      input = new TextEncoder().encode(item.text);
    } else {
      input = item.file.stream().pipeThrough(countedChunks(item, current));
    }
    const message = await openpgp.createMessage({
      binary: input, format: 'binary', date: day,
      filename: item.field === 'files' ? safeFilename(item.file.name, item.index) : '',
    });
    const encrypted = await openpgp.encrypt({
      message: message, encryptionKeys: keys, format: 'binary', config: pgpConfig(),
    });
    if (encrypted instanceof Uint8Array) {
      (ui || pageUi).encrypted(item, item.size);
    }
    return encrypted;
  }

  // File.stream() yields 64 KiB pieces; OpenPGP.js does a round trip to WebCrypto for each
  // piece it gets. On the page's thread they are regrouped into CHUNK_BYTES ones (1 MiB
  // ones ran as fast as 64 KiB ones in Chromium, about 0.87 times as fast in Firefox, but
  // the page's memory rose less); in the worker the reverse held (see CHUNK_BYTES). Also
  // counts what was read, for the progress bar, and stops on Cancel.
  //
  // And it holds the file back: OpenPGP.js reads its input as fast as it can, whatever
  // reads its output, so over a slow circuit the whole file would be encrypted into the
  // page's memory ahead of the upload. When the item is sent in pieces (item.ahead set),
  // no more than item.ahead bytes are let in beyond the ciphertext sendItem has taken.
  function countedChunks(item, current) {
    let read = 0;
    let buffer = new Uint8Array(CHUNK_BYTES);
    let filled = 0;
    return new TransformStream({
      transform: async function (chunk, controller) {
        while (item.ahead && read - item.taken > item.ahead && !current.cancelled) {
          await new Promise(function (resolve) {
            item.wake = resolve;
            current.wakeReader = resolve; // Cancel wakes it too
          });
        }
        if (current.cancelled) {
          throw new Cancelled();
        }
        read += chunk.byteLength;
        (ui || pageUi).encrypted(item, read);
        if (filled === 0 && chunk.byteLength >= CHUNK_BYTES) {
          controller.enqueue(chunk); // large enough as it is (the worker's): no copy
          return;
        }
        let offset = 0;
        while (offset < chunk.byteLength) {
          const take = Math.min(CHUNK_BYTES - filled, chunk.byteLength - offset);
          buffer.set(chunk.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          if (filled === CHUNK_BYTES) {
            controller.enqueue(buffer);
            buffer = new Uint8Array(CHUNK_BYTES);
            filled = 0;
          }
        }
      },
      flush: function (controller) {
        if (filled) {
          controller.enqueue(buffer.subarray(0, filled));
        }
      },
    });
  }

  // --- where the ciphertext waits for the upload ------------------------------------
  //
  // One multipart request needs the whole ciphertext first (browsers cannot stream a
  // request body over HTTP/1.1). Chromium caps Blobs held in memory at a few hundred MiB,
  // so a large submission is spooled into this site's private storage (the Origin Private
  // File System), written as it is encrypted and read back by the upload; it is deleted
  // afterwards. Ciphertext only, ever. Smaller ones stay in memory as Blobs.

  async function openSpool(large) {
    const usable = navigator.storage && typeof navigator.storage.getDirectory === 'function' &&
      typeof FileSystemFileHandle !== 'undefined' &&
      typeof FileSystemFileHandle.prototype.createWritable === 'function';
    if (large && usable) {
      try {
        const root = await navigator.storage.getDirectory();
        await sweepSpools(root);
        const random = crypto.getRandomValues(new Uint8Array(8));
        const name = SPOOL_PREFIX + Array.from(random, function (b) {
          return b.toString(16).padStart(2, '0');
        }).join('');
        const folder = await root.getDirectoryHandle(name, { create: true });
        return diskSpool(root, name, folder);
      } catch (error) {
        // No usable private storage (an old browser, a private window without it).
      }
    }
    return memorySpool();
  }

  async function sweepSpools(root) {
    // Leftovers of an attempt that a closed tab or a crash interrupted.
    for await (const name of root.keys()) {
      if (name.startsWith(SPOOL_PREFIX)) {
        await root.removeEntry(name, { recursive: true }).catch(function () {});
      }
    }
  }

  function diskSpool(root, name, folder) {
    let count = 0;
    return {
      onDisk: true,
      store: async function (stream, current) {
        count += 1;
        const handle = await folder.getFileHandle('item-' + count, { create: true });
        const writable = await handle.createWritable();
        await drain(stream, current, function (chunk) { return writable.write(chunk); })
          .catch(function (error) {
            writable.abort().catch(function () {});
            throw error;
          });
        await writable.close();
        return handle.getFile();
      },
      discard: function () {
        return root.removeEntry(name, { recursive: true }).catch(function () {});
      },
    };
  }

  // In memory, the ciphertext becomes a Blob every few MiB, so the page itself never
  // holds a whole file's ciphertext (the browser keeps Blob data outside the page).
  function memorySpool() {
    return {
      onDisk: false,
      store: async function (stream, current) {
        const pieces = [];
        let chunks = [];
        let pending = 0;
        await drain(stream, current, function (chunk) {
          chunks.push(chunk);
          pending += chunk.byteLength;
          if (pending >= ROLL_UP_BYTES) {
            pieces.push(new Blob(chunks));
            chunks = [];
            pending = 0;
          }
        });
        pieces.push(new Blob(chunks));
        return new Blob(pieces, { type: 'application/octet-stream' });
      },
      discard: function () { return Promise.resolve(); },
    };
  }

  async function drain(stream, current, sink) {
    const reader = stream.getReader();
    current.reader = reader;
    try {
      for (;;) {
        if (current.cancelled) {
          throw new Cancelled();
        }
        const next = await reader.read();
        if (next.done) {
          return;
        }
        await sink(next.value);
      }
    } catch (error) {
      reader.cancel().catch(function () {});
      throw error;
    } finally {
      current.reader = null;
    }
  }

  // The same rules as tipbox.intake.draft.safe_filename on the server path: no directory
  // parts, no control, format or bidi characters, at most 255 UTF-8 bytes.
  function safeFilename(raw, index) {
    let name = raw.replace(/\\/g, '/').split('/').pop();
    name = name.replace(/[\p{C}\u2028\u2029]/gu, '');
    name = name.trim().replace(/^\.+|\.+$/g, '').trim();
    if (!name) {
      return 'file-' + index;
    }
    const encoder = new TextEncoder();
    if (encoder.encode(name).length <= MAX_FILENAME_BYTES) {
      return name;
    }
    const dot = name.lastIndexOf('.');
    const ext = name.slice(dot + 1);
    const keepExt = dot > 0 && ext.length > 0 && encoder.encode(ext).length <= 16;
    let stem = keepExt ? name.slice(0, dot) : name;
    const suffix = keepExt ? '.' + ext : '';
    const budget = MAX_FILENAME_BYTES - encoder.encode(suffix).length;
    while (encoder.encode(stem).length > budget) {
      stem = Array.from(stem).slice(0, -1).join('');
    }
    return stem + suffix;
  }

  // --- upload -----------------------------------------------------------------------

  function upload(items, emptyFiles, current, failure) {
    return new Promise(function (resolve, reject) {
      if (current.cancelled) {
        reject(new Cancelled());
        return;
      }
      // The CSRF token first: the server checks it before reading anything else.
      const body = new FormData();
      body.append('csrf_token', form.elements.csrf_token.value);
      body.append('fingerprints', config.keys.map(function (k) { return k.fingerprint; }).join(' '));
      body.append('empty_files', String(emptyFiles));
      items.forEach(function (item) {
        // A neutral part name: the real file name travels only inside the ciphertext.
        const name = item.field === 'message' ? 'message.pgp' : 'file-' + item.index + '.pgp';
        body.append(item.field, item.blob, name);
      });
      const cipherTotal = items.reduce(function (sum, item) { return sum + item.blob.size; }, 0);
      const xhr = new XMLHttpRequest();
      current.xhr = xhr;
      // Its own route (config.uploadUrl): the form's action is the plain route, which
      // the server encrypts on arrival.
      xhr.open('POST', config.uploadUrl);
      xhr.setRequestHeader('Accept', 'application/json');
      if (current.proof) {
        xhr.setRequestHeader('Tipbox-Proof', current.proof);
      }
      xhr.upload.onprogress = function (event) {
        if (!event.lengthComputable || !event.total) {
          return;
        }
        let sent = event.loaded * cipherTotal / event.total;
        items.forEach(function (item) {
          const part = Math.max(0, Math.min(item.blob.size, sent));
          item.row.upload.value = item.blob.size ? part / item.blob.size : 1;
          sent -= item.blob.size;
        });
        updateTotal();
      };
      xhr.onload = function () {
        resolve({ status: xhr.status, url: xhr.responseURL, text: xhr.responseText,
                  type: xhr.getResponseHeader('Content-Type') || '' });
      };
      xhr.onerror = function () { reject(new Refused(failure, {})); };
      xhr.ontimeout = xhr.onerror;
      xhr.onabort = function () { reject(new Cancelled()); };
      xhr.send(body);
    });
  }

  // The confirmation page's address, or a Refused error saying what went wrong.
  function outcome(answer) {
    let reply = null;
    if (answer.type.indexOf('application/json') === 0) {
      try {
        reply = JSON.parse(answer.text);
      } catch (error) {
        reply = null;
      }
    }
    if (answer.status === 200 && reply && typeof reply.next === 'string') {
      return reply.next;
    }
    if (reply && typeof reply.error === 'string') {
      throw new Refused(reply.error, { reload: Boolean(reply.reload) });
    }
    if (new URL(answer.url || config.uploadUrl, window.location.href).pathname
      .endsWith('/login')) {
      // The session had ended: the server redirected the upload to the login page.
      throw new Refused(T.sessionEnded, { reload: true, plain: false });
    }
    throw new Refused(T.serverFailed + ' (HTTP ' + answer.status + ')', {});
  }

  // --- uploads that resume ----------------------------------------------------------
  //
  // Each item is encrypted as a stream and its ciphertext sent in pieces of
  // config.pieces' size as it is produced, each piece its own request
  // (tipbox/intake/pieces.py). The page holds the piece being filled and nothing more:
  // while a piece is sent, reading the encryption's output waits, and so does the
  // encryption. When a request fails (a broken circuit, a restarted server, a laptop that
  // slept) the page waits, asks the server how many bytes it holds, and carries on from
  // there, for as long as the page is open and the session lives. A piece is let go only
  // once the server holds it, so nothing is encrypted twice.

  const RATE_WINDOW_MS = 10000; // the rate shown is the last ten seconds'

  async function sendInPieces(items, emptyFiles, current) {
    const link = pieceLink(current);
    current.pieces = link;
    const started = await startUpload(link, emptyFiles, current);
    link.upload = started.upload;
    const meter = ui.meter(items);
    for (let index = 0; index < items.length; index++) {
      items[index].ahead = AHEAD_BYTES;
      items[index].taken = 0;
      const output = await encryptedOutput(items[index], current);
      const stream = output instanceof Uint8Array ? new ReadableStream({
        start: function (controller) { controller.enqueue(output); controller.close(); },
      }) : output;
      await sendItem(link, index, items[index], stream, started.pieceBytes, meter, current);
    }
    const done = await link.call('POST', link.path('/finish'), '', 'application/json');
    link.upload = null; // the newsroom's now: nothing left to cancel
    return done.next;
  }

  // The request that starts an upload carries the flood defence's proof, which the server
  // spends. If its answer was lost (a broken circuit), the retry's proof is already spent;
  // and a page left open long enough holds an expired one. Either way the server says a
  // fresh proof may do, and pow.js fetches a ticket and works it out (a few tries at most).
  async function startUpload(link, emptyFiles, current) {
    const body = JSON.stringify({
      fingerprints: config.keys.map(function (k) { return k.fingerprint; }),
      emptyFiles: emptyFiles,
    });
    for (let fresh = 0; ; fresh++) {
      try {
        return await link.call('POST', config.pieces.url, body, 'application/json');
      } catch (error) {
        if (!(error instanceof Refused) || !error.options.freshProof || fresh >= 2 ||
            !ui.canProve()) {
          throw error;
        }
        try {
          current.proof = await ui.freshProof();
        } catch (ignored) {
          // The fresh ticket did not come (the circuit broke again): the refusal above
          // says what to do (reload, let the check finish, send again); a failed fetch
          // would only say that something went wrong.
          throw error;
        }
      }
    }
  }

  // The next piece is encrypted while the current one is on its way: two buffers, one
  // being sent (kept until the server holds it, as a retry sends it again), the other
  // filled meanwhile. Pieces still go one request at a time, in order, as the server
  // takes them; the page holds two pieces at most.
  async function sendItem(link, index, item, stream, pieceBytes, meter, current) {
    const buffers = [new Uint8Array(pieceBytes), new Uint8Array(pieceBytes)];
    let filling = 0;
    let filled = 0;
    let offset = 0;
    let sending = null; // the piece on its way: a promise of the offset after it
    try {
      await drain(stream, current, async function (chunk) {
        taken(item, chunk.byteLength);
        let pos = 0;
        while (pos < chunk.byteLength) {
          if (filled === pieceBytes) { // full, and more follows: not the item's last
            if (sending) {
              await sending; // its buffer is the one filled next
            }
            sending = sendPiece(link, index, item, offset, buffers[filling], false, meter,
                                current);
            sending.catch(function () {}); // awaited above or below; not unhandled meanwhile
            offset += pieceBytes;
            filling = 1 - filling;
            filled = 0;
          }
          const take = Math.min(pieceBytes - filled, chunk.byteLength - pos);
          buffers[filling].set(chunk.subarray(pos, pos + take), filled);
          filled += take;
          pos += take;
        }
      });
      if (sending) {
        await sending;
      }
    } catch (error) {
      taken(item, 0); // a held-back read wakes and sees the cancel
      if (link.xhr) {
        link.xhr.abort(); // a piece still on its way
      }
      throw error;
    }
    await sendPiece(link, index, item, offset, buffers[filling].subarray(0, filled), true, meter,
                    current);
  }

  function taken(item, bytes) {
    item.taken += bytes;
    if (item.wake) {
      const wake = item.wake;
      item.wake = null;
      wake();
    }
  }

  // Sends one piece until the server holds it; the offset after it.
  async function sendPiece(link, index, item, offset, bytes, last, meter, current) {
    const end = offset + bytes.byteLength;
    const url = link.path('/items/' + index) + '?offset=' + offset + '&kind=' +
      (item.field === 'message' ? 'message' : 'file') + (last ? '&last=1' : '');
    for (let attempt = 0; ; attempt++) {
      let answer = null;
      try {
        answer = await link.send('PUT', url, bytes, 'application/octet-stream',
                                 function (loaded) { meter.update(item, offset + loaded); });
      } catch (error) {
        if (error instanceof Cancelled || current.cancelled) {
          throw new Cancelled();
        }
      }
      if (answer && answer.status === 200) {
        meter.update(item, end, last);
        ui.reconnected();
        return end;
      }
      if (answer && answer.status !== 409) {
        refuseUnlessPassing(answer);
      }
      // The link broke, or the server is busy with an earlier try, or holds other bytes
      // than this piece expects: wait, then ask how far it got.
      meter.update(item, offset);
      await link.pause(attempt);
      const status = await link.call('GET', link.path(''), null, null);
      const held = status.items[index] || { held: 0, complete: false };
      if (held.complete || held.held >= end) {
        meter.update(item, end, last);
        return end; // it arrived; only the answer was lost
      }
      if (held.held !== offset) {
        // The server lost bytes this page no longer holds: it cannot go on.
        throw new Refused(T.serverFailed, {});
      }
    }
  }

  // Requests of one upload, each retried after a broken link or a passing failure.
  function pieceLink(current) {
    const link = {
      upload: null,
      xhr: null,
      wake: null,
      path: function (suffix) { return config.pieces.url + '/' + link.upload + suffix; },
      send: function (method, url, body, type, onProgress) {
        return new Promise(function (resolve, reject) {
          if (current.cancelled) {
            reject(new Cancelled());
            return;
          }
          const xhr = new XMLHttpRequest();
          link.xhr = xhr;
          xhr.open(method, url);
          xhr.setRequestHeader('Accept', 'application/json');
          xhr.setRequestHeader('X-CSRFToken', ui.csrfToken());
          if (current.proof && method === 'POST' && url === config.pieces.url) {
            xhr.setRequestHeader('Tipbox-Proof', current.proof);
          }
          if (type) {
            xhr.setRequestHeader('Content-Type', type);
          }
          if (onProgress) {
            xhr.upload.onprogress = function (event) { onProgress(event.loaded); };
          }
          xhr.onload = function () {
            link.xhr = null;
            let reply = null;
            try {
              reply = JSON.parse(xhr.responseText);
            } catch (error) {
              reply = null;
            }
            resolve({ status: xhr.status, body: reply });
          };
          xhr.onerror = function () { link.xhr = null; reject(new Error('link')); };
          xhr.ontimeout = xhr.onerror;
          xhr.onabort = function () { link.xhr = null; reject(new Cancelled()); };
          xhr.send(body);
        });
      },
      // A request that must get through: its JSON answer.
      call: async function (method, url, body, type) {
        for (let attempt = 0; ; attempt++) {
          let answer = null;
          try {
            answer = await link.send(method, url, body, type, null);
          } catch (error) {
            if (error instanceof Cancelled || current.cancelled) {
              throw new Cancelled();
            }
          }
          if (answer && answer.status === 200 && answer.body) {
            ui.reconnected();
            return answer.body;
          }
          if (answer) {
            refuseUnlessPassing(answer);
          }
          await link.pause(attempt);
        }
      },
      pause: function (attempt) {
        ui.reconnecting();
        const seconds = RETRY_SECONDS[Math.min(attempt, RETRY_SECONDS.length - 1)];
        return new Promise(function (resolve, reject) {
          const timer = setTimeout(function () { link.wake = null; resolve(); },
                                   seconds * 1000);
          link.wake = function () { clearTimeout(timer); reject(new Cancelled()); };
        });
      },
      cancel: function () {
        if (link.wake) {
          link.wake();
        }
        if (link.xhr) {
          link.xhr.abort();
        }
      },
      // After a failure or a cancel: the server removes what it held (best effort; it
      // also goes when the session ends or the upload stays idle). `then`, if given, is
      // called once the request is over, or at once when there is none.
      stop: function (then) {
        const over = then || function () {};
        if (!link.upload) {
          over();
          return;
        }
        const xhr = new XMLHttpRequest();
        xhr.open('POST', link.path('/cancel'));
        xhr.timeout = 30000;
        xhr.setRequestHeader('Accept', 'application/json');
        xhr.setRequestHeader('X-CSRFToken', ui.csrfToken());
        xhr.onloadend = over;
        xhr.send('');
        link.upload = null;
      },
    };
    return link;
  }

  // --- the upload in pieces, from a dedicated worker --------------------------------
  //
  // Run on the page's own thread, the encryption's buffers stay in the page's heap long
  // after use: Firefox's page rose by about 600 MiB for a 1 GiB file, in a worker by about
  // 200 (docs/benchmarks.md). So the worker (this same file, see workerMain) reads the
  // files, encrypts and sends the pieces; the page keeps only the panel, which the worker's
  // messages move, and answers when the worker asks for a fresh proof of work. A browser
  // without workers, or one whose worker would not start, sends from the page as before.

  const pageUi = {
    meter: function (items) { return progressMeter(items); },
    encrypted: function (item, bytes) {
      item.row.encrypt.value = bytes;
      updateTotal();
    },
    reconnecting: function () { setStatus(T.reconnecting, false); },
    reconnected: function () {
      if (statusLine && statusLine.textContent === T.reconnecting) {
        setStatus('', false);
      }
    },
    canProve: function () { return Boolean(window.tipboxProof); },
    freshProof: function () { return window.tipboxProof(); },
    csrfToken: function () { return form.elements.csrf_token.value; },
  };

  // The worker's address as `new Worker` takes it; null (send from the page) when this
  // browser has no workers or its policy cannot be made.
  function trustedWorkerUrl(url) {
    if (!url || typeof Worker === 'undefined') {
      return null;
    }
    try {
      return workerScriptUrl(url);
    } catch (error) {
      return null;
    }
  }

  function workerScriptUrl(url) {
    if (window.trustedTypes && window.trustedTypes.createPolicy) {
      // The page's CSP names this policy; it makes exactly the worker's address a script
      // URL, and nothing else.
      const policy = window.trustedTypes.createPolicy('tipbox-encrypt', {
        createScriptURL: function (value) {
          if (value !== url) {
            throw new TypeError('tipbox-encrypt makes only the worker\'s URL');
          }
          return value;
        },
      });
      return policy.createScriptURL(url);
    }
    return url;
  }

  function sendFromPage(items, emptyFiles, current) {
    ui = pageUi;
    panel.dataset.sentBy = 'page';
    return sendInPieces(items, emptyFiles, current);
  }

  function sendInWorker(items, emptyFiles, current) {
    let worker = null;
    try {
      worker = new Worker(workerUrl);
    } catch (error) {
      return sendFromPage(items, emptyFiles, current);
    }
    return new Promise(function (resolve, reject) {
      let started = false;
      let meter = null;
      current.worker = worker;
      worker.onmessage = function (event) {
        const m = event.data;
        if (m.type === 'ready') {
          started = true;
          panel.dataset.sentBy = 'worker';
        } else if (m.type === 'begin') {
          meter = progressMeter(items);
        } else if (m.type === 'encrypted') {
          pageUi.encrypted(items[m.position], m.bytes);
        } else if (m.type === 'sent') {
          meter.update(items[m.position], m.bytes, m.complete);
        } else if (m.type === 'reconnecting') {
          pageUi.reconnecting();
        } else if (m.type === 'reconnected') {
          pageUi.reconnected();
        } else if (m.type === 'proof') {
          // A null proof is an answer too: the site has gone quiet and asks for none.
          const answer = pageUi.canProve() ? pageUi.freshProof() : Promise.reject(new Error());
          answer.then(function (proof) {
            worker.postMessage({ type: 'proof', ok: true, proof: proof });
          }, function () { worker.postMessage({ type: 'proof', ok: false }); });
        } else if (m.type === 'done') {
          current.worker = null;
          worker.terminate();
          resolve(m.next);
        } else if (m.type === 'failed') {
          // Not terminated: the worker still tells the server to drop what it held, then
          // closes itself.
          current.worker = null;
          reject(m.kind === 'cancelled' ? new Cancelled()
            : m.kind === 'refused' ? new Refused(m.message, m.options) : new Error(m.message));
        }
      };
      worker.onerror = function (event) {
        event.preventDefault();
        worker.terminate();
        current.worker = null;
        if (started || current.cancelled) {
          reject(current.cancelled ? new Cancelled() : new Error('the worker stopped'));
          return;
        }
        // It never started (its script could not load): send from the page instead.
        sendFromPage(items, emptyFiles, current).then(resolve, reject);
      };
      worker.postMessage({
        type: 'start', config: config, emptyFiles: emptyFiles, proof: current.proof,
        csrfToken: pageUi.csrfToken(), canProve: pageUi.canProve(),
        items: items.map(function (item) {
          return { field: item.field, label: item.label, text: item.text, file: item.file,
                   size: item.size, index: item.index, position: item.position };
        }),
      });
    });
  }

  // Throws the refusal the source reads, unless trying again may do (the server busy or
  // briefly away).
  function refuseUnlessPassing(answer) {
    const reply = answer.body || {};
    if (answer.status === 401) {
      throw new Refused(T.sessionEnded, { reload: true, plain: false });
    }
    if (reply.freshProof) {
      throw new Refused(reply.error, { reload: false, freshProof: true });
    }
    // 409 without "reload": busy with an earlier try of the same piece, or holding other
    // bytes than it expects (sendPiece then asks how far it got).
    if ((answer.status === 409 && !reply.reload) ||
        (answer.status >= 500 && answer.status !== 507)) {
      return;
    }
    throw new Refused(typeof reply.error === 'string' ? reply.error
      : T.serverFailed + ' (HTTP ' + answer.status + ')', { reload: Boolean(reply.reload) });
  }

  // Bytes sent and the total, the rate over the last seconds, the time left. The total
  // is the files' size: the ciphertext is larger by a few hundred bytes per item.
  function progressMeter(items) {
    const total = Math.max(1, items.reduce(function (sum, item) { return sum + item.size; }, 0));
    const samples = [];
    const line = rateLine;
    items.forEach(function (item) { item.sent = 0; });
    return {
      update: function (item, sent, complete) {
        item.sent = sent;
        item.row.upload.value = complete ? 1 : Math.min(1, sent / Math.max(item.size, 1));
        updateTotal();
        const now = performance.now();
        const all = items.reduce(function (sum, each) { return sum + each.sent; }, 0);
        samples.push([now, all]);
        while (samples.length > 2 && now - samples[1][0] > RATE_WINDOW_MS) {
          samples.shift();
        }
        const seconds = (now - samples[0][0]) / 1000;
        const rate = seconds >= 1 ? (all - samples[0][1]) / seconds : 0;
        const shown = Math.min(all, total);
        let text = T.progress.replace('%(sent)s', size(shown)).replace('%(total)s', size(total));
        if (rate > 0) {
          text = T.progressRate.replace('%(sent)s', size(shown)).replace('%(total)s', size(total))
            .replace('%(rate)s', size(rate)).replace('%(left)s', duration((total - shown) / rate));
        }
        line.textContent = text;
      },
    };
  }

  function size(bytes) {
    const units = [['GiB', 1073741824], ['MiB', 1048576], ['KiB', 1024]];
    for (const [unit, factor] of units) {
      if (bytes >= factor) {
        return (bytes / factor).toFixed(1) + '\u00a0' + unit;
      }
    }
    return Math.round(bytes) + '\u00a0B';
  }

  function duration(seconds) {
    const whole = Math.max(0, Math.ceil(seconds));
    const h = Math.floor(whole / 3600);
    const m = Math.floor(whole / 60) % 60;
    const s = String(whole % 60).padStart(2, '0');
    return h ? h + ':' + String(m).padStart(2, '0') + ':' + s : m + ':' + s;
  }

  // --- the progress panel -----------------------------------------------------------

  let rows = [];
  let totalBar = null;
  let rateLine = null;
  let statusLine = null;
  let buttonBox = null;

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, attributes[name]);
    });
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function showPanel(items) {
    panel.replaceChildren();
    panel.hidden = false;
    panel.appendChild(element('h3', {}, T.heading));
    const table = element('table', { class: 'progress' });
    const head = element('tr');
    head.append(element('th', { scope: 'col' }, ''), element('th', { scope: 'col' }, T.encrypt),
                element('th', { scope: 'col' }, T.upload));
    table.appendChild(head);
    rows = items.map(function (item) {
      const tr = element('tr');
      const encrypt = element('progress', { max: String(Math.max(item.size, 1)), value: '0',
                                            'aria-label': T.encrypt + ': ' + item.label });
      const upload = element('progress', { max: '1', value: '0',
                                           'aria-label': T.upload + ': ' + item.label });
      const name = element('td', { class: 'item-name' }, item.label);
      const cellA = element('td');
      const cellB = element('td');
      cellA.appendChild(encrypt);
      cellB.appendChild(upload);
      tr.append(name, cellA, cellB);
      table.appendChild(tr);
      item.row = { encrypt: encrypt, upload: upload };
      return item.row;
    });
    if (items.length) {
      panel.appendChild(table);
      const total = element('p', { class: 'total' });
      totalBar = element('progress', { max: '1', value: '0', 'aria-label': T.total });
      total.append(element('span', {}, T.total + ' '), totalBar);
      panel.appendChild(total);
    } else {
      totalBar = null;
    }
    // The rate and status lines are there, empty, from the start, and keep one line's
    // height (tipbox.css): text appearing in them must not move the Cancel button below
    // while the source reaches for it.
    rateLine = element('p', { class: 'rate', id: 'encrypt-rate' });
    panel.appendChild(rateLine);
    statusLine = element('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    panel.appendChild(statusLine);
    buttonBox = element('p', { class: 'actions' });
    panel.appendChild(buttonBox);
    panelButtons(items.length ? [[T.cancel, 'encrypt-cancel', 'secondary', cancel]] : []);
  }

  function updateTotal() {
    if (!totalBar || !rows.length) {
      return;
    }
    let sum = 0;
    rows.forEach(function (row) {
      sum += row.encrypt.value / row.encrypt.max + row.upload.value / row.upload.max;
    });
    totalBar.value = sum / (2 * rows.length);
  }

  function setStatus(text, isError) {
    if (!statusLine) {
      return;
    }
    statusLine.textContent = text;
    statusLine.className = isError ? 'status field-error' : 'status';
    statusLine.setAttribute('role', isError ? 'alert' : 'status');
  }

  function panelButtons(buttons) {
    buttonBox.replaceChildren();
    buttons.forEach(function (spec) {
      const button = element('button', { type: 'button', id: spec[1],
                                         class: 'button' + (spec[2] ? ' ' + spec[2] : '') },
                             spec[0]);
      button.addEventListener('click', spec[3]);
      buttonBox.appendChild(button);
    });
  }

  function fail(text, options) {
    setBusy(false);
    setStatus(text, true);
    const buttons = [];
    if (options.reload) {
      buttons.push([T.reload, 'encrypt-reload', '', function () { window.location.reload(); }]);
    } else if (options.retry !== false) {
      buttons.push([T.retry, 'encrypt-retry', '', run]);
    }
    if (options.plain !== false) {
      buttons.push([T.plain, 'encrypt-plain', 'secondary', sendPlain]);
    }
    panelButtons(buttons);
    if (options.plain !== false) {
      buttonBox.appendChild(element('span', { class: 'hint' }, T.plainHint));
    }
  }

  function cancel() {
    if (job) {
      stopJob(job);
    }
  }

  // Only on the source's explicit request, after in-browser encryption failed: the form
  // posts as it does with JavaScript off, and the server encrypts on arrival.
  function sendPlain() {
    setBusy(false);
    form.submit();
  }

  function setBusy(value) {
    busy = value;
    Array.from(form.elements).forEach(function (control) {
      if (control.name !== 'csrf_token') {
        control.disabled = value;
      }
    });
  }

  // --- in the worker --------------------------------------------------------------
  //
  // `new Worker(config.worker)` loads this file again, in a worker: no document there, so
  // it comes here. OpenPGP.js comes from our origin beside it (the worker's own CSP,
  // tipbox/web/browser_encryption.py, allows that and connections to this origin only).
  // One submission per worker: the page makes a new one for each attempt.
  function workerMain() {
    let bundle = 'vendor/openpgp.min.js';
    if (self.trustedTypes && self.trustedTypes.createPolicy) {
      bundle = self.trustedTypes.createPolicy('tipbox-openpgp', {
        createScriptURL: function (value) {
          if (value !== 'vendor/openpgp.min.js') {
            throw new TypeError('tipbox-openpgp makes only OpenPGP.js\'s URL');
          }
          return value;
        },
      }).createScriptURL(bundle);
    }
    importScripts(bundle);
    let current = null;
    let proofAnswer = null;
    let start = null;
    const post = function (message) { self.postMessage(message); };
    ui = {
      meter: function () {
        post({ type: 'begin' });
        return {
          update: function (item, bytes, complete) {
            post({ type: 'sent', position: item.position, bytes: bytes,
                   complete: Boolean(complete) });
          },
        };
      },
      // At most one message per MiB read and the last: each is garbage in the page's heap.
      encrypted: function (item, bytes) {
        if (bytes - (item.shown || 0) >= 1024 * 1024 || bytes >= item.size) {
          item.shown = bytes;
          post({ type: 'encrypted', position: item.position, bytes: bytes });
        }
      },
      reconnecting: function () { post({ type: 'reconnecting' }); },
      reconnected: function () { post({ type: 'reconnected' }); },
      canProve: function () { return start.canProve; },
      freshProof: function () {
        if (current.cancelled) {
          return Promise.reject(new Cancelled());
        }
        return new Promise(function (resolve, reject) {
          proofAnswer = function (answer) {
            proofAnswer = null;
            if (answer.ok) {
              resolve(answer.proof);
            } else {
              reject(new Error('no fresh proof'));
            }
          };
          post({ type: 'proof' });
        });
      },
      csrfToken: function () { return start.csrfToken; },
    };
    self.onmessage = async function (event) {
      const m = event.data;
      if (m.type === 'cancel') {
        if (current) {
          stopJob(current);
        }
        if (proofAnswer) {
          proofAnswer({ ok: false }); // the page stops working it out: the start gives up
        }
        return;
      }
      if (m.type === 'proof') {
        if (proofAnswer) {
          proofAnswer(m);
        }
        return;
      }
      if (m.type !== 'start' || current) {
        return;
      }
      start = m;
      config = m.config;
      T = config.text;
      current = { cancelled: false, reader: null, xhr: null, spool: null, pieces: null,
                  proof: m.proof };
      try {
        keys = await readKeys();
        const next = await sendInPieces(m.items, m.emptyFiles, current);
        post({ type: 'done', next: next });
      } catch (error) {
        if (current.cancelled || error instanceof Cancelled) {
          post({ type: 'failed', kind: 'cancelled' });
        } else if (error instanceof Refused) {
          post({ type: 'failed', kind: 'refused', message: error.message,
                 options: error.options });
        } else {
          post({ type: 'failed', kind: 'error', message: String(error) });
        }
      } finally {
        if (current.pieces) {
          current.pieces.stop(function () { self.close(); });
        } else {
          self.close();
        }
      }
    };
    post({ type: 'ready' });
  }
}());
