// Graceful shutdown with realtime clients connected: SIGTERM disconnects Socket.IO clients
// (websocket and polling), closes plain WebSocket clients with 1001, and rtad exits 0.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import {
    sioConnect, subscribeOk, upgraded, lifeEvent, wsConnect, closeAllClients, ingestTvl,
    waitEvent, T,
} from './lib/rt.mjs';

describe('realtime shutdown', () => {
    it('SIGTERM: Socket.IO clients get disconnect, plain WS clients close 1001, exit 0',
        async () => {
            const rtad = await startRtad();
            try {
                const { key } = await makeKey(rtad, { user: 'rt-shutdown', tier: 'pro' });
                await ingestTvl(rtad, [{ protocol: 'sd-p', chain: 'ethereum', tvl: 1 }]);
                const socks = [
                    await sioConnect(rtad, { apiKey: key, transports: ['websocket'],
                        reconnection: false }),
                    await sioConnect(rtad, { apiKey: key, transports: ['polling'],
                        reconnection: false }),
                    await sioConnect(rtad, { apiKey: key, reconnection: false }),
                ];
                await upgraded(socks[2]);
                for (const s of socks) await subscribeOk(s, { type: 'protocol', protocol: 'sd-p' });
                const wss = [await wsConnect(rtad, { apiKey: key }),
                    await wsConnect(rtad, { apiKey: key })];
                for (const w of wss) {
                    await w.request({ op: 'subscribe', type: 'protocol', protocol: 'sd-p', id: 1 },
                        'subscribed');
                }
                // all of them are live
                const r = await ingestTvl(rtad, [{ protocol: 'sd-p', chain: 'ethereum', tvl: 2 }]);
                for (const s of socks) {
                    await waitEvent(s, 'tvl_change', (p) => p.offset === r.firstOffset);
                }
                for (const w of wss) {
                    await w.inbox.waitFor((m) => m.type === 'tvl_change');
                }

                const discs = socks.map((s) => lifeEvent(s, 'disconnect', T(15000)));
                const closes = wss.map((w) => w.closed(T(15000)));
                const code = await rtad.stop();
                const tail = rtad.stderr.slice(-15).join('\n');
                assert.equal(code, 0, `exit code ${code} signal ${rtad.exitSignal}:\n${tail}`);
                const reasons = (await Promise.all(discs)).map((d) => d.reason);
                // a DISCONNECT packet or an Engine.IO close packet; a polling session's close
                // packet is delivered on its next poll (shutdown waits for it), so no client
                // should see 'transport error'
                const ok = ['io server disconnect', 'transport close'];
                assert.ok(ok.includes(reasons[0]), `websocket client: ${reasons[0]}`);
                assert.ok(ok.includes(reasons[1]), `polling client: ${reasons[1]}`);
                assert.ok(ok.includes(reasons[2]), `upgraded client: ${reasons[2]}`);
                for (const info of await Promise.all(closes)) {
                    assert.equal(info.code, 1001, `ws close: ${JSON.stringify(info)}`);
                }
                const disc = rtad.logs.filter((l) => l.msg === 'realtime disconnect');
                assert.ok(disc.length >= 5, `realtime disconnect lines: ${disc.length}\n${tail}`);
                for (const l of rtad.logs) assert.ok(!('raw' in l), `non-JSON stderr: ${l.raw}`);
            } finally {
                await closeAllClients();
                await rtad.kill9();
            }
        });
});
