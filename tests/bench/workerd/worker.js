// worker.js: the counter of examples/counter/counter.c as a SQLite-backed
// Durable Object on workerd, the reference point of tests/bench/run.sh.
//
//   POST /counter/<name>   adds 1 to the object idFromName(<name>), 200 {"value":N}
//   GET  /counter/<name>   200 {"value":N} (0 until the first POST)
//
// Anything else: 404 (other paths) or 405 (other methods). The object writes
// through this.ctx.storage.sql; workerd's output gate holds the response until
// the implicit transaction of the request has been committed to the object's
// SQLite file (config.capnp: durableObjectStorage = (localDisk = ...)).
import { DurableObject } from "cloudflare:workers";

const CREATE =
  "CREATE TABLE IF NOT EXISTS counter(" +
  "id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)";
const INCREMENT =
  "INSERT INTO counter(id,value) VALUES(1,1) " +
  "ON CONFLICT(id) DO UPDATE SET value=value+1 RETURNING value";
const READ = "SELECT value FROM counter WHERE id = 1";

export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(CREATE);
  }

  async fetch(request) {
    if (request.method === "POST") {
      const { value } = this.sql.exec(INCREMENT).one();
      return Response.json({ value });
    }
    const rows = this.sql.exec(READ).toArray();
    return Response.json({ value: rows.length > 0 ? rows[0].value : 0 });
  }
}

export default {
  async fetch(request, env) {
    const m = /^\/counter\/([^/]+)\/?$/.exec(new URL(request.url).pathname);
    if (m === null) {
      return Response.json({ error: "no such path" }, { status: 404 });
    }
    if (request.method !== "POST" && request.method !== "GET") {
      return Response.json({ error: "method not allowed" }, { status: 405 });
    }
    const name = decodeURIComponent(m[1]);
    return env.COUNTER.get(env.COUNTER.idFromName(name)).fetch(request);
  },
};
