// permessage-deflate (RFC 7692) on the plain WebSocket endpoint /v1/realtime/ws, enabled with
// RTA_REALTIME_PERMESSAGE_DEFLATE=true: the negotiated extension (the server always answers
// server_no_context_takeover), events intact for compressing and non-compressing clients side by
// side, client messages compressed with context takeover, fewer bytes on the wire with
// compression, and no extension when the option is off (the default).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import {
    WebSocket, Inbox, wsUrl, ingestTvl, checkTvlChange, T, withTimeout, ingestTvlSteps,
} from './lib/rt.mjs';

const opened = new Set();

/** Opens /v1/realtime/ws with the given perMessageDeflate client option; resolves once the
 *  welcome arrived with {ws, inbox, request(obj, type), close()}. */
function open(h, apiKey, perMessageDeflate) {
    const ws = new WebSocket(wsUrl(h, { apiKey }), { perMessageDeflate });
    const inbox = new Inbox('ws messages');
    const c = {
        ws,
        inbox,
        extHeader: null, // the 101's Sec-WebSocket-Extensions (ws.extensions has names only)
        request(obj, type) {
            const from = inbox.items.length;
            ws.send(JSON.stringify(obj));
            return inbox.waitFor((m) => m.type === type && m.id === obj.id, T(5000),
                `${type} for ${JSON.stringify(obj)}`, from);
        },
        close: () => { try { ws.terminate(); } catch { /* gone */ } },
    };
    opened.add(c);
    ws.on('upgrade', (res) => { c.extHeader = res.headers['sec-websocket-extensions'] ?? ''; });
    ws.on('message', (data) => inbox.push(JSON.parse(data.toString('utf8'))));
    const ready = new Promise((res, rej) => {
        ws.on('error', rej);
        ws.on('unexpected-response', (_req, resp) => rej(new Error(`HTTP ${resp.statusCode}`)));
        ws.on('open', res);
    });
    return withTimeout(ready, T(5000), 'the WebSocket to open')
        .then(() => inbox.waitFor((m) => m.type === 'welcome', T(5000), 'welcome'))
        .then(() => c);
}

const bytesRead = (c) => c.ws._socket.bytesRead;

describe('realtime WebSocket with permessage-deflate', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad({ env: { RTA_REALTIME_PERMESSAGE_DEFLATE: 'true' } });
        key = (await makeKey(rtad, { user: 'deflate', tier: 'pro' })).key;
    });
    after(async () => {
        for (const c of opened) c.close();
        await rtad?.stop();
    });

    it('negotiates permessage-deflate with server_no_context_takeover; events arrive intact ' +
        'for compressing and plain clients, with fewer bytes on the wire', async () => {
        // threshold 0: the client compresses even its short messages (context takeover on)
        const z = await open(rtad, key, { threshold: 0 });
        const p = await open(rtad, key, false);
        assert.equal(z.ws.extensions, 'permessage-deflate');
        assert.equal(z.extHeader, 'permessage-deflate; server_no_context_takeover');
        assert.equal(p.ws.extensions, '');
        assert.equal(p.extHeader, '');

        await ingestTvl(rtad, [{ protocol: 'deflate-proto', chain: 'ethereum', tvl: 1e9 }]);
        for (const c of [z, p]) {
            for (let i = 0; i < 3; i++) { // repeated: later ones refer back to the first
                const s = await c.request({ op: 'subscribe', type: 'protocol',
                    protocol: 'deflate-proto', id: i }, 'subscribed');
                assert.equal(s.room, 'protocol:deflate-proto', JSON.stringify(s));
            }
        }
        const before = [bytesRead(z), bytesRead(p)];
        const n = 20;
        const sent = await ingestTvlSteps(rtad, 'deflate-proto', n);
        const got = [];
        for (const c of [z, p]) {
            const evs = await c.inbox.waitCount((m) => m.type === 'tvl_change', n, T(10000),
                `${n} tvl_change events`);
            got.push(evs);
            evs.forEach((m, i) => checkTvlChange(m.data, { protocol: 'deflate-proto',
                chain: 'ethereum', previous: sent[i].prev, current: sent[i].cur,
                ts: sent[i].r.timestamp, offset: sent[i].r.firstOffset }));
        }
        assert.deepEqual(got[0], got[1]); // same events, same content
        const wire = [bytesRead(z) - before[0], bytesRead(p) - before[1]];
        assert.ok(wire[0] < wire[1] * 0.9,
            `compressed ${wire[0]} bytes vs plain ${wire[1]} bytes for ${n} events`);
        z.close();
        p.close();
    });

    it('a client that asks for client_no_context_takeover gets it', async () => {
        const c = await open(rtad, key, { threshold: 0, clientNoContextTakeover: true });
        assert.equal(c.extHeader,
            'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
        for (let i = 0; i < 3; i++) {
            const pong = await c.request({ op: 'ping', id: `p${i}` }, 'pong');
            assert.equal(pong.id, `p${i}`);
        }
        c.close();
    });
});

describe('realtime WebSocket without permessage-deflate (default)', () => {
    let rtad;
    before(async () => { rtad = await startRtad(); });
    after(async () => {
        for (const c of opened) c.close();
        await rtad?.stop();
    });

    it('an offer is not answered', async () => {
        const key = (await makeKey(rtad, { user: 'nodeflate', tier: 'pro' })).key;
        const c = await open(rtad, key, { threshold: 0 });
        assert.equal(c.ws.extensions, '');
        assert.equal(c.extHeader, '');
        const pong = await c.request({ op: 'ping', id: 1 }, 'pong');
        assert.equal(pong.id, 1);
        c.close();
    });
});
