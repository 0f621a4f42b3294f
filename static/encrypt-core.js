/* tipbox: the in-browser encryption's core, shared by the submission page (static/encrypt.js)
 * and the dedicated worker that sends an upload in pieces (static/encrypt-worker.js).
 *
 * It runs nothing by itself. It defines self.tipboxEncrypt: the errors both sides tell
 * apart, Cancel, and encryptor(config, ui), which binds to one page's config (its
 * encrypt-config JSON) and to how that side reports and asks (ui: the page's panel, or the
 * worker's messages to the page): OpenPGP.js's settings and the newsroom keys, each item
 * encrypted as a stream, and the upload in pieces that resumes (tipbox/intake/pieces.py).
 *
 * Rules kept here, as in encrypt.js: no eval, no innerHTML; no plaintext is ever sent (of
 * an item, only OpenPGP.js's output leaves; besides it, only the fingerprints, the count of
 * empty files, and the CSRF token and proof in headers); files are read as streams, never
 * whole.
 */
'use strict';

(function () {
  // Plaintext is handed to OpenPGP.js in chunks this big. In the worker, 64 KiB (as
  // File.stream() gives them): Firefox's page process, where the worker lives, rose by
  // +270 to +277 MiB for a 1 GiB upload as built, against +449 to +470 with 1 MiB chunks,
  // for about a tenth of the speed. On the page's own thread 1 MiB, whose heap rose less
  // that way (docs/benchmarks.md).
  const CHUNK_BYTES = (typeof document === 'undefined' ? 64 : 1024) * 1024;
  // How far the encryption may read ahead of the ciphertext the upload has taken (see
  // countedChunks), so OpenPGP.js always has the next chunks.
  const AHEAD_BYTES = 2 * 1024 * 1024;
  const MAX_FILENAME_BYTES = 255; // an OpenPGP literal data packet's limit
  const RETRY_SECONDS = [1, 2, 4, 8, 15, 30]; // then every 30 s, for as long as it takes

  class Cancelled extends Error {}

  class Refused extends Error {
    constructor(message, options) {
      super(message);
      this.options = options || {};
    }
  }

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

  // One side's encryption and upload. ui has: meter(items), encrypted(item, bytes),
  // reconnecting(), reconnected(), canProve(), freshProof() and csrfToken().
  function encryptor(config, ui) {
    const T = config.text;
    let keys = null;

    // --- encryption -------------------------------------------------------------------

    // SEIPDv1 (integrity protected with MDC) and AES-256: what GnuPG 2.2 and sq both read.
    function pgpConfig() {
      return {
        aeadProtect: false,
        preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
        preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed,
      };
    }

    // The newsroom keys from the page's config, read once and kept.
    async function loadKeys() {
      keys = keys || await readKeys();
      return keys;
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
        ui.encrypted(item, item.size);
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
          ui.encrypted(item, read);
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


    // --- uploads that resume ----------------------------------------------------------
    //
    // Each item is encrypted as a stream and its ciphertext sent in pieces of
    // config.pieces' size as it is produced, each piece its own request
    // (tipbox/intake/pieces.py). It holds two pieces at most (see sendItem): the one on
    // its way and the one being filled; when both are taken, reading the encryption's
    // output waits, and so does the encryption. When a request fails (a broken circuit, a restarted server, a laptop that
    // slept) the page waits, asks the server how many bytes it holds, and carries on from
    // there, for as long as the page is open and the session lives. A piece is let go only
    // once the server holds it, so nothing is encrypted twice.

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

    return { loadKeys: loadKeys, encryptedOutput: encryptedOutput, sendInPieces: sendInPieces };
  }

  self.tipboxEncrypt = Object.freeze({
    Cancelled: Cancelled, Refused: Refused, stopJob: stopJob, drain: drain,
    encryptor: encryptor,
  });
}());
