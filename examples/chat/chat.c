/*
 * chat: one chat room per object, e.g. /chat/lobby, over WebSocket.
 *
 *   GET /chat/<room>             200 text/html: a self-contained chat page
 *                                (/chat/<room>/ serves it too)
 *   GET /chat/<room>/messages    200 JSON: the last 100 messages, oldest first:
 *                                [{"id":1,"ts":1700000000000,"nick":"ann","text":"hi"}]
 *   any other path               404 {"error":"no such path '<path>'"}
 *
 *   WebSocket upgrade on /chat/<room>?nick=<nickname>  (or /chat/<room>/?nick=...)
 *     nick is required: 1-32 bytes, no control characters; otherwise 400 and no
 *     upgrade. Any other path gives 404. All frames are JSON text:
 *
 *     server -> the new member, first:
 *       {"type":"history","messages":[<up to 100 messages as above, oldest first>]}
 *     server -> everyone else, on join and leave:
 *       {"type":"join","nick":"ann"}   {"type":"leave","nick":"ann"}
 *     client -> server: the message itself as plain text (not JSON), 1-4096 bytes
 *     server -> every member, sender included, for each message stored:
 *       {"type":"message","id":42,"ts":1700000000000,"nick":"ann","text":"hi"}
 *     server -> the sender only, for an empty or too long message:
 *       {"type":"error","error":"<why>"}
 *     A binary frame closes the socket with 1003.
 *
 * ts is milliseconds since the Unix epoch; id increases with every message.
 * The room keeps its newest 1000 messages.
 */
#include <dobj.h>

#include <inttypes.h>
#include <string.h>

#define MEMBER_TAG "member"
#define NICK_BYTES_MAX 32
#define TEXT_BYTES_MAX 4096
#define HISTORY_MAX 100
#define KEEP_MAX 1000

/* The page is the whole client: no external scripts, styles or fonts, so a
 * room works offline and the page needs no build step. */
static const char chat_page[] =
    "<!doctype html>\n"
    "<html lang='en'>\n"
    "<head>\n"
    "<meta charset='utf-8'>\n"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
    "<title>dobj chat</title>\n"
    "<link rel='icon' href='data:,'>\n"
    "<style>\n"
    "* { box-sizing: border-box; }\n"
    "body { margin: 0 auto; max-width: 42rem; height: 100vh; padding: 1rem; display: flex;\n"
    "       flex-direction: column; font: 15px/1.4 system-ui, sans-serif; color: #222; }\n"
    "h1 { margin: 0 0 .5rem; font-size: 1.2rem; }\n"
    "#log { flex: 1; overflow-y: auto; margin-bottom: .5rem; padding: .5rem;\n"
    "       border: 1px solid #ccc; border-radius: 4px; }\n"
    "#log div { margin: .15rem 0; white-space: pre-wrap; overflow-wrap: anywhere; }\n"
    ".time { color: #999; font-size: .8em; margin-right: .4rem; white-space: nowrap; }\n"
    ".nick { font-weight: 600; margin-right: .4rem; }\n"
    ".note { color: #777; font-style: italic; }\n"
    ".error { color: #b00020; }\n"
    "form { display: flex; gap: .5rem; }\n"
    "input { flex: 1; padding: .45rem; font: inherit; }\n"
    "button { padding: .45rem 1rem; font: inherit; }\n"
    "[hidden] { display: none !important; }\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1 id='title'>chat</h1>\n"
    "<div id='log'></div>\n"
    "<form id='join'>\n"
    "  <input id='nick' placeholder='nickname (1-32 bytes)' autocomplete='nickname'\n"
    "         required autofocus>\n"
    "  <button>Join</button>\n"
    "</form>\n"
    "<form id='send' hidden>\n"
    "  <input id='text' placeholder='message' autocomplete='off' required>\n"
    "  <button>Send</button>\n"
    "</form>\n"
    "<script>\n"
    "'use strict';\n"
    "const $ = (id) => document.getElementById(id);\n"
    "const log = $('log');\n"
    "const byteLength = (s) => new TextEncoder().encode(s).length;\n"
    "let ws = null;\n"
    "let nick = '';\n"
    "\n"
    "// The room is the object's name: the path segment after the class.\n"
    "const room = location.pathname.split('/')[2] || '';\n"
    "try {\n"
    "  $('title').textContent = 'chat: ' + decodeURIComponent(room);\n"
    "} catch (e) { /* keep the plain title */ }\n"
    "\n"
    "// User text only ever reaches the page through textContent, never innerHTML.\n"
    "function show(cls, parts) {\n"
    "  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;\n"
    "  const line = document.createElement('div');\n"
    "  line.className = cls;\n"
    "  for (const [c, text] of parts) {\n"
    "    const span = document.createElement('span');\n"
    "    span.className = c;\n"
    "    span.textContent = text;\n"
    "    line.append(span);\n"
    "  }\n"
    "  log.append(line);\n"
    "  if (atEnd) log.scrollTop = log.scrollHeight;\n"
    "}\n"
    "const note = (text) => show('note', [['', text]]);\n"
    "const error = (text) => show('error', [['', text]]);\n"
    "const time = (ts) => new Date(ts).toLocaleTimeString();\n"
    "const showMessage = (m) =>\n"
    "  show('msg', [['time', time(m.ts)], ['nick', m.nick], ['', m.text]]);\n"
    "\n"
    "function onEvent(ev) {\n"
    "  const e = JSON.parse(ev.data);\n"
    "  switch (e.type) {\n"
    "  case 'history':\n"
    "    log.replaceChildren();\n"
    "    e.messages.forEach(showMessage);\n"
    "    note('you joined as ' + nick);\n"
    "    break;\n"
    "  case 'message': showMessage(e); break;\n"
    "  case 'join': note(e.nick + ' joined'); break;\n"
    "  case 'leave': note(e.nick + ' left'); break;\n"
    "  case 'error': error(e.error); break;\n"
    "  }\n"
    "}\n"
    "\n"
    "function connect() {\n"
    "  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';\n"
    "  let opened = false;\n"
    "  ws = new WebSocket(scheme + '//' + location.host + location.pathname +\n"
    "                     '?nick=' + encodeURIComponent(nick));\n"
    "  ws.onopen = () => {\n"
    "    opened = true;\n"
    "    $('join').hidden = true;\n"
    "    $('send').hidden = false;\n"
    "    $('text').focus();\n"
    "  };\n"
    "  ws.onmessage = onEvent;\n"
    "  ws.onclose = (ev) => {\n"
    "    if (opened) note('disconnected' + (ev.reason ? ': ' + ev.reason : ''));\n"
    "    else error('could not join the room');\n"
    "    $('send').hidden = true;\n"
    "    $('join').hidden = false;\n"
    "    ws = null;\n"
    "  };\n"
    "}\n"
    "\n"
    "$('join').onsubmit = (ev) => {\n"
    "  ev.preventDefault();\n"
    "  if (ws) return;\n"
    "  nick = $('nick').value.trim();\n"
    "  if (nick === '' || byteLength(nick) > 32) {\n"
    "    error('a nickname is 1 to 32 bytes');\n"
    "    return;\n"
    "  }\n"
    "  connect();\n"
    "};\n"
    "\n"
    "$('send').onsubmit = (ev) => {\n"
    "  ev.preventDefault();\n"
    "  const text = $('text').value;\n"
    "  if (!ws || ws.readyState !== WebSocket.OPEN || text === '') return;\n"
    "  if (byteLength(text) > 4096) {\n"
    "    error('a message is at most 4096 bytes');\n"
    "    return;\n"
    "  }\n"
    "  ws.send(text);\n"
    "  $('text').value = '';\n"
    "};\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

/* The schema runs on every activation, so it must be idempotent. */
static int chat_activate(dobj_ctx *ctx)
{
    int rc = dobj_exec(ctx,
                       "CREATE TABLE IF NOT EXISTS messages("
                       "id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, "
                       "nick TEXT NOT NULL, text TEXT NOT NULL)",
                       NULL);
    if (rc != 0)
        return dobj_fail(ctx, "cannot create table messages: %s", dobj_errmsg(ctx));
    return 0;
}

static int is_root(const char *path)
{
    return strcmp(path, "") == 0 || strcmp(path, "/") == 0;
}

/* The newest `limit` messages, oldest first: the inner query picks them by the
 * primary key and the outer one puts them back in order. */
static int history_json(dobj_ctx *ctx, int64_t limit, const char **out)
{
    int rc = dobj_query_json(ctx, out,
                             "SELECT id, ts, nick, text FROM "
                             "(SELECT id, ts, nick, text FROM messages ORDER BY id DESC LIMIT ?1) "
                             "ORDER BY id",
                             "i", limit);
    if (rc != 0)
        return dobj_fail(ctx, "cannot read the messages: %s", dobj_errmsg(ctx));
    return 0;
}

/* ---------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------- */

static int page_send(dobj_ctx *ctx)
{
    int rc = dobj_res_status(ctx, 200);
    if (rc == 0)
        rc = dobj_res_header(ctx, "content-type", "text/html; charset=utf-8");
    if (rc == 0)
        rc = dobj_res_write(ctx, chat_page, sizeof chat_page - 1);
    if (rc != 0)
        return dobj_fail(ctx, "cannot send the page: %s", dobj_strerror(rc));
    return 0;
}

static int messages_send(dobj_ctx *ctx)
{
    const char *messages = NULL;
    int rc = history_json(ctx, HISTORY_MAX, &messages);
    if (rc != 0)
        return rc;
    rc = dobj_res_json(ctx, 200, "%s", messages);
    if (rc != 0)
        return dobj_fail(ctx, "cannot set the response: %s", dobj_strerror(rc));
    return 0;
}

static int not_found(dobj_ctx *ctx, const char *path)
{
    const char *msg = dobj_sprintf(ctx, "no such path '%s'", path);
    int rc = dobj_res_json(ctx, 404, "{\"error\":%s}", dobj_json_str(ctx, msg));
    if (rc != 0)
        return dobj_fail(ctx, "cannot set the response: %s", dobj_strerror(rc));
    return 0;
}

/* The class accepts only GET, so the method needs no check here. */
static int chat_fetch(dobj_ctx *ctx)
{
    const char *path = dobj_req_path(ctx);
    if (is_root(path))
        return page_send(ctx);
    if (strcmp(path, "/messages") == 0)
        return messages_send(ctx);
    return not_found(ctx, path);
}

/* ---------------------------------------------------------------------------
 * WebSocket
 * ------------------------------------------------------------------------- */

/* A socket that is already closing misses the message instead of failing the
 * event: failing would roll back a message that the other members should get. */
static int send_json(dobj_ctx *ctx, dobj_ws *ws, const char *json)
{
    int rc = dobj_ws_send(ctx, ws, DOBJ_WS_TEXT, json, strlen(json));
    if (rc != 0 && rc != DOBJ_ECLOSED)
        return dobj_fail(ctx, "cannot send to socket %" PRIu64 ": %s", dobj_ws_id(ws),
                         dobj_strerror(rc));
    return 0;
}

static int broadcast_json(dobj_ctx *ctx, dobj_ws *except, const char *json)
{
    int rc = dobj_ws_broadcast(ctx, MEMBER_TAG, except, DOBJ_WS_TEXT, json, strlen(json));
    if (rc < 0)
        return dobj_fail(ctx, "cannot broadcast: %s", dobj_strerror(rc));
    return 0;
}

static int send_error(dobj_ctx *ctx, dobj_ws *ws, const char *why)
{
    return send_json(ctx, ws, dobj_sprintf(ctx, "{\"type\":\"error\",\"error\":%s}",
                                           dobj_json_str(ctx, why)));
}

/* Tells the other members that `nick` joined or left (`type`). */
static int presence_broadcast(dobj_ctx *ctx, dobj_ws *except, const char *type, const char *nick)
{
    return broadcast_json(ctx, except, dobj_sprintf(ctx, "{\"type\":%s,\"nick\":%s}",
                                                    dobj_json_str(ctx, type),
                                                    dobj_json_str(ctx, nick)));
}

/*
 * A full history can pass the runtime's message size limit (100 messages of up
 * to 4096 bytes each, more once escaped). Rather than shut a member out of a
 * busy room, send fewer messages until they fit; an empty history always does.
 */
static int history_send(dobj_ctx *ctx, dobj_ws *ws)
{
    for (int64_t limit = HISTORY_MAX;; limit /= 2) {
        const char *messages = NULL;
        int rc = history_json(ctx, limit, &messages);
        if (rc != 0)
            return rc;
        const char *json = dobj_sprintf(ctx, "{\"type\":\"history\",\"messages\":%s}", messages);
        rc = dobj_ws_send(ctx, ws, DOBJ_WS_TEXT, json, strlen(json));
        if (rc == DOBJ_ELIMIT && limit > 0)
            continue;
        if (rc != 0)
            return dobj_fail(ctx, "cannot send the history: %s", dobj_strerror(rc));
        return 0;
    }
}

/* Returns why `nick` is not acceptable, or NULL. Control characters are
 * refused because they would only garble the other members' screens. */
static const char *nick_invalid(const char *nick)
{
    if (nick == NULL)
        return "query parameter 'nick' is required";
    size_t len = strlen(nick);
    if (len == 0 || len > NICK_BYTES_MAX)
        return "a nickname is 1 to 32 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)nick[i];
        if (c < 0x20 || c == 0x7f)
            return "a nickname may not contain control characters";
    }
    return NULL;
}

/* The nickname lives in the socket's attachment, not in handler memory: the
 * object may be evicted while its sockets stay open, and the attachment is
 * what survives. NULL for a socket that never joined. */
static const char *member_nick(dobj_ctx *ctx, dobj_ws *ws)
{
    size_t len = 0;
    return dobj_ws_attachment(ctx, ws, &len);
}

static int chat_ws_open(dobj_ctx *ctx, dobj_ws *ws)
{
    const char *path = dobj_req_path(ctx);
    if (!is_root(path))
        return dobj_fail_status(ctx, 404, "no such path '%s'", path);
    const char *nick = dobj_req_param(ctx, "nick");
    const char *why = nick_invalid(nick);
    if (why != NULL)
        return dobj_fail_status(ctx, 400, "%s", why);

    int rc = dobj_ws_set_attachment(ctx, ws, nick, strlen(nick));
    if (rc == 0)
        rc = dobj_ws_tag(ctx, ws, MEMBER_TAG);
    if (rc != 0)
        return dobj_fail(ctx, "cannot set up the socket: %s", dobj_strerror(rc));

    rc = history_send(ctx, ws);
    if (rc != 0)
        return rc;
    return presence_broadcast(ctx, ws, "join", nick);
}

/* Returns why `text` cannot be posted, or NULL. A NUL byte is refused because
 * the text is stored as a C string. */
static const char *text_invalid(const char *text, size_t len)
{
    if (len == 0)
        return "message is empty";
    if (len > TEXT_BYTES_MAX)
        return "message is longer than 4096 bytes";
    if (memchr(text, '\0', len) != NULL)
        return "message contains a NUL byte";
    return NULL;
}

/* Stores the message, trims the room to its newest KEEP_MAX messages (by id,
 * so the primary key does the work) and sends it to every member. */
static int message_post(dobj_ctx *ctx, const char *nick, const char *text)
{
    int64_t ts = dobj_now_us(ctx) / 1000;
    int64_t id = 0;
    int rc = dobj_query_int(ctx, &id,
                            "INSERT INTO messages(ts, nick, text) VALUES(?1, ?2, ?3) RETURNING id",
                            "itt", ts, nick, text);
    if (rc != 0)
        return dobj_fail(ctx, "cannot store the message: %s", dobj_errmsg(ctx));
    rc = dobj_exec(ctx,
                   "DELETE FROM messages WHERE id <= "
                   "(SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                   "i", (int64_t)KEEP_MAX);
    if (rc != 0)
        return dobj_fail(ctx, "cannot trim the history: %s", dobj_errmsg(ctx));

    const char *json = dobj_sprintf(ctx,
                                    "{\"type\":\"message\",\"id\":%" PRId64 ",\"ts\":%" PRId64
                                    ",\"nick\":%s,\"text\":%s}",
                                    id, ts, dobj_json_str(ctx, nick), dobj_json_str(ctx, text));
    return broadcast_json(ctx, NULL, json);
}

static int chat_ws_message(dobj_ctx *ctx, dobj_ws *ws, int kind, const void *data, size_t len)
{
    if (kind != DOBJ_WS_TEXT) {
        int rc = dobj_ws_close(ctx, ws, 1003, "binary messages are not supported");
        if (rc != 0 && rc != DOBJ_ECLOSED)
            return dobj_fail(ctx, "cannot close socket %" PRIu64 ": %s", dobj_ws_id(ws),
                             dobj_strerror(rc));
        return 0;
    }
    const char *why = text_invalid(data, len);
    if (why != NULL)
        return send_error(ctx, ws, why);
    const char *nick = member_nick(ctx, ws);
    if (nick == NULL)
        return dobj_fail(ctx, "socket %" PRIu64 " has no nickname", dobj_ws_id(ws));

    /* `data` is not NUL-terminated; binding it as text needs a copy that is. */
    char *text = dobj_alloc(ctx, len + 1);
    memcpy(text, data, len);
    text[len] = '\0';
    return message_post(ctx, nick, text);
}

/* The closing socket is left out of the broadcast: it can no longer be sent to. */
static int chat_ws_close(dobj_ctx *ctx, dobj_ws *ws, int code, const char *reason)
{
    (void)code;
    (void)reason;
    const char *nick = member_nick(ctx, ws);
    if (nick == NULL)
        return 0;
    return presence_broadcast(ctx, ws, "leave", nick);
}

static const dobj_class chat_class = {
    .abi_version = DOBJ_ABI_VERSION,
    .name = "chat",
    .methods = DOBJ_GET,
    .on_activate = chat_activate,
    .fetch = chat_fetch,
    .ws_open = chat_ws_open,
    .ws_message = chat_ws_message,
    .ws_close = chat_ws_close,
};

DOBJ_CLASS(chat_class)
