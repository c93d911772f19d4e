// Fan-out is paced: one big ingest batch goes out a slice per loop turn, so a client that
// reads normally is never mistaken for a slow consumer, even when a single batch is many
// times its backlog cap. Recovery replays are paced the same way.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import {
    sioConnect, subscribeOk, waitEvent, received, wsConnect, stopClean, ingestTvl, metric, T,
} from './lib/rt.mjs';

const N = 2000; // events in one batch: ~600 KB per client against an 8 KiB backlog cap

describe('paced fan-out', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad({ env: { RTA_REALTIME_MAX_QUEUED_BYTES: '8192' } });
        ({ key } = await makeKey(rtad, { user: 'pacing', tier: 'enterprise' }));
    });
    after(async () => { await stopClean(rtad); });

    it('a reading client receives every event of a batch far larger than its backlog cap',
        async () => {
            const items = Array.from({ length: N }, (_, i) => ({ protocol: 'pace-p',
                chain: `c${i}`, tvl: 1000 }));
            await ingestTvl(rtad, items); // creates the chains (protocol_update / first values)
            const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
            await subscribeOk(s, { type: 'protocol', protocol: 'pace-p' });
            const w = await wsConnect(rtad, { apiKey: key });
            await w.request({ op: 'subscribe', type: 'protocol', protocol: 'pace-p', id: 1 },
                'subscribed');
            const r = await ingestTvl(rtad, items.map((it) => ({ ...it, tvl: 2000 })));
            assert.equal(r.events, N);
            await waitEvent(s, 'tvl_change', (p) => p.offset === r.lastOffset, T(20000));
            await w.inbox.waitFor((m) => m.type === 'tvl_change' && m.data.offset === r.lastOffset,
                T(20000));
            const got = received(s, 'tvl_change').map((x) => x.payload.offset);
            assert.equal(got.length, N);
            for (let i = 1; i < got.length; i++) assert.ok(got[i] > got[i - 1], `in order at ${i}: ${got.slice(Math.max(0, i - 3), i + 3)}`);
            assert.equal(w.inbox.items.filter((m) => m.type === 'tvl_change').length, N);
            assert.equal(await metric(rtad, 'rta_realtime_slow_consumers_total'), 0);
            assert.ok(s.connected);
        });
});
