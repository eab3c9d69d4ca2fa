#!/usr/bin/env node
// A real Direct Line client for botproxy's tests: botframework-directlinejs in Node.
//
//   node dl_client.js '{"domain": "http://127.0.0.1:5080/v3/directline", "secret": "...",
//                       "webSocket": true, "user": "user1", "welcome": 1,
//                       "messages": [{"text": "hello", "replies": 1}], "timeoutMs": 30000}'
//
// It starts a conversation (`secret` or `token`), waits for `welcome` bot messages, then sends each
// message in turn and waits until the client has received its own activity back and `replies` bot
// messages after it. It prints one JSON object per line on stdout:
//   {"event": "status", "status": "Online"}
//   {"event": "activity", "activity": {...}, "watermark": "3"}   for every activity received
//   {"event": "posted", "text": "hello", "id": "<conv>|0000001"}
//   {"event": "done", "conversationId": "...", "watermark": "7"}  and exit code 0
//   {"event": "error", "message": "..."}                         and exit code 1

'use strict';

// directlinejs is written for browsers: rxjs's ajax needs XMLHttpRequest, and the stream needs a global
// WebSocket (Node 20 has neither; Node 22 has WebSocket). Both must be in place before it is loaded.
global.XMLHttpRequest = require('xhr2');
global.WebSocket = require('ws');

const { DirectLine, ConnectionStatus } = require('botframework-directlinejs');

const options = JSON.parse(process.argv[2] || '{}');
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function fail(message) {
  print({ event: 'error', message: String(message) });
  process.exit(1);
}

const deadline = setTimeout(() => fail(`timed out after ${options.timeoutMs || 30000} ms`), options.timeoutMs || 30000);

const directLine = new DirectLine({
  domain: options.domain,
  secret: options.secret,
  token: options.token,
  webSocket: options.webSocket !== false,
  pollingInterval: options.pollingIntervalMs || 200,
});
if (options.user) directLine.setUserId(options.user);

const received = [];
const seen = new Set();
let changed = () => {};

function waitFor(predicate) {
  return new Promise((resolve) => {
    const check = () => {
      if (predicate()) {
        changed = () => {};
        resolve();
      }
    };
    changed = check;
    check();
  });
}

const fromBot = (a) => a.from && a.from.id !== options.user && a.type === 'message';

directLine.connectionStatus$.subscribe((status) => {
  print({ event: 'status', status: ConnectionStatus[status] });
  if (status === ConnectionStatus.FailedToConnect) fail('failed to connect');
});

directLine.activity$.subscribe(
  (activity) => {
    if (seen.has(activity.id)) return; // the protocol allows duplicates across GET and stream
    seen.add(activity.id);
    received.push(activity);
    print({ event: 'activity', activity, watermark: directLine.watermark });
    changed();
  },
  (error) => fail(`activity$ failed: ${error && (error.message || error.status || error)}`),
);

function post(text) {
  return new Promise((resolve, reject) => {
    directLine
      .postActivity({ type: 'message', from: { id: options.user, name: options.userName }, text })
      .subscribe(
        (id) => (id === 'retry' ? reject(new Error(`post of ${text} failed: retry`)) : resolve(id)),
        (error) => reject(new Error(`post of ${text} failed: HTTP ${error && error.status}`)),
      );
  });
}

async function main() {
  await waitFor(() => received.filter(fromBot).length >= (options.welcome || 0));
  for (const message of options.messages || []) {
    const id = await post(message.text);
    print({ event: 'posted', text: message.text, id });
    const wanted = message.replies === undefined ? 1 : message.replies;
    // Python SDK bots never set replyToId on Direct Line (protocol.md S-2): a reply is a bot message
    // that comes after the user's own activity.
    await waitFor(() => {
      const echo = received.findIndex((a) => a.id === id);
      return echo >= 0 && received.slice(echo + 1).filter(fromBot).length >= wanted;
    });
  }
  print({ event: 'done', conversationId: directLine.conversationId, watermark: directLine.watermark });
  clearTimeout(deadline);
  directLine.end();
  process.exit(0);
}

main().catch((error) => fail(error.message || error));
