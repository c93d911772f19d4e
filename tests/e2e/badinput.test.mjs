// Hostile and broken input over raw sockets: the server answers with the right error and stays
// healthy afterwards.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, rawExchange, parseResponses, SLOW } from './lib/rtad.mjs';
import { assertError } from './lib/check.mjs';

const MAX_HEADER = 2048;
const MAX_BODY = 4096;

function rawReq(method, path, { headers = {}, body, key, close = true } = {}) {
    const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1'];
    if (key) lines.push(`Authorization: Bearer ${key}`);
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    const b = body === undefined ? undefined : Buffer.from(body);
    if (b && !Object.keys(headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) {
        lines.push('Content-Type: application/json', `Content-Length: ${b.length}`);
    }
    if (close) lines.push('Connection: close');
    const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n');
    return b ? Buffer.concat([head, b]) : head;
}

/** The first response of a raw exchange, shaped like api()'s result for assertError. */
function first(res) {
    const rs = parseResponses(res.data);
    assert.ok(rs.length >= 1, `no complete HTTP response; got ${JSON.stringify(
        res.data.toString('latin1').slice(0, 300))} (closed=${res.closed})`);
    const r = rs[0];
    return { status: r.status, headers: new Map(Object.entries(r.headers)), json: r.json,
        text: r.body, raw: r };
}

describe('bad input', () => {
    let rtad;
    before(async () => {
        rtad = await startRtad({ env: {
            RTA_MAX_HEADER_BYTES: String(MAX_HEADER),
            RTA_MAX_BODY_BYTES: String(MAX_BODY),
            RTA_HEADER_TIMEOUT_MS: '1000',
        } });
    });
    after(async () => { await rtad?.stop(); });
    afterEach(async () => {
        const r = await rtad.api('GET', '/healthz');
        assert.equal(r.status, 200, 'server unhealthy after the previous test');
    });

    const ingestRaw = (body, headers) => rawExchange(rtad.port,
        rawReq('POST', '/v1/ingest', { key: rtad.adminKey, body, headers }));

    it('malformed JSON -> 400 invalid_json', async () => {
        assertError(first(await ingestRaw('{"tvl":[{"protocol":')), 400, 'invalid_json');
        assertError(first(await ingestRaw("{'tvl': []}")), 400, 'invalid_json');
    });

    it('NaN / Infinity literals are not JSON -> 400 invalid_json', async () => {
        for (const lit of ['NaN', 'Infinity', '-Infinity']) {
            const body = `{"tvl":[{"protocol":"nan-p","chain":"ethereum","tvl":${lit}}]}`;
            assertError(first(await ingestRaw(body)), 400, 'invalid_json');
        }
        const huge = first(await ingestRaw(
            '{"tvl":[{"protocol":"nan-p","chain":"ethereum","tvl":1e400}]}'));
        assert.equal(huge.status, 400, huge.text);
        const p = await rtad.api('GET', '/v1/protocols/nan-p', { key: rtad.adminKey });
        assert.equal(p.status, 404, 'a non-finite TVL was stored');
    });

    it('deeply nested JSON (10,000 "[") -> 400, no crash', async () => {
        const r = first(await ingestRaw('['.repeat(4000)));
        assert.equal(r.status, 400, r.text);
        assert.ok(['invalid_json', 'validation_failed'].includes(r.json?.error?.code), r.text);
        // 10,000 levels is bigger than the 4 KiB body limit here; send it to a server with a
        // bigger limit below, and check the object form too
        const o = first(await ingestRaw('{"a":'.repeat(700)));
        assert.equal(o.status, 400, o.text);
    });

    it('wrong JSON types -> 400 validation_failed', async () => {
        for (const body of ['{"tvl":"abc"}', '{"tvl":[1,2]}',
            '{"prices":[{"token":5,"price":"1"}]}',
            '{"tvl":[{"protocol":["a"],"chain":{},"tvl":true}]}']) {
            const r = first(await ingestRaw(body));
            assertError(r, 400, 'validation_failed');
        }
    });

    it('invalid UTF-8 inside a JSON string -> 400', async () => {
        const body = Buffer.concat([Buffer.from('{"tvl":[{"protocol":"x","chain":"ethereum",' +
            '"tvl":1,"name":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}]}')]);
        const r = first(await ingestRaw(body));
        assert.equal(r.status, 400, r.text);
    });

    it('body over the limit (Content-Length) -> 413 body_too_large', async () => {
        const body = '{"tvl":[],"pad":"' + 'x'.repeat(MAX_BODY * 2) + '"}';
        const r = first(await ingestRaw(body));
        assertError(r, 413, 'body_too_large');
    });

    it('body over the limit (chunked) -> 413 body_too_large', async () => {
        const chunk = 'x'.repeat(1000);
        const parts = [rawReq('POST', '/v1/ingest', { key: rtad.adminKey,
            headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } })];
        let body = '';
        for (let i = 0; i < 10; i++) body += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
        body += '0\r\n\r\n';
        parts.push(Buffer.from(body));
        const r = first(await rawExchange(rtad.port, Buffer.concat(parts)));
        assertError(r, 413, 'body_too_large');
    });

    it('a chunked body under the limit is accepted', async () => {
        const json = JSON.stringify({ tvl: [{ protocol: 'chunky', chain: 'ethereum', tvl: 9 }] });
        const a = json.slice(0, 10);
        const b = json.slice(10);
        const hex = (x) => x.length.toString(16);
        const body = `${hex(a)}\r\n${a}\r\n${hex(b)}\r\n${b}\r\n0\r\n\r\n`;
        const r = first(await rawExchange(rtad.port, Buffer.concat([rawReq('POST', '/v1/ingest',
            { key: rtad.adminKey, headers: { 'Content-Type': 'application/json',
                'Transfer-Encoding': 'chunked' } }), Buffer.from(body)])));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.accepted, 1);
    });

    it('header block over max_header_bytes -> 431 headers_too_large', async () => {
        const r = first(await rawExchange(rtad.port, rawReq('GET', '/healthz',
            { headers: { 'X-Pad': 'a'.repeat(MAX_HEADER + 500) } })));
        assertError(r, 431, 'headers_too_large');
        // many small headers adding up to more than the limit
        const many = {};
        for (let i = 0; i < 60; i++) many[`X-H${i}`] = 'b'.repeat(40);
        const r2 = first(await rawExchange(rtad.port,
            rawReq('GET', '/healthz', { headers: many })));
        assertError(r2, 431, 'headers_too_large');
    });

    it('a header block just under the limit is fine', async () => {
        const r = first(await rawExchange(rtad.port, rawReq('GET', '/healthz',
            { headers: { 'X-Pad': 'a'.repeat(MAX_HEADER - 200) } })));
        assert.equal(r.status, 200, r.text);
    });

    it('slow headers (1 byte / 200 ms) -> 408 request_timeout, then close', async () => {
        const req = rawReq('GET', '/healthz', { headers: { 'X-Slow': 's'.repeat(40) } });
        const bytes = [...req].map((b) => Buffer.from([b]));
        const started = Date.now();
        // sending all of it would take ~20 s; the server must cut it off after ~1 s
        const res = await rawExchange(rtad.port, bytes, { delayMs: 200, timeoutMs: 8000 * SLOW });
        const took = Date.now() - started;
        const r = first(res);
        assertError(r, 408, 'request_timeout');
        assert.ok(res.closed, 'connection not closed after 408');
        assert.ok(took < 7000 * SLOW, `header timeout not enforced across bytes (took ${took} ms)`);
    });

    it('garbage request line -> 400 malformed_request', async () => {
        for (const junk of ['HELLO\r\n\r\n', 'GET\r\n\r\n', 'GET / HTTP/1.1 extra\r\n\r\n',
            Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])]) {
            const res = await rawExchange(rtad.port, junk, { timeoutMs: 3000 });
            const r = first(res);
            assertError(r, 400, 'malformed_request');
            assert.ok(res.closed, 'connection should be closed after a malformed request');
        }
    });

    it('bad framing (Content-Length + Transfer-Encoding, bad Content-Length) -> 400', async () => {
        const smuggle = Buffer.from('POST /v1/ingest HTTP/1.1\r\nHost: x\r\n' +
            `Authorization: Bearer ${rtad.adminKey}\r\nContent-Length: 5\r\n` +
            'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
        const r = first(await rawExchange(rtad.port, smuggle, { timeoutMs: 3000 }));
        assert.equal(r.status, 400, r.text);
        const badLen = Buffer.from(
            'POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n');
        const r2 = first(await rawExchange(rtad.port, badLen, { timeoutMs: 3000 }));
        assert.equal(r2.status, 400, r2.text);
    });

    it('many pipelined requests in one write are all answered, in order', async () => {
        const reqs = [];
        const expect = [];
        for (let i = 0; i < 30; i++) {
            const id = `pipe-${i}`;
            if (i % 3 === 0) {
                reqs.push(rawReq('GET', '/healthz', { headers: { 'X-Request-Id': id },
                    close: false }));
                expect.push([id, 200]);
            } else if (i % 3 === 1) {
                reqs.push(rawReq('POST', '/v1/ingest', { key: rtad.adminKey, close: false,
                    headers: { 'X-Request-Id': id },
                    body: JSON.stringify({ tvl: [{ protocol: 'piped', chain: 'ethereum',
                        tvl: i }] }) }));
                expect.push([id, 200]);
            } else {
                reqs.push(rawReq('GET', '/no/such/path', { headers: { 'X-Request-Id': id },
                    close: false }));
                expect.push([id, 404]);
            }
        }
        reqs.push(rawReq('GET', '/healthz', { headers: { 'X-Request-Id': 'pipe-last' } }));
        expect.push(['pipe-last', 200]);
        const res = await rawExchange(rtad.port, Buffer.concat(reqs), { timeoutMs: 10000 });
        const rs = parseResponses(res.data);
        assert.equal(rs.length, expect.length, `got ${rs.length} responses`);
        assert.deepEqual(rs.map((r) => [r.headers['x-request-id'], r.status]), expect);
        assert.ok(res.closed, 'Connection: close on the last request should close');
        const p = await rtad.api('GET', '/v1/protocols/piped', { key: rtad.adminKey });
        assert.equal(p.json.tvl, 28, 'pipelined ingests applied out of order');
    });

    it('a client that disconnects mid-body does not hurt the server', async () => {
        const head = rawReq('POST', '/v1/ingest', { key: rtad.adminKey,
            headers: { 'Content-Type': 'application/json', 'Content-Length': '1000' } });
        await rawExchange(rtad.port, [head, Buffer.from('{"tvl":[')], { delayMs: 50,
            timeoutMs: 300 });
    });
});

describe('deeply nested JSON with a large body limit', () => {
    let rtad;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await rtad?.stop(); });

    it('10,000 "[" -> 400 and the server stays up', async () => {
        for (const body of ['['.repeat(10000), '['.repeat(10000) + ']'.repeat(10000),
            '{"tvl":' + '['.repeat(10000)]) {
            const r = await rtad.api('POST', '/v1/ingest', { key: rtad.adminKey, body });
            assert.equal(r.status, 400, r.text);
            assert.ok(['invalid_json', 'validation_failed'].includes(r.json?.error?.code), r.text);
        }
        const q = await rtad.api('POST', '/v1/query/advanced', { key: rtad.adminKey,
            body: '['.repeat(10000) + ']'.repeat(10000) });
        assert.equal(q.status, 400, q.text);
        assert.equal((await rtad.api('GET', '/healthz')).status, 200);
    });
});
