/* tipbox: the dedicated worker that sends an upload in pieces (static/encrypt.js makes it
 * with `new Worker(config.worker)`).
 *
 * Run on the page's own thread, the encryption's buffers stay in the page's heap long after
 * use: Firefox's page rose by about 600 MiB for a 1 GiB file, in a worker by about 200
 * (docs/benchmarks.md). So this worker reads the files, encrypts them and sends the pieces
 * (static/encrypt-core.js); the page keeps the panel, which this worker's messages move, and
 * answers when it asks for a fresh proof of work. One submission per worker: the page makes
 * a new one for each attempt.
 *
 * Messages from the page: start {config, items (with their Files), emptyFiles, proof,
 * csrfToken, canProve}, cancel, and proof {ok, proof}. To the page: ready, begin,
 * encrypted, sent, reconnecting, reconnected, proof, done {next} and failed {kind,
 * message, options}.
 */
'use strict';

(function () {
  // OpenPGP.js and the core come from our origin beside this file: the worker's own CSP
  // (its script's response header, WORKER_CSP in tipbox/web/browser_encryption.py) allows
  // scripts and connections to this origin only, and script URLs made by this one policy.
  const SCRIPTS = ['vendor/openpgp.min.js', 'encrypt-core.js'];
  let urls = SCRIPTS;
  if (self.trustedTypes && self.trustedTypes.createPolicy) {
    const policy = self.trustedTypes.createPolicy('tipbox-worker', {
      createScriptURL: function (value) {
        if (SCRIPTS.indexOf(value) < 0) {
          throw new TypeError('tipbox-worker makes only OpenPGP.js\'s and the core\'s URLs');
        }
        return value;
      },
    });
    urls = SCRIPTS.map(function (url) { return policy.createScriptURL(url); });
  }
  importScripts.apply(self, urls);
  const { Cancelled, Refused, stopJob } = self.tipboxEncrypt;

  let current = null;
  let proofAnswer = null;
  let start = null;
  const post = function (message) { self.postMessage(message); };
  const ui = {
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
    current = { cancelled: false, reader: null, xhr: null, spool: null, pieces: null,
                proof: m.proof };
    try {
      const core = self.tipboxEncrypt.encryptor(m.config, ui);
      await core.loadKeys();
      const next = await core.sendInPieces(m.items, m.emptyFiles, current);
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
}());
