// Harness for the rtad end-to-end tests: starts the real binary on an ephemeral port with a
// fresh data directory and a known admin key, captures its JSON-lines log, and offers small
// HTTP helpers (fetch for ordinary requests, node:net for raw bytes).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import net from 'node:net';

const live = new Set();      // child processes still running
const dirs = new Set();      // data directories to remove at exit

process.on('exit', () => {
    for (const child of live) {
        try { child.kill('SIGKILL'); } catch { /* already gone */ }
    }
    if (!process.env.RTA_E2E_KEEP_DATA) {
        for (const d of dirs) {
            try { rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
        }
    }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => process.exit(130));
}

/** A well-formed key text: "rta_" + "k" + 16 hex + "_" + 43 base64url chars (65 chars). */
export function generateKeyText() {
    const id = 'k' + randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    return `rta_${id}_${secret}`;
}

export const KEY_RE = /^rta_k[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** True when the binary under test is a sanitizer build (make e2e-asan sets RTAD_SANITIZED=1):
 *  tests stretch their waits, never their expectations. */
export const SANITIZED = process.env.RTAD_SANITIZED === '1';
export const SLOW = SANITIZED ? 3 : 1;

function cleanEnv() {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (!k.startsWith('RTA_')) env[k] = v;
    }
    return env;
}

/**
 * Starts rtad (RTAD_BIN, else RTA_BIN, else build/rtad). Options: env (extra environment),
 * args (extra flags), binary, dataDir, adminKey.
 * Returns a handle: {url, port, adminKey, dataDir, logs, stderr, stop(), kill9(), restart(),
 * api(), waitForLog()}.
 */
export async function startRtad({ env = {}, args = [], binary, dataDir, adminKey } = {}) {
    const bin = resolve(binary || process.env.RTAD_BIN || process.env.RTA_BIN || 'build/rtad');
    const dir = dataDir || mkdtempSync(join(tmpdir(), 'rtad-e2e-'));
    dirs.add(dir);
    const h = {
        binary: bin,
        dataDir: dir,
        adminKey: adminKey || generateKeyText(),
        env: { ...env },
        args: [...args],
        url: null,
        port: null,
        logs: [],        // parsed JSON lines of the current run (non-JSON lines as {raw})
        allLogs: [],     // across restarts
        stderr: [],      // raw lines of the current run
        child: null,
        exitCode: undefined,
        exitSignal: undefined,
        exited: null,    // promise of {code, signal}
    };
    h.api = (method, path, opts) => api(h, method, path, opts);
    h.stop = () => stop(h);
    h.kill9 = () => kill9(h);
    h.restart = async () => {
        if (h.child && h.exitCode === undefined && h.exitSignal === undefined) await stop(h);
        await launch(h);
        return h;
    };
    h.waitForLog = (pred, timeoutMs = 5000) => waitForLog(h, pred, timeoutMs);
    await launch(h);
    return h;
}

function launch(h) {
    h.logs = [];
    h.stderr = [];
    h.exitCode = undefined;
    h.exitSignal = undefined;
    const child = spawn(h.binary, ['--listen', '127.0.0.1:0', '--data-dir', h.dataDir, ...h.args], {
        env: { ...cleanEnv(), RTA_ADMIN_KEY: h.adminKey, ...h.env },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    h.child = child;
    live.add(child);
    h.exited = new Promise((res) => {
        child.on('exit', (code, signal) => {
            live.delete(child);
            h.exitCode = code;
            h.exitSignal = signal;
            res({ code, signal });
        });
    });
    child.stdout.on('data', () => { /* rtad logs to stderr; stdout is ignored */ });
    const rl = createInterface({ input: child.stderr });
    const listeners = new Set();
    h._logListeners = listeners;
    rl.on('line', (line) => {
        h.stderr.push(line);
        let rec;
        try {
            rec = JSON.parse(line);
            if (rec === null || typeof rec !== 'object') rec = { raw: line };
        } catch {
            rec = { raw: line };
        }
        h.logs.push(rec);
        h.allLogs.push(rec);
        for (const fn of listeners) fn(rec);
    });
    return new Promise((res, rej) => {
        let done = false;
        const finish = (err) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            listeners.delete(onLog);
            if (err) {
                try { child.kill('SIGKILL'); } catch { /* ignore */ }
                rej(err);
            } else {
                res(h);
            }
        };
        const onLog = (rec) => {
            if (rec.msg === 'listening' && Number.isInteger(rec.port) && rec.port > 0) {
                h.port = rec.port;
                h.url = `http://127.0.0.1:${rec.port}`;
                finish();
            }
        };
        listeners.add(onLog);
        const timer = setTimeout(() => finish(new Error(
            `rtad did not log "listening" within ${15 * SLOW} s; stderr:\n${h.stderr.join('\n')}`)),
            15000 * SLOW);
        child.on('error', (e) => finish(new Error(`cannot start ${h.binary}: ${e.message}`)));
        h.exited.then(({ code, signal }) => finish(new Error(
            `rtad exited (code ${code}, signal ${signal}) before listening; stderr:\n` +
            h.stderr.join('\n'))));
    });
}

/** SIGTERM, wait for exit (SIGKILL after timeoutMs). Returns the exit code (null if killed). */
export async function stop(h, timeoutMs = 15000 * SLOW) {
    if (!h.child) return undefined;
    if (h.exitCode !== undefined || h.exitSignal !== undefined) return h.exitCode;
    h.child.kill('SIGTERM');
    const timer = setTimeout(() => { try { h.child.kill('SIGKILL'); } catch { /* gone */ } },
        timeoutMs);
    const { code } = await h.exited;
    clearTimeout(timer);
    return code;
}

export async function kill9(h) {
    if (!h.child || h.exitCode !== undefined || h.exitSignal !== undefined) return;
    h.child.kill('SIGKILL');
    await h.exited;
}

export function waitForLog(h, pred, timeoutMs = 5000) {
    const found = h.logs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((res, rej) => {
        const fn = (rec) => {
            if (pred(rec)) {
                clearTimeout(t);
                h._logListeners.delete(fn);
                res(rec);
            }
        };
        const t = setTimeout(() => {
            h._logListeners.delete(fn);
            rej(new Error('log line not seen in time'));
        }, timeoutMs);
        h._logListeners.add(fn);
    });
}

/**
 * One HTTP request with fetch. opts: key (Bearer), body (object -> JSON, string/Buffer -> raw),
 * headers. Returns {status, headers (fetch Headers), json (parsed or null), text}.
 */
export async function api(h, method, path, { key, body, headers = {} } = {}) {
    const hdrs = { ...headers };
    if (key !== undefined && key !== null) hdrs.authorization = `Bearer ${key}`;
    let payload;
    if (body !== undefined) {
        if (typeof body === 'string' || Buffer.isBuffer(body)) {
            payload = body;
        } else {
            payload = JSON.stringify(body);
        }
        if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) {
            hdrs['content-type'] = 'application/json';
        }
    }
    const res = await fetch(h.url + path, { method, headers: hdrs, body: payload,
        redirect: 'manual' });
    const text = await res.text();
    let json = null;
    if (text.length > 0) {
        try { json = JSON.parse(text); } catch { json = null; }
    }
    return { status: res.status, headers: res.headers, json, text };
}

/** Creates a key through the admin API; returns the 201 body ({id, key, ...}). */
export async function makeKey(h, { user = 'e2e-user', tier = 'free', role = 'user', label } = {}) {
    const body = { user, tier, role };
    if (label !== undefined) body.label = label;
    const r = await api(h, 'POST', '/v1/admin/keys', { key: h.adminKey, body });
    if (r.status !== 201) {
        throw new Error(`makeKey: expected 201, got ${r.status}: ${r.text}`);
    }
    return r.json;
}

/** Ingest helper: POST /v1/ingest with the given key (default admin); returns api() result. */
export function ingest(h, body, key) {
    return api(h, 'POST', '/v1/ingest', { key: key ?? h.adminKey, body });
}

// ---------------------------------------------------------------- raw sockets

/**
 * Opens a TCP connection, writes `chunks` (string/Buffer or array of them, with optional
 * delayMs between them), and collects everything the server sends until it closes the
 * connection or `timeoutMs` passes. Returns {data (Buffer), closed (bool), error}.
 */
export function rawExchange(port, chunks, { delayMs = 0, timeoutMs = 5000, until } = {}) {
    const list = Array.isArray(chunks) ? chunks : [chunks];
    return new Promise((res) => {
        const sock = net.connect({ port, host: '127.0.0.1' });
        const got = [];
        let closed = false;
        let error = null;
        let finished = false;
        let writeTimer = null;
        const finish = () => {
            if (finished) return;
            finished = true;
            clearTimeout(timer);
            clearTimeout(writeTimer);
            sock.destroy();
            res({ data: Buffer.concat(got), closed, error });
        };
        const timer = setTimeout(finish, timeoutMs);
        sock.on('data', (d) => {
            got.push(d);
            if (until && until(Buffer.concat(got))) finish();
        });
        sock.on('error', (e) => { error = e; });
        sock.on('close', () => { closed = true; finish(); });
        sock.on('connect', () => {
            let i = 0;
            const next = () => {
                if (finished || sock.destroyed) return;
                if (i >= list.length) return;
                try { sock.write(list[i++]); } catch (e) { error = e; return; }
                if (i < list.length) writeTimer = setTimeout(next, delayMs);
            };
            next();
        });
    });
}

/**
 * Parses a byte stream holding zero or more HTTP/1.1 responses (Content-Length or chunked
 * bodies). Returns [{status, reason, headers (lower-case names -> value), body (string),
 * json}] and stops at the first incomplete response.
 */
export function parseResponses(buf) {
    const out = [];
    let pos = 0;
    const s = buf.toString('latin1');
    while (pos < s.length) {
        const headEnd = s.indexOf('\r\n\r\n', pos);
        if (headEnd < 0) break;
        const lines = s.slice(pos, headEnd).split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0]);
        if (!m) break;
        const headers = {};
        for (const l of lines.slice(1)) {
            const c = l.indexOf(':');
            if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
        let p = headEnd + 4;
        let body = '';
        const status = Number(m[1]);
        if (headers['transfer-encoding'] && /chunked/i.test(headers['transfer-encoding'])) {
            let ok = false;
            for (;;) {
                const le = s.indexOf('\r\n', p);
                if (le < 0) break;
                const n = parseInt(s.slice(p, le), 16);
                if (Number.isNaN(n)) break;
                p = le + 2;
                if (n === 0) {
                    const te = s.indexOf('\r\n', p);
                    if (te < 0) break;
                    p = te + 2;
                    ok = true;
                    break;
                }
                if (p + n + 2 > s.length) break;
                body += s.slice(p, p + n);
                p += n + 2;
            }
            if (!ok) break;
        } else {
            const n = status === 304 || status === 204 ? 0 : Number(headers['content-length'] || 0);
            if (p + n > s.length) break;
            body = s.slice(p, p + n);
            p += n;
        }
        let json = null;
        try { json = JSON.parse(Buffer.from(body, 'latin1').toString('utf8')); } catch { /* */ }
        out.push({ status, reason: m[2], headers, body, json });
        pos = p;
    }
    return out;
}

/** Asserts-friendly check that a body is the error envelope with the given code. */
export function errorCode(json) {
    if (!json || typeof json !== 'object' || !json.error) return undefined;
    return json.error.code;
}

/** The id part of a key text ("k" + 16 hex) and its secret (43 chars; may contain "_"). */
export const keyId = (text) => text.slice(4, 21);
export const keySecret = (text) => text.slice(22);
