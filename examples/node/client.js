#!/usr/bin/env node
// Calls the ratelimit module from Node.js with node-redis (npm install redis).
//
//   node examples/node/client.js [redis://127.0.0.1:6379]
//
// Shows a token bucket being drained, and how to honour retry_after_ms.
'use strict';

const { createClient } = require('redis');

const FIELDS = ['allowed', 'limit', 'remaining', 'retry_after_ms', 'reset_after_ms'];

// RESP2 reply: an array of five integers.
function parse(reply) {
  const d = Object.fromEntries(FIELDS.map((f, i) => [f, Number(reply[i])]));
  d.allowed = d.allowed === 1;
  return d;
}

async function tokenBucket(client, key, capacity, rate, cost = 1) {
  const reply = await client.sendCommand([
    'RL.TOKENBUCKET', key, String(capacity), String(rate), String(cost),
  ]);
  return parse(reply);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const url = process.argv[2] || 'redis://127.0.0.1:6379';
  const client = createClient({ url });
  client.on('error', (err) => console.error('redis error:', err.message));
  await client.connect();
  const key = 'example:node:user:1';
  await client.del(key);
  for (let i = 1; i <= 7; i += 1) {
    const d = await tokenBucket(client, key, 5, 2);
    console.log(`call ${i}:`, d);
    if (!d.allowed) {
      if (d.retry_after_ms < 0) {
        console.log('  can never succeed: the cost exceeds the capacity');
        break;
      }
      // The module rounds up, so waiting exactly this long is enough.
      console.log(`  denied; waiting ${d.retry_after_ms} ms`);
      await sleep(d.retry_after_ms);
      console.log('  retry:', await tokenBucket(client, key, 5, 2));
    }
  }
  const fw = await client.sendCommand(['RL.FIXEDWINDOW', 'example:node:fw', '3', '60', '1']);
  console.log('fixed window:', parse(fw));
  await client.quit();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
