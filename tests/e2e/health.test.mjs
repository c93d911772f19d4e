// Probes, metrics, routing errors, request ids and the structured log.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad } from './lib/rtad.mjs';
import { assertError } from './lib/check.mjs';

describe('health, metrics, routing, logs', () => {
    let rtad;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await rtad?.stop(); });

    it('GET /healthz answers 200 {"status":"ok"} without a key', async () => {
        const r = await rtad.api('GET', '/healthz');
        assert.equal(r.status, 200, r.text);
        assert.match(r.headers.get('content-type') || '', /^application\/json/);
        assert.equal(r.json?.status, 'ok', r.text);
    });

    it('GET /readyz answers 200 with status "ready"', async () => {
        const r = await rtad.api('GET', '/readyz');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json?.status, 'ready', r.text);
    });

    it('HEAD /healthz answers 200 with no body', async () => {
        const r = await rtad.api('HEAD', '/healthz');
        assert.equal(r.status, 200);
        assert.equal(r.text, '');
    });

    it('GET /metrics is Prometheus text with rta_http_requests_total', async () => {
        await rtad.api('GET', '/healthz');
        const r = await rtad.api('GET', '/metrics');
        assert.equal(r.status, 200);
        assert.match(r.headers.get('content-type') || '', /^text\/plain/);
        assert.match(r.text, /^# TYPE rta_http_requests_total counter$/m);
        // at least one sample line with a positive value
        const samples = r.text.split('\n').filter((l) => l.startsWith('rta_http_requests_total'));
        assert.ok(samples.length > 0, 'no rta_http_requests_total samples');
        for (const l of samples) {
            assert.match(l, /^rta_http_requests_total(\{[^}]*\})? [0-9.eE+-]+$/, l);
        }
        const total = samples.reduce((s, l) => s + Number(l.split(' ').pop()), 0);
        assert.ok(total >= 1, `request counter total ${total}`);
    });

    it('the request counter grows with requests', async () => {
        const sum = (text) => text.split('\n')
            .filter((l) => l.startsWith('rta_http_requests_total'))
            .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
        const a = sum((await rtad.api('GET', '/metrics')).text);
        for (let i = 0; i < 5; i++) await rtad.api('GET', '/healthz');
        const b = sum((await rtad.api('GET', '/metrics')).text);
        assert.ok(b >= a + 5, `counter went from ${a} to ${b} after 5 requests`);
    });

    it('unknown path -> 404 not_found (JSON envelope)', async () => {
        const r = await rtad.api('GET', '/no/such/thing');
        assertError(r, 404, 'not_found');
        const r2 = await rtad.api('GET', '/v1/nope', { key: rtad.adminKey });
        assertError(r2, 404, 'not_found');
    });

    it('wrong method -> 405 method_not_allowed with an Allow header', async () => {
        const r = await rtad.api('DELETE', '/healthz');
        assertError(r, 405, 'method_not_allowed');
        const allow = r.headers.get('allow') || '';
        assert.match(allow, /\bGET\b/, `Allow: ${allow}`);
        assert.doesNotMatch(allow, /\bDELETE\b/, `Allow: ${allow}`);

        const r2 = await rtad.api('GET', '/v1/ingest', { key: rtad.adminKey });
        assertError(r2, 405, 'method_not_allowed');
        assert.match(r2.headers.get('allow') || '', /\bPOST\b/);

        const r3 = await rtad.api('PUT', '/v1/query/advanced', { key: rtad.adminKey, body: {} });
        assertError(r3, 405, 'method_not_allowed');
        assert.match(r3.headers.get('allow') || '', /\bPOST\b/);
    });

    it('X-Request-Id sent is echoed; one is generated when absent', async () => {
        const id = 'e2e-req-' + Date.now();
        const r = await rtad.api('GET', '/healthz', { headers: { 'x-request-id': id } });
        assert.equal(r.headers.get('x-request-id'), id);
        const r2 = await rtad.api('GET', '/healthz');
        const gen = r2.headers.get('x-request-id');
        assert.ok(gen && gen.length >= 8, `generated request id: ${gen}`);
        const r3 = await rtad.api('GET', '/healthz');
        assert.notEqual(r3.headers.get('x-request-id'), gen, 'request ids must differ');
    });

    it('every stderr line is JSON with time, level, msg; request lines carry request_id',
        async () => {
            const id = 'log-check-' + Date.now();
            await rtad.api('GET', '/healthz', { headers: { 'x-request-id': id } });
            const line = await rtad.waitForLog((l) => l.request_id === id, 5000)
                .catch(() => null);
            assert.ok(line, `no log line with request_id ${id}; log:\n${rtad.stderr.join('\n')}`);
            assert.equal(typeof line.msg, 'string');
            assert.ok(rtad.logs.length > 0);
            for (const [i, l] of rtad.logs.entries()) {
                assert.ok(!('raw' in l), `stderr line is not JSON: ${rtad.stderr[i]}`);
                assert.equal(typeof l.time, 'string', `no time: ${rtad.stderr[i]}`);
                assert.ok(!Number.isNaN(Date.parse(l.time)), `bad time: ${l.time}`);
                assert.equal(typeof l.level, 'string', `no level: ${rtad.stderr[i]}`);
                assert.equal(typeof l.msg, 'string', `no msg: ${rtad.stderr[i]}`);
            }
        });

    it('logs never contain the admin key secret', async () => {
        await rtad.api('GET', '/v1/admin/keys', { key: rtad.adminKey });
        const secret = rtad.adminKey.slice(22);
        for (const l of rtad.stderr) assert.ok(!l.includes(secret), `secret in log: ${l}`);
    });
});
