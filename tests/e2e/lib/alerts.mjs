// Helpers for the alerting e2e tests: real receivers on loopback (a node:http webhook receiver
// that checks Standard Webhooks signatures itself, an in-process SMTP server from the
// smtp-server package whose messages are parsed with mailparser), the environment that points
// rtad at them with fast retries, recent timestamps for ingest, and bounded polling of the
// delivery-tracking API. Every wait is bounded (T() stretches it for sanitizer builds).
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';
import { api, ingest, sleep } from './rtad.mjs';
import { Inbox, T } from './rt.mjs';

export { T };

/** rtad environment for alert tests; `extra` overrides. */
export function alertEnv(extra = {}) {
    return {
        RTA_WEBHOOKS_ALLOW_PRIVATE: 'true',
        RTA_ALERTS_RETRY_SCHEDULE: '0,1,1,1',
        RTA_ALERTS_LEASE_MS: '2000',
        RTA_ALERTS_POLL_MS: '50',
        RTA_TIERS_FREE_API_REQUESTS_PER_MINUTE: '100000',
        RTA_TIERS_PRO_API_REQUESTS_PER_MINUTE: '100000',
        RTA_TIERS_ENTERPRISE_API_REQUESTS_PER_MINUTE: '100000',
        ...extra,
    };
}

export const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// ------------------------------------------------------------------ timestamps

// Recent (so that 1 h windows see them) and strictly increasing: half an hour back, +1 s each.
let tsCursor = Math.floor(Date.now() / 1000) - 1800;
/** A strictly increasing recent Unix timestamp (seconds, in the past) for ingest items. */
export const recentTs = () => tsCursor++;

/** Ingests one TVL point (admin key) and asserts 200; returns the answer with `timestamp`. */
export async function tvl(h, protocol, chain, value, timestamp = recentTs()) {
    const r = await ingest(h, { tvl: [{ protocol, chain, tvl: value, timestamp }] });
    assert.equal(r.status, 200, `ingest: ${r.status} ${r.text}`);
    return { ...r.json, timestamp };
}

/** Ingests one price (admin key) and asserts 200. */
export async function price(h, token, value, timestamp = recentTs()) {
    const r = await ingest(h, { prices: [{ token, price: value, timestamp }] });
    assert.equal(r.status, 200, `ingest: ${r.status} ${r.text}`);
    return { ...r.json, timestamp };
}

// ------------------------------------------------------------------ API shortcuts

/** POST /v1/alerts/rules, asserts 201, returns the body. */
export async function createRule(h, key, body) {
    const r = await api(h, 'POST', '/v1/alerts/rules', { key, body });
    assert.equal(r.status, 201, `create rule: ${r.status} ${r.text}`);
    return r.json;
}

/** A rule body with one condition and the given actions (throttle 0 unless given). */
export function ruleBody(name, condition, actions, extra = {}) {
    return { name, throttleMinutes: 0, conditions: [condition], actions, ...extra };
}

/** GET /v1/alerts/deliveries?query, asserts 200, returns data[]. */
export async function listDeliveries(h, key, query = {}) {
    const qs = new URLSearchParams(query).toString();
    const r = await api(h, 'GET', `/v1/alerts/deliveries${qs ? `?${qs}` : ''}`, { key });
    assert.equal(r.status, 200, `deliveries: ${r.status} ${r.text}`);
    return r.json.data;
}

/** GET /v1/alerts/deliveries/{id}, asserts 200. */
export async function getDelivery(h, key, id) {
    const r = await api(h, 'GET', `/v1/alerts/deliveries/${id}`, { key });
    assert.equal(r.status, 200, `delivery ${id}: ${r.status} ${r.text}`);
    return r.json;
}

/** GET /v1/alerts/rules/{id}/history, asserts 200, returns the body. */
export async function history(h, key, ruleId, query = {}) {
    const qs = new URLSearchParams(query).toString();
    const r = await api(h, 'GET', `/v1/alerts/rules/${ruleId}/history${qs ? `?${qs}` : ''}`,
        { key });
    assert.equal(r.status, 200, `history: ${r.status} ${r.text}`);
    return r.json;
}

/** Polls fn() until it returns a truthy value; returns it. Rejects after ms with `what`. */
export async function until(fn, what, ms = T(10000), stepMs = 50) {
    const end = Date.now() + ms;
    let last;
    for (;;) {
        last = await fn();
        if (last) return last;
        if (Date.now() >= end) {
            throw new Error(`timed out after ${ms} ms waiting for ${what}`);
        }
        await sleep(stepMs);
    }
}

/** Waits until the rule's deliveries (filtered by channel) number at least n; returns them. */
export async function waitRuleDeliveries(h, key, ruleId, n, { channel, pred = () => true,
    ms = T(10000) } = {}) {
    let last = [];
    try {
        return await until(async () => {
            const q = { rule: ruleId };
            if (channel) q.channel = channel;
            last = (await listDeliveries(h, key, q)).filter(pred);
            return last.length >= n ? last : null;
        }, `${n} deliveries of rule ${ruleId}`, ms);
    } catch (e) {
        e.message += `; have ${JSON.stringify(last).slice(0, 1500)}`;
        throw e;
    }
}

/** Waits until the delivery's record satisfies pred (e.g. status delivered); returns it. */
export async function waitDelivery(h, key, id, pred, what = 'the delivery state',
    ms = T(10000)) {
    let last = null;
    try {
        return await until(async () => {
            last = await getDelivery(h, key, id);
            return pred(last) ? last : null;
        }, what, ms);
    } catch (e) {
        e.message += `; last record: ${JSON.stringify(last).slice(0, 2000)}`;
        throw e;
    }
}

export const isStatus = (s) => (d) => d.status === s;

/** Asserts the documented delivery record shape. */
export function checkDeliveryShape(d) {
    const s = JSON.stringify(d);
    for (const k of ['id', 'triggerId', 'ruleId', 'channel', 'target', 'status', 'attempts',
        'nextAttemptAt', 'createdAt', 'updatedAt', 'deliveredAt', 'lastStatusCode', 'lastError',
        'note']) {
        assert.ok(k in d, `delivery field ${k} missing: ${s}`);
    }
    assert.match(d.id, UUIDV7, s);
    assert.match(d.triggerId, UUIDV7, s);
    assert.match(d.createdAt, ISO_MS, s);
    assert.ok(Number.isInteger(d.attempts) && d.attempts >= 0, s);
    assert.ok(['email', 'webhook', 'push'].includes(d.channel), s);
    assert.ok(['pending', 'delivered', 'dead', 'suppressed', 'disabled'].includes(d.status), s);
}

// ------------------------------------------------------------------ webhook receiver

/** Verifies a Standard Webhooks signature; returns true/false. */
export function verifySignature(secret, id, timestamp, body, signatureHeader) {
    if (typeof secret !== 'string' || !secret.startsWith('whsec_')) return false;
    const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
    const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
    for (const part of String(signatureHeader || '').split(' ')) {
        const [ver, sig] = part.split(',');
        if (ver !== 'v1' || !sig) continue;
        const got = Buffer.from(sig, 'base64');
        if (got.length === expected.length && timingSafeEqual(got, expected)) return true;
    }
    return false;
}

/**
 * A webhook receiver on node:http. Options: host (a loopback address; default 127.0.0.1),
 * port (0). Behaviour per path is set with receiver.on(path, behaviour) where behaviour is
 * an array of answers consumed in order (the last one repeats) or a single answer; an answer
 * is a status number, {status, headers, body}, or 'hang' (never answered until release()).
 * Default: 200. Every request is recorded in receiver.inbox as {at, path, headers, id,
 * timestamp, signature, body (raw string), json, verified (null: no secret known), status}.
 */
export async function startWebhookReceiver({ host = '127.0.0.1', port = 0 } = {}) {
    const inbox = new Inbox(`webhook receiver ${host}`);
    const behaviours = new Map();
    const secrets = new Map();
    const counts = new Map();
    const held = new Set();
    const sockets = new Set();
    let server = null;

    function pick(path) {
        const b = behaviours.get(path);
        const n = counts.get(path) ?? 0;
        counts.set(path, n + 1);
        if (b === undefined) return 200;
        if (Array.isArray(b)) return b[Math.min(n, b.length - 1)];
        return b;
    }

    function handler(req, res) {
        const chunks = [];
        req.on('data', (d) => chunks.push(d));
        req.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            let json = null;
            try { json = JSON.parse(body); } catch { /* recorded as null */ }
            const path = req.url;
            const rec = {
                at: Date.now(), method: req.method, path, headers: req.headers,
                id: req.headers['webhook-id'], timestamp: req.headers['webhook-timestamp'],
                signature: req.headers['webhook-signature'], body, json, status: null,
                verified: null,
            };
            const secret = secrets.get(path);
            if (secret) {
                rec.verified = verifySignature(secret, rec.id, rec.timestamp, body,
                    rec.signature);
            }
            const a = pick(path);
            if (a === 'hang') {
                rec.status = 'held';
                held.add(res);
                res.on('close', () => held.delete(res));
                inbox.push(rec);
                return;
            }
            const ans = typeof a === 'number' ? { status: a } : a;
            rec.status = ans.status;
            inbox.push(rec);
            res.writeHead(ans.status, { 'content-type': 'text/plain', ...(ans.headers || {}) });
            res.end(ans.body ?? '');
        });
    }

    async function listen(p) {
        server = http.createServer(handler);
        server.on('connection', (s) => {
            sockets.add(s);
            s.on('close', () => sockets.delete(s));
        });
        await new Promise((res, rej) => {
            server.once('error', rej);
            server.listen(p, host, res);
        });
        return server.address().port;
    }

    const r = {
        host,
        port: await listen(port),
        inbox,
        url(path) { return `http://${host}:${r.port}${path}`; },
        on(path, behaviour) { behaviours.set(path, behaviour); counts.set(path, 0); },
        setSecret(path, secret) { secrets.set(path, secret); },
        requests(path) { return inbox.filter((x) => x.path === path); },
        waitRequests(path, n, ms = T(10000)) {
            return inbox.waitCount((x) => x.path === path, n, ms, `${n} requests on ${path}`);
        },
        /** Answers every held request with status (default 200). */
        release(status = 200) {
            for (const res of [...held]) {
                try { res.writeHead(status); res.end(); } catch { /* gone */ }
                held.delete(res);
            }
        },
        /** Stops listening (connections refused) until up(). */
        async down() {
            if (!server) return;
            const s = server;
            server = null;
            for (const sock of sockets) sock.destroy();
            await new Promise((res) => s.close(() => res()));
        },
        /** Listens again on the same port. */
        async up() { if (!server) await listen(r.port); },
        async close() {
            r.release(503);
            await r.down();
        },
    };
    return r;
}

/** Asserts a recorded webhook request is signed with secret and carries the headers. */
export function assertSignedWebhook(rec, secret) {
    const s = JSON.stringify({ headers: rec.headers, body: rec.body.slice(0, 800) });
    assert.equal(rec.method, 'POST', s);
    assert.match(rec.headers['content-type'] || '', /^application\/json/, s);
    assert.match(rec.id || '', UUIDV7, `webhook-id: ${s}`);
    assert.match(rec.timestamp || '', /^\d{10}$/, `webhook-timestamp: ${s}`);
    assert.ok(Math.abs(Number(rec.timestamp) - Date.now() / 1000) < 300,
        `webhook-timestamp too far from now: ${s}`);
    assert.match(rec.signature || '', /^v1,[A-Za-z0-9+/]+=*$/, `webhook-signature: ${s}`);
    assert.ok(verifySignature(secret, rec.id, rec.timestamp, rec.body, rec.signature),
        `signature does not verify with the rule's secret: ${s}`);
}

// ------------------------------------------------------------------ SMTP receiver

/**
 * An SMTP server (smtp-server package) on 127.0.0.1:0 without TLS or AUTH. Every message that
 * reaches DATA is parsed (mailparser) and recorded in inbox as {at, from, to (envelope), raw,
 * mail (parsed), accepted, code}. answer(mail) decides: undefined/250 = accept, or an SMTP code
 * (451, 550, ...) to refuse the message after its DATA. Default: accept.
 */
export async function startSmtpReceiver({ host = '127.0.0.1' } = {}) {
    const inbox = new Inbox('smtp receiver');
    const r = { inbox, answer: () => 250 };
    const server = new SMTPServer({
        secure: false,
        authOptional: true,
        disabledCommands: ['STARTTLS', 'AUTH'],
        logger: false,
        banner: 'rta e2e smtp',
        size: 10 * 1024 * 1024,
        onData(stream, session, callback) {
            const chunks = [];
            stream.on('data', (d) => chunks.push(d));
            stream.on('end', async () => {
                const raw = Buffer.concat(chunks);
                let mail = null;
                try { mail = await simpleParser(raw); } catch { /* recorded as null */ }
                const rec = {
                    at: Date.now(),
                    from: session.envelope.mailFrom && session.envelope.mailFrom.address,
                    to: session.envelope.rcptTo.map((x) => x.address),
                    raw: raw.toString('utf8'),
                    mail,
                    code: 250,
                };
                const code = r.answer(rec) ?? 250;
                rec.code = code;
                rec.accepted = code < 300;
                inbox.push(rec);
                if (code < 300) {
                    callback(null, 'queued');
                } else {
                    const err = new Error(code < 500 ? 'try again later' : 'mailbox unavailable');
                    err.responseCode = code;
                    callback(err);
                }
            });
        },
    });
    server.on('error', () => { /* client errors are not test failures */ });
    await new Promise((res, rej) => {
        server.server.once('error', rej);
        server.listen(0, host, res);
    });
    r.port = server.server.address().port;
    r.url = `smtp://${host}:${r.port}`;
    r.messagesTo = (to) => inbox.filter((m) => m.to.includes(to));
    r.waitMessages = (to, n, ms = T(10000)) =>
        inbox.waitCount((m) => m.to.includes(to), n, ms, `${n} messages to ${to}`);
    r.close = () => new Promise((res) => server.close(() => res()));
    return r;
}

/** The raw value of a header of a parsed mail (first occurrence, unfolded), or undefined. */
export function mailHeader(mail, name) {
    const h = mail.headerLines.find((x) => x.key === name.toLowerCase());
    if (!h) return undefined;
    return h.line.slice(h.line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
}

/** The raw header line value (unfolded) from the message source. */
export function rawHeader(raw, name) {
    const head = raw.split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');
    const re = new RegExp(`^${name}:[ \\t]*(.*)$`, 'mi');
    const m = re.exec(head);
    return m ? m[1].trim() : undefined;
}

// ------------------------------------------------------------------ misc

/** Current UTC time as "HH:MM" shifted by `minutes`. */
export function utcHHMM(minutes = 0) {
    const d = new Date(Date.now() + minutes * 60000);
    return `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes())
        .padStart(2, '0')}`;
}

/** Waits ms (for "nothing more arrives" checks), stretched for sanitizer builds. */
export const settle = (ms = 600) => sleep(T(ms));

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer/;

/** SIGTERM, then asserts a clean exit: code 0 and no sanitizer report on stderr (for after()
 *  hooks: with the ASan build this is where leaks and memory errors show). */
export async function stopClean(h) {
    if (!h) return;
    const code = await h.stop();
    const first = h.stderr.findIndex((l) => SANITIZER_RE.test(l));
    assert.equal(first, -1, `sanitizer report from rtad:\n${
        h.stderr.slice(first, first + 60).join('\n')}`);
    assert.equal(code, 0, `rtad exit code ${code}; stderr tail:\n${h.stderr.slice(-20).join('\n')}`);
}
