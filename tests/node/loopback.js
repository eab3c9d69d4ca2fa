// Preloaded into a Node program under test (`node -r ./loopback.js program.js`): keeps it on this
// machine. A server that listens without naming an address listens on 127.0.0.1 instead of every
// interface, and a connection to any address outside the loopback range is refused before it is
// made and noted, one JSON line per attempt, in the file named by BOTPROXY_OUTBOUND_LOG.
"use strict";

const fs = require("fs");
const net = require("net");

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/i;
const log = process.env.BOTPROXY_OUTBOUND_LOG;

function note(host, port) {
  if (log) fs.appendFileSync(log, JSON.stringify({ host, port, at: new Date().toISOString() }) + "\n");
}

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args.length === 1 || typeof args[1] === "function")) {
    args.splice(1, 0, "127.0.0.1");
  } else if (args[0] && typeof args[0] === "object" && args[0].port !== undefined && !args[0].host) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const normalized = net._normalizeArgs(args);
  const options = normalized[0] || {};
  if (options.path === undefined) {
    const host = options.host || "localhost";
    if (!LOOPBACK.test(host)) {
      note(host, options.port);
      process.nextTick(() => this.destroy(new Error(`loopback.js: refused a connection to ${host}:${options.port}`)));
      return this;
    }
  }
  return connect.apply(this, args);
};
