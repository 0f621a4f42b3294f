/* tipbox: the flood defence's check in the browser (tipbox/flood.py).
 *
 * When the site is flooded it hands out tickets; a browser redeems one either by waiting
 * (the wait page reloads itself, no script needed) or, here, by work done in a Web Worker
 * (static/pow-worker.js), usually sooner. Two pages use this file:
 *
 * - the wait page: work on its ticket, then go on at once to the next page with the answer;
 * - the submission page: window.tipboxProof() gives encrypt.js the value of the
 *   Tipbox-Proof header to send (the page's own ticket the first time, a fresh one worked
 *   out here for a later attempt), or null while the site is quiet.
 *
 * Rules kept here, as in encrypt.js: no inline script, no eval, no innerHTML. The one
 * Trusted Types policy below turns exactly the worker's address into a script URL.
 */
'use strict';

(function () {
  const configElement = document.getElementById('pow-config');
  if (!configElement || typeof Worker === 'undefined' || !window.crypto ||
      !window.crypto.subtle) {
    return; // The wait page reloads itself; the submission page sends without a proof.
  }
  const config = JSON.parse(configElement.textContent);
  const T = config.text;
  const workerUrl = trustedWorkerUrl(config.worker);

  function trustedWorkerUrl(url) {
    if (window.trustedTypes && window.trustedTypes.createPolicy) {
      const policy = window.trustedTypes.createPolicy('tipbox-pow', {
        createScriptURL: function (value) {
          if (value !== url) {
            throw new TypeError('tipbox-pow makes only the worker\'s URL');
          }
          return value;
        },
      });
      return policy.createScriptURL(url);
    }
    return url;
  }

  // Resolves with the answer for `ticket`; `progress` gets a number from 0 to 1 (the
  // chance the answer would have been found by now: the work has no fixed length).
  function work(ticket, bits, progress) {
    return new Promise(function (resolve, reject) {
      const worker = new Worker(workerUrl);
      const expected = Math.pow(2, bits);
      worker.onmessage = function (event) {
        if (typeof event.data.solution === 'string') {
          worker.terminate();
          progress(1);
          resolve(event.data.solution);
        } else if (event.data.failed) {
          worker.terminate();
          reject(new Error('the check failed'));
        } else {
          progress(1 - Math.exp(-event.data.tried / expected));
        }
      };
      worker.onerror = function () {
        worker.terminate();
        reject(new Error('the worker failed'));
      };
      worker.postMessage({ ticket: ticket, bits: bits });
    });
  }

  function show(status, text, isError) {
    if (!status) {
      return;
    }
    status.hidden = false;
    status.textContent = text;
    status.className = isError ? 'field-error' : 'hint';
  }

  // --- the wait page --------------------------------------------------------------

  if (config.next) {
    const panel = document.getElementById('pow-panel');
    const status = document.getElementById('pow-status');
    const bar = document.getElementById('pow-progress');
    panel.hidden = false;
    show(status, T.working, false);
    work(config.ticket, config.bits, function (value) { bar.value = value; })
      .then(function (solution) {
        show(status, T.done, false);
        const next = new URL(config.next, window.location.href);
        next.searchParams.set('s', solution);
        // replace: the back button should not lead to this wait again.
        window.location.replace(next.href);
      }, function () {
        show(status, T.failed, true); // the meta refresh still goes on after the wait
      });
    return;
  }

  // --- the submission page --------------------------------------------------------

  let calls = 0;
  window.tipboxProof = async function () {
    calls += 1;
    if (calls === 1) {
      return config.proof || null; // the page's own ticket; nothing while quiet
    }
    // A later attempt: the first one spent the page's ticket (or was refused for lack
    // of one), so ask for a fresh ticket; none while the site is quiet.
    const answer = await fetch(config.ticketUrl, {
      headers: { Accept: 'application/json' }, credentials: 'same-origin',
    });
    const fresh = await answer.json();
    if (!fresh.ticket) {
      return null;
    }
    const status = document.getElementById('pow-status');
    show(status, T.working, false);
    const solution = await work(fresh.ticket, fresh.bits, function () {});
    show(status, T.done, false);
    return fresh.ticket + ' ' + solution;
  };
}());
