// The TLS listener (same routes and WebSocket over TLS 1.3) and the `rtad keys` commands.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import https from 'node:https';
import tls from 'node:tls';
import net from 'node:net';
import WebSocket from 'ws';
import { startRtad, stop, api, KEY_RE, keyId } from './lib/rtad.mjs';

const BIN = resolve(process.env.RTAD_BIN || 'build/rtad');

function freePort() {
    return new Promise((res) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => res(port));
        });
    });
}

function selfSigned(dir) {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'],
    { stdio: 'ignore' });
    return { key, cert };
}

function httpsGet(port, path, opts = {}) {
    return new Promise((res, rej) => {
        const req = https.get({ host: '127.0.0.1', port, path, rejectUnauthorized: false, ...opts },
            (r) => {
                let body = '';
                r.on('data', (c) => { body += c; });
                r.on('end', () => res({ status: r.statusCode, body }));
            });
        req.on('error', rej);
        req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    });
}

describe('TLS listener', () => {
    let rtad;
    let tlsPort;
    before(async () => {
        const dir = mkdtempSync(join(tmpdir(), 'rta-tls-'));
        const { key, cert } = selfSigned(dir);
        tlsPort = await freePort();
        rtad = await startRtad({ env: { RTA_TLS_LISTEN: `127.0.0.1:${tlsPort}`,
            RTA_TLS_CERT: cert, RTA_TLS_KEY: key } });
    });
    after(async () => { if (rtad) await stop(rtad); });

    it('serves the same routes over TLS 1.3', async () => {
        let socket;
        const r = await new Promise((res, rej) => {
            const req = https.get({ host: '127.0.0.1', port: tlsPort, path: '/healthz',
                rejectUnauthorized: false }, (resp) => {
                socket = resp.socket;
                let body = '';
                resp.on('data', (c) => { body += c; });
                resp.on('end', () => res({ status: resp.statusCode, body }));
            });
            req.on('error', rej);
        });
        assert.equal(r.status, 200);
        assert.equal(JSON.parse(r.body).status, 'ok');
        assert.equal(socket.getProtocol(), 'TLSv1.3');
    });

    it('refuses TLS 1.2 clients by default', async () => {
        await assert.rejects(new Promise((res, rej) => {
            const s = tls.connect({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false,
                maxVersion: 'TLSv1.2' }, () => { s.end(); res(); });
            s.on('error', rej);
        }));
        // the server stays healthy after the refused handshake
        const r = await httpsGet(tlsPort, '/healthz');
        assert.equal(r.status, 200);
    });

    it('authenticated API and the plain WebSocket endpoint work over TLS', async () => {
        const r = await httpsGet(tlsPort, '/v1/chains',
            { headers: { Authorization: `Bearer ${rtad.adminKey}` } });
        assert.equal(r.status, 200);
        assert.ok(Array.isArray(JSON.parse(r.body).data));
        const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/v1/realtime/ws?apiKey=${rtad.adminKey}`,
            { rejectUnauthorized: false });
        const first = await new Promise((res, rej) => {
            ws.once('message', (m) => res(JSON.parse(m.toString())));
            ws.once('error', rej);
        });
        assert.equal(first.type, 'welcome');
        ws.close();
    });

    it('garbage on the TLS port does not hurt the server', async () => {
        await new Promise((res) => {
            const s = net.connect(tlsPort, '127.0.0.1', () => {
                s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
            });
            s.on('close', res);
            s.on('error', res);
            s.setTimeout(3000, () => s.destroy());
        });
        const r = await httpsGet(tlsPort, '/healthz');
        assert.equal(r.status, 200);
    });
});

describe('rtad keys (CLI on the configured store)', () => {
    it('create prints the key once, list shows it, revoke takes effect on a running server',
        async () => {
            const dataDir = mkdtempSync(join(tmpdir(), 'rta-cli-'));
            const run = (...args) => execFileSync(BIN, ['--data-dir', dataDir, 'keys', ...args],
                { encoding: 'utf8', env: { PATH: process.env.PATH } });
            const out = run('create', '--user', 'carol', '--tier', 'pro', '--role', 'reader');
            const key = out.match(/key:\s+(\S+)/)[1];
            assert.match(key, KEY_RE);
            const list = run('list');
            assert.match(list, new RegExp(`${keyId(key)}\\s+carol\\s+pro\\s+reader`));
            assert.ok(!list.includes(key.slice(22)), 'list never shows a secret');

            const rtad = await startRtad({ dataDir });
            try {
                let r = await api(rtad, 'GET', '/v1/chains', { key });
                assert.equal(r.status, 200);
                assert.match(run('revoke', keyId(key)), /revoked/);
                // the running server picks the revocation up from the store
                const deadline = Date.now() + 10000;
                do {
                    await new Promise((res) => setTimeout(res, 200));
                    r = await api(rtad, 'GET', '/v1/chains', { key });
                } while (r.status === 200 && Date.now() < deadline);
                assert.equal(r.status, 401);
                assert.equal(r.json.error.code, 'revoked_api_key');
            } finally {
                await stop(rtad);
            }
            assert.throws(() => run('create', '--user', 'x', '--tier', 'gold'), /tier/);
            assert.throws(() => run('revoke', 'k0000000000000000'));
        });

    it('--print-config masks secrets and --help documents the flags', () => {
        const cfgDir = mkdtempSync(join(tmpdir(), 'rta-cfg-'));
        const file = join(cfgDir, 'rtad.ini');
        writeFileSync(file, '[server]\nlisten = 127.0.0.1:9999\n\n[smtp]\npassword = hunter2\n');
        const out = execFileSync(BIN, ['--config', file, '--print-config'],
            { encoding: 'utf8', env: { PATH: process.env.PATH, RTA_ADMIN_KEY: 'secret-admin' } });
        assert.match(out, /listen = 127\.0\.0\.1:9999/);
        assert.ok(!out.includes('hunter2') && !out.includes('secret-admin'));
        assert.match(out, /password = \*{8}/);
        const help = execFileSync(BIN, ['--help'], { encoding: 'utf8' });
        for (const flag of ['--config', '--listen', '--data-dir', '--print-config', 'keys create']) {
            assert.ok(help.includes(flag), flag);
        }
        assert.throws(() => execFileSync(BIN, ['--set', 'server.nope=1', '--print-config'],
            { stdio: 'pipe' }), /unknown option server\.nope/);
    });
});
