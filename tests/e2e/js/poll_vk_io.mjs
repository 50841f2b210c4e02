#!/usr/bin/env node
// Poll an `lprecord replay --tls` server with vk-io, unmodified, and print
// every update it receives as one JSON line on stdout:
//
//   {"update": [4, 1000001, 33, ...], "context": "message", "subTypes": [...]}
//
// `update` is the array as vk-io's PollingTransport received it, before
// vk-io parses it. `context` and `subTypes` are the `type` and `subTypes`
// of the context that vk-io's Updates dispatcher builds for it, or null
// when vk-io builds none (it skips codes it does not handle). When the
// dispatcher throws, `context` is null and `dispatchError` has the error.
//
// The script exits with status 0 after --count updates (default 40, the
// chat session's), and with status 1 after --timeout seconds (default 20)
// or on any error, with the reason on stderr. The token can be any string.
//
// Usage:
//   node poll_vk_io.mjs --api-url https://127.0.0.1:PORT/method [--ca ca.pem]
//                       [--count N] [--timeout SECONDS] [--token TOKEN]
// LPRECORD_API_URL and LPRECORD_CA can stand in for --api-url and --ca.
// Without a CA file the default trust store applies, to which Node adds the
// certificates in NODE_EXTRA_CA_CERTS.
//
// Every connection goes to 127.0.0.1 only: the API base URL must be there,
// and the agent rejects any other host, so that the long poll `server` that
// the API returns cannot send a request anywhere else either.

import { readFileSync } from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';

import { PollingTransport, VK } from 'vk-io';

const LOOPBACK = '127.0.0.1';

class LoopbackAgent extends https.Agent {
    createConnection(options, callback) {
        if (options.host !== LOOPBACK) {
            callback(new Error(`rejected a connection to ${options.host}: this script connects to ${LOOPBACK} only`));
            return undefined;
        }
        return super.createConnection(options, callback);
    }
}

function fail(message) {
    process.stderr.write(`poll_vk_io: ${message}\n`);
    process.exit(1);
}

function parseOptions() {
    const { values } = parseArgs({
        options: {
            'api-url': { type: 'string', default: process.env.LPRECORD_API_URL },
            ca: { type: 'string', default: process.env.LPRECORD_CA },
            count: { type: 'string', default: '40' },
            timeout: { type: 'string', default: '20' },
            token: { type: 'string', default: 'js-client-token' },
        },
    });

    if (!values['api-url']) {
        fail('missing --api-url (or LPRECORD_API_URL): pass the URL that lprecord replay prints');
    }
    let apiUrl;
    try {
        apiUrl = new URL(values['api-url']);
    } catch {
        fail(`invalid --api-url ${values['api-url']}: expected a URL such as https://127.0.0.1:PORT/method`);
    }
    if (apiUrl.protocol !== 'https:') {
        fail(`invalid --api-url ${apiUrl}: vk-io polls https://{server} only, so run lprecord replay with --tls`);
    }
    if (apiUrl.hostname !== LOOPBACK) {
        fail(`invalid --api-url ${apiUrl}: the host must be ${LOOPBACK}`);
    }

    const count = Number(values.count);
    const timeout = Number(values.timeout);
    if (!Number.isInteger(count) || count < 1) {
        fail(`invalid --count ${values.count}: expected a positive integer`);
    }
    if (!(timeout > 0)) {
        fail(`invalid --timeout ${values.timeout}: expected a positive number of seconds`);
    }

    // vk-io appends "/<method>" to the base URL itself.
    const apiBaseUrl = apiUrl.href.replace(/\/+$/, '');
    return { apiBaseUrl, ca: values.ca, count, timeout, token: values.token };
}

async function main() {
    const options = parseOptions();
    const agent = new LoopbackAgent({
        keepAlive: true,
        ...(options.ca === undefined ? {} : { ca: readFileSync(options.ca) }),
    });
    const vk = new VK({ token: options.token, apiBaseUrl: options.apiBaseUrl, agent });

    // The first middleware runs synchronously inside handlePollingUpdate, so
    // `dispatched` names the context of the update being handled.
    let dispatched = null;
    vk.updates.use((context, next) => {
        dispatched = context;
        return next();
    });

    let received = 0;
    const timer = setTimeout(() => {
        fail(`timed out after ${options.timeout} s with ${received} of ${options.count} updates`);
    }, options.timeout * 1000);

    // The same wiring as vk.updates.startPolling() for a user token, with a
    // transport of our own so that the raw array is printed before the
    // context constructors parse (and, for message events, modify) it.
    const transport = new PollingTransport({
        api: vk.api,
        agent,
        pollingWait: 3000,
        pollingRetryLimit: 3,
    });
    transport.subscribe((update) => {
        const line = { update: structuredClone(update), context: null, subTypes: null };
        dispatched = null;
        try {
            void vk.updates.handlePollingUpdate(update);
            if (dispatched !== null) {
                line.context = dispatched.type;
                line.subTypes = dispatched.subTypes;
            }
        } catch (error) {
            line.dispatchError = String(error);
        }
        process.stdout.write(`${JSON.stringify(line)}\n`);
        received += 1;
        if (received === options.count) {
            clearTimeout(timer);
            void transport.stop();
            process.exit(0);
        }
    });
    await transport.start();
}

main().catch((error) => fail(`polling failed: ${error?.stack ?? error}`));
