// Per-connection limits of the realtime API: the tier's messages_per_minute (rate_limited,
// per connection) on both transports, and the plain WebSocket idle timeout.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, sleep } from './lib/rtad.mjs';
import {
    sioConnect, emitAck, subscribeOk, wsConnect, stopClean, checkError, T,
} from './lib/rt.mjs';

describe('realtime limits', () => {
    let rtad;
    let freeKey;
    before(async () => {
        rtad = await startRtad({ env: {
            RTA_TIERS_FREE_MESSAGES_PER_MINUTE: '3',
            RTA_REALTIME_WS_IDLE_TIMEOUT_MS: String(T(1000)),
        } });
        freeKey = (await makeKey(rtad, { user: 'rt-lim', tier: 'free' })).key;
    });
    after(async () => {
        await stopClean(rtad);
    });

    it('Socket.IO: past messages_per_minute a message answers rate_limited; a new ' +
        'connection has its own budget', async () => {
        const s = await sioConnect(rtad, { apiKey: freeKey, transports: ['websocket'] });
        for (let i = 0; i < 3; i++) {
            await subscribeOk(s, { type: 'protocol', protocol: `rl-${i}` });
        }
        const ack = await emitAck(s, 'subscribe', { type: 'protocol', protocol: 'rl-3' });
        assert.equal(ack?.ok, false, JSON.stringify(ack));
        checkError(ack.error, 'rate_limited');
        const from = s.inbox.items.length;
        s.emit('subscribe', { type: 'protocol', protocol: 'rl-4' });
        const x = await s.inbox.waitFor((y) => y.event === 'rta_error', T(5000), 'rta_error',
            from);
        checkError(x.args[0], 'rate_limited');
        assert.equal(s.connected, true, 'rate limiting does not disconnect');
        const s2 = await sioConnect(rtad, { apiKey: freeKey, transports: ['websocket'] });
        await subscribeOk(s2, { type: 'protocol', protocol: 'rl-x' });
        s.disconnect();
        s2.disconnect();
    });

    it('plain WS: past messages_per_minute an op answers an error rate_limited', async () => {
        const c = await wsConnect(rtad, { apiKey: freeKey });
        for (let i = 0; i < 3; i++) {
            const p = await c.request({ op: 'ping', id: i }, ['pong', 'error']);
            assert.equal(p.type, 'pong', JSON.stringify(p));
        }
        const from = c.inbox.items.length;
        c.send({ op: 'ping', id: 'over' });
        const e = await c.inbox.waitFor((m) => m.type === 'pong' || m.type === 'error',
            T(5000), 'an answer to the 4th ping', from);
        assert.equal(e.type, 'error', JSON.stringify(e));
        checkError(e.error, 'rate_limited');
        assert.equal(c.closeInfo, null, 'rate limiting does not close the connection');
        assert.equal(e.id, 'over', `the id is echoed in every answer: ${JSON.stringify(e)}`);
        c.close();
    });

    it('plain WS: a silent connection is closed after ws_idle_timeout_ms; pings keep it ' +
        'open', async () => {
        const silent = await wsConnect(rtad, { apiKey: freeKey });
        const chatty = await wsConnect(rtad, { apiKey: freeKey });
        const t0 = Date.now();
        const timer = setInterval(() => {
            try { chatty.ws.ping(); } catch { /* closed */ }
        }, T(200));
        try {
            const info = await silent.closed(T(1000) + T(5000));
            assert.ok(Date.now() - t0 >= T(1000) - 100, `closed after ${Date.now() - t0} ms`);
            assert.ok([1000, 1001, 1006, 1008].includes(info.code), JSON.stringify(info));
            await sleep(T(500));
            assert.equal(chatty.closeInfo, null, 'a client sending pings must stay open');
        } finally {
            clearInterval(timer);
            chatty.close();
        }
    });
});
