// permessage-deflate (RFC 7692) on Socket.IO's WebSocket transport (namespace /v1/realtime),
// enabled with RTA_REALTIME_SIO_PERMESSAGE_DEFLATE=true and off by default like socket.io's own
// perMessageDeflate: the negotiated extension on a raw Engine.IO WebSocket and on
// socket.io-client 4 (which offers it by default in Node through the `ws` package), events
// intact for compressing and plain clients side by side, fewer bytes on the wire with
// compression, the upgrade from polling, the /metrics gauge, and no extension when off.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import {
    WebSocket, sio, connected, subscribeOk, upgraded, emitAck, received, waitEvent, ingestTvl,
    checkTvlChange, metric, stopClean, withTimeout, T, ingestTvlSteps,
} from './lib/rt.mjs';

/** Opens a raw Engine.IO WebSocket (offering permessage-deflate, as `ws` does by default) and
 *  resolves with {ws, extHeader} once the server's open packet arrived. */
function rawEio(h) {
    const url = `${h.url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
    const ws = new WebSocket(url);
    let extHeader = null;
    ws.on('upgrade', (res) => { extHeader = res.headers['sec-websocket-extensions'] ?? ''; });
    const ready = new Promise((res, rej) => {
        ws.on('error', rej);
        ws.on('unexpected-response', (_req, resp) => rej(new Error(`HTTP ${resp.statusCode}`)));
        ws.once('message', (data) => {
            const text = data.toString('utf8');
            assert.equal(text[0], '0', `the first packet is the Engine.IO open: ${text}`);
            res({ ws, extHeader, open: JSON.parse(text.slice(1)) });
        });
    });
    return withTimeout(ready, T(5000), 'the Engine.IO open packet');
}

/** A socket.io-client on the websocket transport only; perMessageDeflate: false to not offer
 *  the extension (engine.io-client's default offers it, compressing sends >= 1024 bytes). */
async function wsClient(h, apiKey, perMessageDeflate) {
    const opts = { apiKey, transports: ['websocket'] };
    if (perMessageDeflate !== undefined) opts.perMessageDeflate = perMessageDeflate;
    const socket = sio(h, opts);
    await connected(socket);
    assert.equal(socket.io.engine.transport.name, 'websocket');
    return socket;
}

const nodeWs = (socket) => socket.io.engine.transport.ws;
const bytesRead = (socket) => nodeWs(socket)._socket.bytesRead;

describe('Socket.IO WebSocket with permessage-deflate', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad({ env: { RTA_REALTIME_SIO_PERMESSAGE_DEFLATE: 'true' } });
        key = (await makeKey(rtad, { user: 'sio-deflate', tier: 'pro' })).key;
    });
    after(async () => { await stopClean(rtad); });

    it('a raw Engine.IO WebSocket gets permessage-deflate with server_no_context_takeover',
        async () => {
            const { ws, extHeader, open } = await rawEio(rtad);
            assert.equal(ws.extensions, 'permessage-deflate');
            assert.equal(extHeader, 'permessage-deflate; server_no_context_takeover');
            assert.equal(typeof open.sid, 'string');
            ws.terminate();
        });

    it('socket.io-client negotiates it; tvl_change events arrive intact for compressing ' +
        'and plain clients, with fewer bytes on the wire', async () => {
        const z = await wsClient(rtad, key); // engine.io-client's default: offers deflate
        const p = await wsClient(rtad, key, false);
        assert.equal(nodeWs(z).extensions, 'permessage-deflate');
        assert.equal(nodeWs(p).extensions, '');
        assert.ok(await metric(rtad, 'rta_socketio_deflate_sessions') >= 1);

        await ingestTvl(rtad, [{ protocol: 'sio-deflate-proto', chain: 'ethereum', tvl: 1e9 }]);
        for (const s of [z, p]) {
            const ack = await subscribeOk(s, { type: 'protocol', protocol: 'sio-deflate-proto' });
            assert.equal(ack.room, 'protocol:sio-deflate-proto', JSON.stringify(ack));
        }
        const before = [bytesRead(z), bytesRead(p)];
        const n = 20;
        const sent = await ingestTvlSteps(rtad, 'sio-deflate-proto', n);
        const got = [];
        for (const s of [z, p]) {
            const evs = await s.inbox.waitCount((x) => x.event === 'tvl_change', n, T(10000),
                `${n} tvl_change events`);
            got.push(evs.map((x) => x.args));
            evs.forEach((x, i) => {
                checkTvlChange(x.args[0], { protocol: 'sio-deflate-proto', chain: 'ethereum',
                    previous: sent[i].prev, current: sent[i].cur, ts: sent[i].r.timestamp,
                    offset: sent[i].r.firstOffset });
                assert.equal(x.args[1], String(x.args[0].offset), 'offset argument');
            });
        }
        assert.deepEqual(got[0], got[1]); // same events, same content
        const wire = [bytesRead(z) - before[0], bytesRead(p) - before[1]];
        assert.ok(wire[0] < wire[1] * 0.9,
            `compressed ${wire[0]} bytes vs plain ${wire[1]} bytes for ${n} events`);

        // acks and server-framed packets still work over the compressed transport
        const ack = await emitAck(z, 'subscribe', { type: 'tvl_changes', threshold: 0.5 });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        assert.deepEqual(received(z, 'rta_error'), []);
        z.disconnect();
        p.disconnect();
    });

    it('the polling -> websocket upgrade negotiates it too', async () => {
        const s = sio(rtad, { apiKey: key });
        await connected(s);
        await upgraded(s);
        assert.equal(nodeWs(s).extensions, 'permessage-deflate');
        await subscribeOk(s, { type: 'protocol', protocol: 'sio-deflate-up' });
        // the first point of a new protocol is a protocol_update, the next a tvl_change
        await ingestTvl(rtad, [{ protocol: 'sio-deflate-up', chain: 'base', tvl: 5e6 }]);
        const r = await ingestTvl(rtad, [{ protocol: 'sio-deflate-up', chain: 'base',
            tvl: 5.5e6 }]);
        const { payload } = await waitEvent(s, 'tvl_change');
        checkTvlChange(payload, { protocol: 'sio-deflate-up', chain: 'base', previous: 5e6,
            current: 5.5e6, ts: r.timestamp, offset: r.firstOffset });
        const upd = await waitEvent(s, 'protocol_update');
        assert.equal(upd.payload.protocol, 'sio-deflate-up');
        s.disconnect();
    });
});

describe('Socket.IO WebSocket without permessage-deflate (default)', () => {
    let rtad;
    let key;
    before(async () => {
        // the plain-WS flag does not turn it on for Socket.IO
        rtad = await startRtad({ env: { RTA_REALTIME_PERMESSAGE_DEFLATE: 'true' } });
        key = (await makeKey(rtad, { user: 'sio-nodeflate', tier: 'pro' })).key;
    });
    after(async () => { await stopClean(rtad); });

    it('an offer is not answered; events still arrive', async () => {
        const { ws, extHeader } = await rawEio(rtad);
        assert.equal(ws.extensions, '');
        assert.equal(extHeader, '');
        ws.terminate();

        const s = await wsClient(rtad, key);
        assert.equal(nodeWs(s).extensions, '');
        assert.equal(await metric(rtad, 'rta_socketio_deflate_sessions'), 0);
        await subscribeOk(s, { type: 'protocol', protocol: 'sio-nodeflate' });
        await ingestTvl(rtad, [{ protocol: 'sio-nodeflate', chain: 'base', tvl: 100 }]);
        const r = await ingestTvl(rtad, [{ protocol: 'sio-nodeflate', chain: 'base', tvl: 120 }]);
        const { payload } = await waitEvent(s, 'tvl_change');
        checkTvlChange(payload, { protocol: 'sio-nodeflate', chain: 'base', previous: 100,
            current: 120, ts: r.timestamp, offset: r.firstOffset });
        s.disconnect();
    });
});
