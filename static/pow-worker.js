/* tipbox: the flood defence's work, in a Web Worker so the page stays responsive.
 *
 * Finds a number s such that SHA-256("<ticket>:<s>") starts with `bits` zero bits
 * (tipbox/flood.py checks it with one hash). The hash is the browser's own WebCrypto
 * (crypto.subtle.digest), never one written here. Digests are asked for in batches:
 * each is a promise, and many in flight at once keep WebCrypto busy.
 */
'use strict';

const BATCH = 512;

function leadingZeroBits(bytes) {
  let count = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === 0) {
      count += 8;
      continue;
    }
    return count + Math.clz32(byte) - 24;
  }
  return count;
}

async function solve(ticket, bits) {
  const encoder = new TextEncoder();
  const prefix = ticket + ':';
  let next = 0;
  for (;;) {
    const start = next;
    const digests = [];
    for (let i = 0; i < BATCH; i++) {
      digests.push(crypto.subtle.digest('SHA-256', encoder.encode(prefix + (start + i))));
    }
    const results = await Promise.all(digests);
    for (let i = 0; i < BATCH; i++) {
      if (leadingZeroBits(new Uint8Array(results[i])) >= bits) {
        return String(start + i);
      }
    }
    next = start + BATCH;
    self.postMessage({ tried: next });
  }
}

self.onmessage = function (event) {
  const ticket = String(event.data.ticket);
  const bits = Number(event.data.bits);
  solve(ticket, bits).then(function (solution) {
    self.postMessage({ solution: solution });
  }, function () {
    self.postMessage({ failed: true });
  });
};
