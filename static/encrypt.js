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
 * ciphertext is sent in pieces as it is made, from a dedicated worker
 * (static/encrypt-worker.js, see sendInWorker), or, for a server without the piece routes,
 * waits for one upload in Blobs or, when large, in the site's private storage (see
 * openSpool). What the page and the worker share (the keys, the encryption, the upload in
 * pieces) is static/encrypt-core.js, loaded before this file.
 *
 * This file: the form and its checks, the progress panel, the worker, and the upload in
 * one request.
 */
'use strict';

(function () {
  const ROLL_UP_BYTES = 8 * 1024 * 1024; // ciphertext is handed to a Blob in pieces this big
  const SPOOL_PREFIX = 'tipbox-upload-'; // folders of spooled ciphertext in private storage

  const form = document.getElementById('submit-form');
  const configElement = document.getElementById('encrypt-config');
  const panel = document.getElementById('encrypt-panel');
  // Taken once: what the core defined, not whatever the name may hold later.
  const shared = self.tipboxEncrypt;
  if (!form || !configElement || !panel || typeof openpgp === 'undefined' ||
      !shared || typeof shared.encryptor !== 'function' ||
      typeof ReadableStream === 'undefined' || typeof TransformStream === 'undefined' ||
      typeof Blob.prototype.stream !== 'function' || !window.crypto || !window.crypto.subtle) {
    return; // The plain form stays as it is.
  }

  const config = JSON.parse(configElement.textContent);
  const T = config.text;
  const { Cancelled, Refused, stopJob, drain } = shared;
  let core = null; // encrypt-core.js's functions for this page, made at the first Submit
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
      core = core || shared.encryptor(config, pageUi);
      await core.loadKeys();
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

  // --- encryption, for the upload in one request ----------------------------------

  async function encryptItem(item, current) {
    const encrypted = await core.encryptedOutput(item, current);
    if (encrypted instanceof Uint8Array) {
      return new Blob([encrypted], { type: 'application/octet-stream' });
    }
    return current.spool.store(encrypted, current);
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

  // --- the upload in pieces, from a dedicated worker --------------------------------
  //
  // The worker (static/encrypt-worker.js, which says why) reads the files, encrypts and
  // sends the pieces; the page keeps only the panel, which the worker's messages move, and
  // answers when the worker asks for a fresh proof of work. A browser without workers, or
  // one whose worker would not start, sends from the page with the same core, through
  // pageUi: the same reports, made in the page.

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
    panel.dataset.sentBy = 'page';
    return core.sendInPieces(items, emptyFiles, current);
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

  const RATE_WINDOW_MS = 10000; // the rate shown is the last ten seconds'

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
}());
