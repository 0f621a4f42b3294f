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
 * in-browser encryption" after a failure; files are read as streams, never whole, and
 * their ciphertext waits for the upload in Blobs or, when large, in the site's private
 * storage (see openSpool).
 */
'use strict';

(function () {
  const form = document.getElementById('submit-form');
  const configElement = document.getElementById('encrypt-config');
  const panel = document.getElementById('encrypt-panel');
  if (!form || !configElement || !panel || typeof openpgp === 'undefined' ||
      typeof ReadableStream === 'undefined' || typeof TransformStream === 'undefined' ||
      typeof Blob.prototype.stream !== 'function' || !window.crypto || !window.crypto.subtle) {
    return; // The plain form stays as it is.
  }

  const config = JSON.parse(configElement.textContent);
  const T = config.text;
  const CHUNK_BYTES = 1024 * 1024; // plaintext is handed to OpenPGP.js in pieces this big
  const ROLL_UP_BYTES = 8 * 1024 * 1024; // ciphertext is handed to a Blob in pieces this big
  const SPOOL_PREFIX = 'tipbox-upload-'; // folders of spooled ciphertext in private storage
  const MAX_FILENAME_BYTES = 255; // an OpenPGP literal data packet's limit
  // SEIPDv1 (integrity protected with MDC) and AES-256: what GnuPG 2.2 and sq both read.
  const PGP_CONFIG = {
    aeadProtect: false,
    preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
    preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed,
  };

  let busy = false;
  let job = null;
  let keys = null;

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

  class Cancelled extends Error {}

  class Refused extends Error {
    constructor(message, options) {
      super(message);
      this.options = options || {};
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
    const current = { cancelled: false, reader: null, xhr: null, spool: null };
    let next = null; // the confirmation page, once the server has kept everything
    job = current;
    setBusy(true);
    showPanel(items);
    try {
      keys = keys || await readKeys();
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
      // The flood defence's proof (static/pow.js), when the site asks for one.
      current.proof = window.tipboxProof ? await window.tipboxProof() : null;
      const answer = await upload(items, chosen.length - files.length, current,
                                  strained ? T.memoryFailed : T.networkFailed);
      next = outcome(answer);
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
    }
    if (next) {
      setBusy(false);
      setStatus(T.done, false);
      panelButtons([]);
      window.location.assign(next);
    }
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
      message: message, encryptionKeys: keys, format: 'binary', config: PGP_CONFIG,
    });
    if (encrypted instanceof Uint8Array) {
      item.row.encrypt.value = item.size;
      updateTotal();
      return new Blob([encrypted], { type: 'application/octet-stream' });
    }
    return current.spool.store(encrypted, current);
  }

  // File.stream() yields 64 KiB pieces; OpenPGP.js does a round trip to WebCrypto for each
  // piece it gets, so they are regrouped into 1 MiB ones (fewer round trips: about 10%
  // faster in Chromium). Also counts what was read, for the progress bar, and stops on
  // Cancel.
  function countedChunks(item, current) {
    let read = 0;
    let buffer = new Uint8Array(CHUNK_BYTES);
    let filled = 0;
    return new TransformStream({
      transform: function (chunk, controller) {
        if (current.cancelled) {
          throw new Cancelled();
        }
        read += chunk.byteLength;
        item.row.encrypt.value = read;
        updateTotal();
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

  // --- the progress panel -----------------------------------------------------------

  let rows = [];
  let totalBar = null;
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
    if (!job) {
      return;
    }
    job.cancelled = true;
    if (job.reader) {
      job.reader.cancel().catch(function () {});
    }
    if (job.xhr) {
      job.xhr.abort();
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
}());
