// Alert benchmark driver for bench/run-alerts.sh (node built-ins only): creates the rules over
// the REST API, ingests at a fixed rate so that they fire and resolve, waits for the outbox to
// drain, then collects delivery status counts, rtad's alert metrics and the receiver's report.
//
//   node drive.mjs --url http://127.0.0.1:18080 --key KEY --receiver http://127.0.0.1:18181
//        [--webhook-rules 200] [--email-rules 50] [--protocols 50] [--trigger-rate 50]
//        [--background-rate 1000] [--background-protocols 1000] [--idle-rules 0]
//        [--duration 30] [--drain 15] [--out result.json]
//
// Rules: rule i watches the total TVL of protocol "alert-p<i % protocols>" (no chain) with one
// level condition: i % 3 == 0 "tvl gt 1.5e9", 1 "tvl lt 1.5e9", 2 "tvl change_pct >= 0.4 over
// 3600 s" (measured from the first value, 1e9, while the series is younger than an hour);
// throttleMinutes 0, notifyResolved true; actions: the first --webhook-rules rules a webhook to
// the receiver, the next --email-rules an email. Every update of an alert protocol alternates
// its value between ~2e9 and ~1e9, so every rule on it goes ok -> firing -> ok -> ... and each
// update notifies every rule of that protocol once.
// Ingest: every 10 ms one POST /v1/ingest carries the updates due at --trigger-rate (round robin
// over the alert protocols) plus --background-rate (round robin over "bg-p<j>" protocols that no
// rule watches: evaluation and ingest load without notifications). One POST in flight at a time;
// if the server is slow the next POST carries everything that fell due (capped at 10,000 items).
// --idle-rules N adds N more rules (webhook actions) on the background protocols with thresholds
// no value reaches (1e15): evaluation load without notifications.
import http from 'node:http';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

const o = {
    url: 'http://127.0.0.1:18080', key: '', receiver: 'http://127.0.0.1:18181', smtpTo: 'bench@example.com',
    webhookRules: 200, emailRules: 50, protocols: 50, triggerRate: 50, backgroundRate: 1000,
    backgroundProtocols: 1000, idleRules: 0, duration: 30, drain: 15, out: '',
};
for (let i = 2; i < process.argv.length; i += 2) {
    const k = process.argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(k in o)) { console.error(`unknown argument: ${process.argv[i]}`); process.exit(2); }
    o[k] = typeof o[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
for (const u of [o.url, o.receiver]) {
    const h = new URL(u).hostname;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(h)) { console.error('drive: loopback only'); process.exit(2); }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const log = (...a) => console.error('drive:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function request(base, method, path, body, auth = true) {
    return new Promise((resolve, reject) => {
        const u = new URL(path, base);
        const data = body === undefined ? null : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        const headers = {};
        if (auth) headers.authorization = `Bearer ${o.key}`;
        if (data) { headers['content-type'] = 'application/json'; headers['content-length'] = data.length; }
        const req = http.request(u, { method, headers, agent }, (res) => {
            const chunks = [];
            res.on('data', (d) => chunks.push(d));
            res.on('end', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let json = null;
                try { json = JSON.parse(text); } catch { json = null; }
                resolve({ status: res.statusCode, text, json });
            });
        });
        req.setTimeout(30000, () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        if (data) req.write(data);
        req.end();
    });
}
const api = (method, path, body) => request(o.url, method, path, body);

const LOW = 1e9, HIGH = 2e9;
const alertProto = (i) => `alert-p${i}`;
const bgProto = (j) => `bg-p${j}`;

async function ingest(items) {
    const r = await api('POST', '/v1/ingest', { tvl: items });
    if (r.status !== 200) throw new Error(`ingest ${r.status}: ${r.text.slice(0, 300)}`);
    return r.json;
}

async function createRules() {
    const bodies = [];
    const total = o.webhookRules + o.emailRules;
    for (let i = 0; i < total; i++) {
        const p = alertProto(i % o.protocols);
        const cond = i % 3 === 0 ? { protocol: p, metric: 'tvl', operator: 'gt', threshold: 1.5e9 }
            : i % 3 === 1 ? { protocol: p, metric: 'tvl', operator: 'lt', threshold: 1.5e9 }
            : { protocol: p, metric: 'tvl', operator: 'change_pct', threshold: 0.4, timeWindow: 3600 };
        const action = i < o.webhookRules
            ? { type: 'webhook', target: `${o.receiver}/hook/${i}` }
            : { type: 'email', target: `bench${i}@example.com`, template: 'tvl_change' };
        bodies.push({ name: `bench ${i} ${cond.operator}`, isActive: true, throttleMinutes: 0, notifyResolved: true,
            conditions: [cond], actions: [action] });
    }
    for (let i = 0; i < o.idleRules; i++)
        bodies.push({ name: `idle ${i}`, isActive: true, throttleMinutes: 0, notifyResolved: true,
            conditions: [{ protocol: bgProto(i % o.backgroundProtocols), metric: 'tvl', operator: 'gt', threshold: 1e15 }],
            actions: [{ type: 'webhook', target: `${o.receiver}/idle/${i}` }] });
    const ids = [];
    let next = 0, failed = 0;
    const t0 = performance.now();
    const worker = async () => {
        while (next < bodies.length) {
            const b = bodies[next++];
            const r = await api('POST', '/v1/alerts/rules', b);
            if (r.status === 201) ids.push(r.json.ruleId);
            else if (failed++ < 3) log(`rule create ${r.status}: ${r.text.slice(0, 300)}`);
        }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const secs = (performance.now() - t0) / 1000;
    log(`created ${ids.length}/${bodies.length} rules in ${secs.toFixed(1)} s (${failed} failed)`);
    return { created: ids.length, asked: bodies.length, failed, seconds: secs, ids };
}

function pct(xs, q) {
    if (!xs.length) return null;
    const s = Float64Array.from(xs).sort();
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

async function runIngest() {
    const aState = new Array(o.protocols).fill(0);   // updates so far per alert protocol
    const bState = new Array(o.backgroundProtocols).fill(0);
    let aNext = 0, bNext = 0, aSent = 0, bSent = 0, skipped = 0, posts = 0, failures = 0, events = 0;
    const postMs = [];
    const t0 = performance.now();
    const end = t0 + o.duration * 1000;
    let tick = t0;
    while (true) {
        const now = performance.now();
        if (now >= end) break;
        const el = (now - t0) / 1000;
        const items = [];
        let dueA = Math.floor(el * o.triggerRate) - aSent;
        let dueB = Math.floor(el * o.backgroundRate) - bSent;
        if (dueA + dueB > 10000) { // too far behind: skip the oldest background updates first
            const over = dueA + dueB - 10000;
            const sb = Math.min(over, dueB);
            bSent += sb; dueB -= sb; skipped += sb;
            const sa = over - sb;
            aSent += sa; dueA -= sa; skipped += sa;
        }
        for (let k = 0; k < dueA; k++) {
            const i = aNext; aNext = (aNext + 1) % o.protocols;
            const n = ++aState[i];
            // odd updates high, even low; a distinct value every time (never "unchanged")
            items.push({ protocol: alertProto(i), chain: 'ethereum', tvl: (n % 2 ? HIGH : LOW) + n });
        }
        for (let k = 0; k < dueB; k++) {
            const j = bNext; bNext = (bNext + 1) % o.backgroundProtocols;
            const n = ++bState[j];
            items.push({ protocol: bgProto(j), chain: 'ethereum', tvl: (n % 2 ? 2e8 : 1e8) + n });
        }
        aSent += dueA; bSent += dueB;
        if (items.length) {
            const s = performance.now();
            try {
                const r = await ingest(items);
                events += r.events || 0;
            } catch (e) {
                failures++;
                if (failures <= 3) log(String(e.message || e));
            }
            postMs.push(performance.now() - s);
            posts++;
        }
        tick += 10;
        const wait = tick - performance.now();
        if (wait > 0) await sleep(wait);
        else tick = performance.now();
    }
    const secs = (performance.now() - t0) / 1000;
    return { seconds: Math.round(secs * 100) / 100, triggerUpdates: aSent, backgroundUpdates: bSent, skipped, posts,
        postFailures: failures, events, updatesPerSecond: Math.round((aSent + bSent - skipped) / secs),
        postMs: { p50: pct(postMs, 0.5), p99: pct(postMs, 0.99), max: pct(postMs, 1) } };
}

async function deliveryCounts() {
    const counts = {}, rtadMs = { webhook: [], email: [], push: [] };
    let cursor = '', pages = 0, total = 0;
    while (pages < 200) {
        const r = await api('GET', `/v1/alerts/deliveries?user=*&limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
        if (r.status !== 200) { log(`deliveries ${r.status}: ${r.text.slice(0, 200)}`); break; }
        for (const d of r.json.data) {
            const k = `${d.channel}/${d.status}`;
            counts[k] = (counts[k] || 0) + 1;
            total++;
            if (d.deliveredAt && rtadMs[d.channel]) rtadMs[d.channel].push(Date.parse(d.deliveredAt) - Date.parse(d.createdAt));
        }
        pages++;
        if (!r.json.meta.nextCursor) break;
        cursor = encodeURIComponent(r.json.meta.nextCursor);
    }
    // rtad's own view: delivery created (trigger) -> attempt answered, whole ms
    const createdToDelivered = {};
    for (const [ch, xs] of Object.entries(rtadMs))
        if (xs.length) createdToDelivered[ch] = { n: xs.length, p50: pct(xs, 0.5), p95: pct(xs, 0.95), p99: pct(xs, 0.99), max: pct(xs, 1) };
    return { total, byChannelStatus: counts, createdToDeliveredMs: createdToDelivered };
}

async function pendingCount() {
    const r = await api('GET', '/v1/alerts/deliveries?user=*&status=pending&limit=1000');
    return r.status === 200 ? r.json.meta.returned : -1;
}

async function metrics() {
    const r = await request(o.url, 'GET', '/metrics', undefined, false);
    const lines = r.text.split('\n').filter((l) => /^rta_alert_|^rta_notify_/.test(l) && !/_bucket\{/.test(l));
    return lines;
}

async function main() {
    const result = { params: { ...o, key: undefined } };
    // 1. create the protocols (a first value makes no tvl_change) at the LOW value
    const first = [];
    for (let i = 0; i < o.protocols; i++) first.push({ protocol: alertProto(i), chain: 'ethereum', tvl: LOW });
    for (let j = 0; j < o.backgroundProtocols; j++) first.push({ protocol: bgProto(j), chain: 'ethereum', tvl: 1e8 });
    await ingest(first);
    // 2. rules
    result.rules = await createRules();
    delete result.rules.ids;
    await request(o.receiver, 'POST', '/_reset', undefined, false);
    const before = await metrics();
    // 3. ingest
    log(`ingesting ${o.triggerRate}/s to ${o.protocols} alert protocols + ${o.backgroundRate}/s background for ${o.duration} s`);
    result.ingest = await runIngest();
    log(`ingest done: ${JSON.stringify(result.ingest)}`);
    // 4. drain: until nothing is pending and the receiver's counts stop moving, at most --drain s
    const t0 = performance.now();
    let last = '', stable = 0, pending = -1;
    while (performance.now() - t0 < o.drain * 1000) {
        pending = await pendingCount();
        const c = (await request(o.receiver, 'GET', '/_counts', undefined, false)).text;
        stable = c === last ? stable + 1 : 0;
        last = c;
        if (pending === 0 && stable >= 4) break;
        await sleep(250);
    }
    result.drain = { seconds: Math.round(performance.now() - t0) / 1000, pendingAtEnd: pending };
    // 5. collect
    result.deliveries = await deliveryCounts();
    result.metricsBefore = before;
    result.metrics = await metrics();
    result.receiver = (await request(o.receiver, 'GET', '/_stats', undefined, false)).json;
    if (o.out) fs.writeFileSync(o.out, JSON.stringify(result, null, 1));
    console.log(JSON.stringify(result));
    agent.destroy();
}

main().catch((e) => { console.error('drive: failed:', e); process.exit(1); });
