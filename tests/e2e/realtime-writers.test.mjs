// Writer threads (server.write_threads): WebSocket writes leave the loop thread. Delivery must be
// the same with none, one or several: every event, in order, to Socket.IO and plain WebSocket
// clients, a clean close, and the write counters on /metrics.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import { eventually } from './lib/check.mjs';
import {
    sioConnect, subscribeOk, waitEvent, wsConnect, stopClean, ingestTvl, metricsText, metricSum, T,
} from './lib/rt.mjs';

const EVENTS = 60;

for (const threads of [0, 1, 3]) {
    describe(`realtime delivery with server.write_threads=${threads}`, () => {
        let rtad;
        let key;
        before(async () => {
            rtad = await startRtad({ args: ['--set', `server.write_threads=${threads}`] });
            key = (await makeKey(rtad, { user: `writers-${threads}`, tier: 'pro' })).key;
            await ingestTvl(rtad, [{ protocol: 'wr-p', chain: 'ethereum', tvl: 1000 }]);
        });
        after(async () => { await stopClean(rtad); });

        it('says how many writer threads it runs', () => {
            const rec = rtad.logs.find((l) => l.msg === 'listening');
            assert.equal(rec?.write_threads, threads, JSON.stringify(rec));
        });

        it('every event reaches Socket.IO and plain WebSocket clients once, in order', async () => {
            const clients = [];
            for (let i = 0; i < 4; i++) {
                const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
                await subscribeOk(s, { type: 'protocol', protocol: 'wr-p' });
                clients.push(s);
            }
            const w = await wsConnect(rtad, { apiKey: key });
            await w.request({ op: 'subscribe', type: 'protocol', protocol: 'wr-p', id: 1 }, 'subscribed');
            const before = metricSum(await metricsText(rtad), 'rta_network_writes_total');
            // one update per POST, so every event is its own fan-out
            for (let i = 1; i <= EVENTS; i++) {
                await ingestTvl(rtad, [{ protocol: 'wr-p', chain: 'ethereum', tvl: 1000 + i * 10 }]);
            }
            for (const s of clients) {
                await waitEvent(s, 'tvl_change', (p) => p.currentTvl === 1000 + EVENTS * 10, T(10000));
                const tvls = s.inbox.items.filter((x) => x.event === 'tvl_change')
                    .map((x) => x.args[0].currentTvl);
                assert.deepEqual(tvls, Array.from({ length: EVENTS }, (_, i) => 1010 + i * 10));
            }
            await w.inbox.waitFor((m) => m.type === 'tvl_change' && m.data.currentTvl === 1000 + EVENTS * 10,
                T(10000));
            const wtvls = w.inbox.filter((m) => m.type === 'tvl_change').map((m) => m.data.currentTvl);
            assert.deepEqual(wtvls, Array.from({ length: EVENTS }, (_, i) => 1010 + i * 10));
            await eventually(async () => {
                const t = await metricsText(rtad);
                // at least one socket write per client per event, and nothing left in flight
                assert.ok(metricSum(t, 'rta_network_writes_total') - before >= 5 * EVENTS);
                assert.equal(metricSum(t, 'rta_network_write_jobs'), 0);
            }, T(5000));
        });
    });
}
