#!/usr/bin/env node
// Calls the ratelimit module from Node.js with node-redis (npm install redis;
// package.json pins the version the tests run: `npm ci` in this folder).
//
//   node examples/node/client.js [redis://127.0.0.1:6379] [2|3]
//
// The second argument picks the protocol: RESP3 (node-redis 5+'s default with
// `RESP: 3`, and 6's default) or RESP2. The module answers an array of five
// integers under RESP2 and a map of the same five named fields under RESP3;
// parse() takes either.
// Shows a token bucket being drained, and how to honour retry_after_ms.
'use strict';

const { createClient } = require('redis');

const FIELDS = ['allowed', 'limit', 'remaining', 'retry_after_ms', 'reset_after_ms'];

// RESP2: an array of five integers. RESP3: a map, which node-redis gives as
// a plain object (or a Map with a `typeMapping`).
function parse(reply) {
  let values;
  if (Array.isArray(reply)) {
    values = reply;
  } else if (reply instanceof Map) {
    values = FIELDS.map((f) => reply.get(f));
  } else if (reply !== null && typeof reply === 'object') {
    values = FIELDS.map((f) => reply[f]);
  } else {
    throw new Error(`unexpected reply: ${JSON.stringify(reply)}`);
  }
  const d = Object.fromEntries(FIELDS.map((f, i) => [f, Number(values[i])]));
  for (const f of FIELDS) {
    if (!Number.isInteger(d[f])) {
      throw new Error(`field ${f} is not an integer in ${JSON.stringify(reply)}`);
    }
  }
  d.allowed = d.allowed === 1;
  return d;
}

// One line: "allowed=true limit=5 remaining=4 retry_after_ms=0 reset_after_ms=500".
const show = (d) => FIELDS.map((f) => `${f}=${d[f]}`).join(' ');

async function tokenBucket(client, key, capacity, rate, cost = 1) {
  const reply = await client.sendCommand([
    'RL.TOKENBUCKET', key, String(capacity), String(rate), String(cost),
  ]);
  return parse(reply);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const url = process.argv[2] || 'redis://127.0.0.1:6379';
  const resp = Number(process.argv[3] || 3);
  if (resp !== 2 && resp !== 3) {
    throw new Error(`protocol must be 2 or 3, not ${process.argv[3]}`);
  }
  const client = createClient({ url, RESP: resp });
  client.on('error', (err) => console.error('redis error:', err.message));
  await client.connect();
  const key = 'example:node:user:1';
  await client.del([key, 'example:node:fw', 'example:node:sw']);
  for (let i = 1; i <= 7; i += 1) {
    const d = await tokenBucket(client, key, 5, 2);
    console.log(`call ${i}: ${show(d)}`);
    if (!d.allowed) {
      if (d.retry_after_ms < 0) {
        console.log('  can never succeed: the cost exceeds the capacity');
        break;
      }
      // The module rounds up, so waiting this long is enough; Node's timers
      // may fire up to a millisecond early, hence the + 1.
      console.log(`  denied; waiting ${d.retry_after_ms} ms`);
      await sleep(d.retry_after_ms + 1);
      console.log(`  retry: ${show(await tokenBucket(client, key, 5, 2))}`);
    }
  }
  const fw = await client.sendCommand(['RL.FIXEDWINDOW', 'example:node:fw', '3', '60', '1']);
  console.log(`fixed window: ${show(parse(fw))}`);
  const sw = await client.sendCommand(['RL.SLIDING', 'example:node:sw', '3', '60', '1', 'APPROX']);
  console.log(`sliding (approx): ${show(parse(sw))}`);
  await client.quit();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
