// Alert delivery receiver for bench/run-alerts.sh: an HTTP webhook receiver and an SMTP server
// (smtp-server: no auth, no TLS), both on loopback, that record every delivery's arrival time
// and the times carried by the notification, and report the latency distribution.
//
//   node receiver.mjs [--host 127.0.0.1] [--http-port 18181] [--smtp-port 18125]
//                     [--out results.json] [--status 204]
//
// What is recorded, per delivery:
//   arrival   performance.timeOrigin + performance.now() (sub-ms wall clock) when the webhook
//             body is complete / when the mail's DATA has ended (just before we answer 250,
//             i.e. "SMTP accepted"); Date.now() is kept too.
//   webhook   data.event.createdAt (the event's creation time in rtad) and the body's
//             "timestamp" (the trigger time), both ISO-8601 with ms; webhook-id header.
//   email     the text body (quoted-printable decoded) of rtad's templates has
//             "Time: <trigger time, ISO-8601 ms>" and "Event: <event id>"; Message-ID header.
// Latencies: arrival - trigger time, and for webhooks also arrival - event time. rtad's times
// are whole milliseconds (truncated), so every figure may read up to 1 ms high.
//
// Control (HTTP, same port): GET /_stats -> the report as JSON; GET /_counts -> counts only;
// POST /_reset -> forget everything recorded so far. Any other request is taken as a webhook
// and answered --status (default 204). SIGINT/SIGTERM: print the report (text, then one JSON
// line), write --out if given, exit.
import http from 'node:http';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { SMTPServer } from 'smtp-server';

function parseArgs(argv) {
    const o = { host: '127.0.0.1', httpPort: 18181, smtpPort: 18125, out: '', status: 204 };
    for (let i = 2; i < argv.length; i++) {
        const a = argv[i], v = argv[i + 1];
        if (a === '--host') { o.host = v; i++; }
        else if (a === '--http-port') { o.httpPort = Number(v); i++; }
        else if (a === '--smtp-port') { o.smtpPort = Number(v); i++; }
        else if (a === '--out') { o.out = v; i++; }
        else if (a === '--status') { o.status = Number(v); i++; }
        else if (a === '-h' || a === '--help') {
            console.log('node receiver.mjs [--host H] [--http-port P] [--smtp-port P] [--out F] [--status N]');
            process.exit(0);
        } else { console.error(`unknown argument: ${a}`); process.exit(2); }
    }
    if (!['127.0.0.1', '::1', 'localhost'].includes(o.host)) {
        console.error('receiver: loopback only'); process.exit(2);
    }
    return o;
}

const opts = parseArgs(process.argv);
const nowHi = () => performance.timeOrigin + performance.now();

let rec; // recordings
function reset() {
    rec = {
        startedAt: Date.now(),
        webhook: { n: 0, ids: new Set(), dup: 0, bad: 0, types: {}, fromEvent: [], fromTrigger: [], first: 0, last: 0 },
        email: { n: 0, ids: new Set(), dup: 0, bad: 0, types: {}, fromEvent: [], fromTrigger: [], first: 0, last: 0,
                 eventIds: [] },
        smtpErrors: 0,
    };
}
reset();

function note(ch, arrival, id, kind, eventMs, triggerMs) {
    const c = rec[ch];
    c.n++;
    if (!c.first) c.first = arrival;
    c.last = arrival;
    if (id) {
        if (c.ids.has(id)) c.dup++;
        else c.ids.add(id);
    }
    c.types[kind] = (c.types[kind] || 0) + 1;
    if (Number.isFinite(eventMs)) c.fromEvent.push(arrival - eventMs);
    if (Number.isFinite(triggerMs)) c.fromTrigger.push(arrival - triggerMs);
    if (!Number.isFinite(triggerMs) && !Number.isFinite(eventMs)) c.bad++;
}

// ---------- webhooks ----------

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
        const arrival = nowHi();
        if (req.method === 'GET' && req.url === '/_stats') {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(report()));
            return;
        }
        if (req.method === 'GET' && req.url === '/_counts') {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ webhook: rec.webhook.n, email: rec.email.n }));
            return;
        }
        if (req.method === 'POST' && req.url === '/_reset') {
            reset();
            res.writeHead(204);
            res.end();
            return;
        }
        let body = null;
        try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { body = null; }
        const ev = body?.data?.event;
        const eventMs = ev?.createdAt ? Date.parse(ev.createdAt) : NaN;
        const triggerMs = body?.timestamp ? Date.parse(body.timestamp) : NaN;
        const id = req.headers['webhook-id'] || body?.data?.deliveryId || '';
        note('webhook', arrival, id, body?.type || 'unparsed', eventMs, triggerMs);
        res.writeHead(opts.status);
        res.end();
    });
});
server.keepAliveTimeout = 65000;

// ---------- SMTP ----------

function qpDecode(s) {
    return s.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

function parseMail(raw) {
    const sep = raw.indexOf('\r\n\r\n') >= 0 ? '\r\n\r\n' : '\n\n';
    const cut = raw.indexOf(sep);
    const head = cut >= 0 ? raw.slice(0, cut) : raw;
    let text = cut >= 0 ? raw.slice(cut + sep.length) : '';
    const unfolded = head.replace(/\r?\n[ \t]+/g, ' ');
    const header = (name) => {
        const m = unfolded.match(new RegExp(`^${name}:\\s*(.*)$`, 'im'));
        return m ? m[1].trim() : '';
    };
    if (/quoted-printable/i.test(header('Content-Transfer-Encoding'))) text = qpDecode(text);
    else if (/base64/i.test(header('Content-Transfer-Encoding'))) text = Buffer.from(text, 'base64').toString('utf8');
    const time = text.match(/^Time:\s*(\S+)/m);
    const event = text.match(/^Event:\s*(\S+)/m);
    const state = text.match(/ is (firing|resolved)\./);
    return {
        messageId: header('Message-ID'),
        triggerMs: time ? Date.parse(time[1]) : NaN,
        eventId: event ? event[1] : '',
        kind: state ? `alert.${state[1]}` : 'unparsed',
    };
}

const smtp = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    banner: 'rta alert bench receiver',
    size: 1 << 20,
    maxClients: 1000,
    onData(stream, session, callback) {
        const chunks = [];
        stream.on('data', (d) => chunks.push(d));
        stream.on('end', () => {
            const arrival = nowHi();
            const m = parseMail(Buffer.concat(chunks).toString('utf8'));
            if (m.eventId) rec.email.eventIds.push(m.eventId);
            note('email', arrival, m.messageId, m.kind, NaN, m.triggerMs);
            callback(null, 'queued');
        });
        stream.on('error', (e) => callback(e));
    },
});
smtp.on('error', () => { rec.smtpErrors++; });

// ---------- report ----------

function stats(xs) {
    if (xs.length === 0) return null;
    const s = Float64Array.from(xs).sort();
    const at = (q) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
    let sum = 0;
    for (const x of s) sum += x;
    const r3 = (x) => Math.round(x * 1000) / 1000;
    return { n: s.length, min: r3(s[0]), p50: r3(at(0.5)), p95: r3(at(0.95)), p99: r3(at(0.99)),
             max: r3(s[s.length - 1]), mean: r3(sum / s.length) };
}

function report() {
    const ch = (c) => ({
        received: c.n,
        unique: c.ids.size,
        duplicates: c.dup,
        withoutTimes: c.bad,
        byType: c.types,
        spanSeconds: c.n > 1 ? Math.round(c.last - c.first) / 1000 : 0,
        latencyMsFromTrigger: stats(c.fromTrigger),
        latencyMsFromEvent: stats(c.fromEvent),
    });
    return {
        receiver: { clockSkewMs: Math.round((Date.now() - nowHi()) * 1000) / 1000, smtpErrors: rec.smtpErrors },
        webhook: ch(rec.webhook),
        email: ch(rec.email),
    };
}

function printReport(r) {
    const row = (name, c, key) => {
        const s = c[key];
        const f = (x) => (s ? x.toFixed(1) : '-').padStart(9);
        return `${name.padEnd(26)}${String(c.received).padStart(8)}${String(c.duplicates).padStart(6)}` +
            (s ? `${f(s.p50)}${f(s.p95)}${f(s.p99)}${f(s.max)}${f(s.mean)}` : '        -        -        -        -        -');
    };
    console.log(`${'latency (ms)'.padEnd(26)}${'count'.padStart(8)}${'dup'.padStart(6)}${'p50'.padStart(9)}` +
        `${'p95'.padStart(9)}${'p99'.padStart(9)}${'max'.padStart(9)}${'mean'.padStart(9)}`);
    console.log(row('webhook trigger->received', r.webhook, 'latencyMsFromTrigger'));
    console.log(row('webhook event->received', r.webhook, 'latencyMsFromEvent'));
    console.log(row('email trigger->accepted', r.email, 'latencyMsFromTrigger'));
    console.log(`webhook types ${JSON.stringify(r.webhook.byType)}, email types ${JSON.stringify(r.email.byType)}, ` +
        `without times: webhook ${r.webhook.withoutTimes}, email ${r.email.withoutTimes}, smtp errors ${r.receiver.smtpErrors}`);
}

let stopping = false;
function stop() {
    if (stopping) return;
    stopping = true;
    const r = report();
    printReport(r);
    console.log(JSON.stringify(r));
    if (opts.out) fs.writeFileSync(opts.out, JSON.stringify(r, null, 1));
    server.close();
    smtp.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

server.listen(opts.httpPort, opts.host, () => {
    smtp.listen(opts.smtpPort, opts.host, () => {
        console.error(`receiver: webhooks http://${opts.host}:${opts.httpPort}/, smtp ${opts.host}:${opts.smtpPort}`);
    });
});
