// Graceful shutdown: SIGTERM with requests in flight, exit code 0, "shutdown" log line, no
// truncated answers, acknowledged writes kept.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startRtad, makeKey, ingest, parseResponses, sleep } from './lib/rtad.mjs';

function ingestHead(key, len, extra = '') {
    return Buffer.from('POST /v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        `Authorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${len}\r\n${extra}\r\n`);
}

/** Opens a socket and returns helpers to write and to await the server's bytes / close. */
function openConn(port) {
    return new Promise((res, rej) => {
        const sock = net.connect({ port, host: '127.0.0.1' });
        const got = [];
        let closed = false;
        const waiters = [];
        sock.on('data', (d) => { got.push(d); waiters.forEach((w) => w()); });
        sock.on('close', () => { closed = true; waiters.forEach((w) => w()); });
        sock.on('error', () => { /* close follows */ });
        sock.on('connect', () => res({
            sock,
            write: (b) => new Promise((r) => sock.write(b, () => r())),
            data: () => Buffer.concat(got),
            closed: () => closed,
            waitClose: (ms) => new Promise((r) => {
                if (closed) return r(true);
                const t = setTimeout(() => r(false), ms);
                waiters.push(() => { if (closed) { clearTimeout(t); r(true); } });
            }),
        }));
        sock.on('error', rej);
    });
}

describe('graceful shutdown', () => {
    it('SIGTERM with idle server: exit 0 and a "shutdown" log line', async () => {
        const rtad = await startRtad();
        try {
            assert.equal((await rtad.api('GET', '/healthz')).status, 200);
            const code = await rtad.stop();
            assert.equal(code, 0, `exit code ${code} signal ${rtad.exitSignal}; stderr:\n${
                rtad.stderr.slice(-10).join('\n')}`);
            assert.ok(rtad.logs.some((l) => l.msg === 'shutdown' || /shutdown/.test(l.msg ?? '')),
                `no shutdown line in:\n${rtad.stderr.join('\n')}`);
            for (const l of rtad.logs) assert.ok(!('raw' in l), `non-JSON stderr: ${l.raw}`);
        } finally {
            await rtad.kill9();
        }
    });

    it('a request being uploaded when SIGTERM arrives still gets its answer', async () => {
        const rtad = await startRtad();
        try {
            const body = Buffer.from(JSON.stringify({ tvl: [{ protocol: 'in-flight',
                chain: 'ethereum', tvl: 42 }] }));
            const c = await openConn(rtad.port);
            await c.write(ingestHead(rtad.adminKey, body.length));
            await c.write(body.subarray(0, 10));
            await sleep(100);
            rtad.child.kill('SIGTERM');
            await sleep(300);
            await c.write(body.subarray(10)).catch(() => {});
            await c.waitClose(6000);
            const rs = parseResponses(c.data());
            const code = await rtad.stop();
            assert.equal(rs.length, 1, `in-flight request got no answer (received ${
                JSON.stringify(c.data().toString())})`);
            assert.equal(rs[0].status, 200, rs[0].body);
            assert.equal(rs[0].headers.connection, 'close');
            assert.equal(code, 0);
            assert.ok(rtad.logs.some((l) => /shutdown/.test(l.msg ?? '')), 'no shutdown line');
            // the acknowledged write is kept
            await rtad.restart();
            const p = await rtad.api('GET', '/v1/protocols/in-flight', { key: rtad.adminKey });
            assert.equal(p.status, 200, 'acknowledged ingest lost over the restart');
        } finally {
            await rtad.kill9();
        }
    });

    it('requests racing SIGTERM get a whole answer or none; acknowledged writes are kept',
        async () => {
            const rtad = await startRtad();
            try {
                const conns = [];
                for (let i = 0; i < 20; i++) conns.push(await openConn(rtad.port));
                const bodies = conns.map((_, i) => Buffer.from(JSON.stringify({ tvl: [{
                    protocol: `race-${i}`, chain: 'ethereum', tvl: i + 1 }] })));
                // fire all requests and SIGTERM in the same tick
                conns.forEach((c, i) => c.sock.write(Buffer.concat([
                    ingestHead(rtad.adminKey, bodies[i].length, 'Connection: keep-alive\r\n'),
                    bodies[i]])));
                rtad.child.kill('SIGTERM');
                await Promise.all(conns.map((c) => c.waitClose(8000)));
                const code = await rtad.stop();
                assert.equal(code, 0, `exit ${code}`);
                const acked = [];
                conns.forEach((c, i) => {
                    const raw = c.data();
                    const rs = parseResponses(raw);
                    if (raw.length === 0) return;
                    assert.equal(rs.length, 1, `truncated answer on conn ${i}: ${raw}`);
                    if (rs[0].status === 200) acked.push(i);
                    else assert.equal(rs[0].status, 503, `conn ${i}: ${rs[0].body}`);
                    assert.ok(c.closed(), `conn ${i} left open after shutdown`);
                });
                await rtad.restart();
                for (const i of acked) {
                    const p = await rtad.api('GET', `/v1/protocols/race-${i}`,
                        { key: rtad.adminKey });
                    assert.equal(p.status, 200, `acknowledged race-${i} lost`);
                }
            } finally {
                await rtad.kill9();
            }
        });

    it('idle keep-alive connections do not hold up the exit', async () => {
        const rtad = await startRtad({ env: { RTA_SHUTDOWN_TIMEOUT_MS: '20000',
            RTA_IDLE_TIMEOUT_MS: '60000' } });
        try {
            const c = await openConn(rtad.port);
            await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
            for (let i = 0; i < 50 && parseResponses(c.data()).length === 0; i++) await sleep(20);
            assert.equal(parseResponses(c.data())[0]?.status, 200);
            const started = Date.now();
            const code = await rtad.stop();
            const took = Date.now() - started;
            assert.equal(code, 0);
            assert.ok(took < 10000, `exit took ${took} ms with one idle connection`);
            assert.ok(await c.waitClose(1000), 'idle connection not closed');
        } finally {
            await rtad.kill9();
        }
    });

    it('exits cleanly (code 0, only JSON on stderr) after every API has been used',
        async () => {
            // with a sanitizer build, leaks and memory errors show up here as a non-zero exit
            const rtad = await startRtad();
            try {
                const k = await makeKey(rtad, { user: 'clean', role: 'user' });
                const gone = await makeKey(rtad, { user: 'clean2' });
                const steps = [
                    await rtad.api('DELETE', `/v1/admin/keys/${gone.id}`, { key: rtad.adminKey }),
                    await rtad.api('GET', '/v1/admin/keys', { key: rtad.adminKey }),
                    await ingest(rtad, { tvl: [{ protocol: 'clean', chain: 'ethereum', tvl: 1 }],
                        prices: [{ token: 'coingecko:clean', price: 1 }] }),
                    await ingest(rtad, { tvl: [{ protocol: 'clean', chain: 'ethereum', tvl: 2 }],
                        prices: [{ token: 'coingecko:clean', price: 2 }] }),
                    await ingest(rtad, { tvl: [{ protocol: 'BAD', chain: 'ethereum', tvl: -1 }] }),
                    await rtad.api('GET', '/v1/admin/audit', { key: rtad.adminKey }),
                    await rtad.api('GET', '/v1/events?after=0', { key: k.key }),
                    await rtad.api('POST', '/v1/query/advanced', { key: k.key, body: {
                        aggregations: [{ field: 'tvl', operation: 'sum', group_by: 'chain' }] } }),
                    await rtad.api('POST', '/v1/query/advanced', { key: k.key,
                        body: { limit: 0 } }),
                    await rtad.api('GET', '/v1/protocols', { key: k.key }),
                    await rtad.api('GET', '/v1/protocols/clean', { key: k.key }),
                    await rtad.api('GET', '/v1/protocols/nope', { key: k.key }),
                    await rtad.api('GET', '/v1/chains', { key: k.key }),
                    await rtad.api('GET', '/v1/prices/coingecko:clean', { key: k.key }),
                    await rtad.api('GET', '/metrics'),
                    await rtad.api('GET', '/v1/protocols', { key: gone.key }),
                ];
                assert.ok(steps.every((r) => r.status < 500), steps.map((r) => r.status).join());
                const code = await rtad.stop();
                const junk = rtad.stderr.filter((l, i) => 'raw' in rtad.logs[i]);
                assert.equal(code, 0, `exit code ${code}; non-JSON stderr:\n${
                    junk.slice(0, 30).join('\n')}`);
                assert.deepEqual(junk, []);
            } finally {
                await rtad.kill9();
            }
        });

    it('after exit the port no longer accepts connections', async () => {
        const rtad = await startRtad();
        const port = rtad.port;
        assert.equal(await rtad.stop(), 0);
        const refused = await new Promise((res) => {
            const s = net.connect({ port, host: '127.0.0.1' });
            s.on('connect', () => { s.destroy(); res(false); });
            s.on('error', () => res(true));
        });
        assert.ok(refused);
    });
});
