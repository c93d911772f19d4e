// Missed-event recovery: Socket.IO connection state recovery (pid + offset on reconnect,
// socket.recovered, replay in order, `recovery` event, then live events without gap or
// duplicate) and the plain WebSocket {"op":"resume"}; what is not recovered (a deliberate
// disconnect, an expired window) and what is reported incomplete (events gone from the log).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, keyId, sleep } from './lib/rtad.mjs';
import {
    sio, sioConnect, connected, subscribeOk, upgraded, waitEvent, received,
    lifeEvent, wsConnect, stopClean, ingestTvl, checkTvlChange, T,
} from './lib/rt.mjs';

/** Waits (bounded, best effort) for the server to log the disconnect of a key's client. */
async function serverSawDisconnect(rtad, key, since) {
    const id = keyId(key);
    try {
        await rtad.waitForLog((l) => rtad.logs.indexOf(l) >= since &&
            l.msg === 'realtime disconnect' && l.key_id === id, T(3000));
    } catch {
        await sleep(T(300)); // the log line is checked elsewhere; do not fail recovery on it
    }
}

const offsetsOf = (s) => received(s, 'tvl_change').map((x) => x.payload.offset);

function assertStrictlyIncreasing(list, what) {
    for (let i = 1; i < list.length; i++) {
        assert.ok(list[i] > list[i - 1], `${what} not strictly increasing (duplicate or ` +
            `reordered): ${list}`);
    }
}

describe('Socket.IO connection state recovery', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad();
        key = (await makeKey(rtad, { user: 'rec', tier: 'pro' })).key;
        await ingestTvl(rtad, [
            { protocol: 'rec-p', chain: 'ethereum', tvl: 100 },
            { protocol: 'rec-other', chain: 'ethereum', tvl: 100 },
            { protocol: 'rec-auto', chain: 'ethereum', tvl: 100 },
            { protocol: 'rec-not', chain: 'ethereum', tvl: 100 },
        ]);
    });
    after(async () => {
        await stopClean(rtad);
    });

    it('the server sends a pid on CONNECT and offsets as the last event argument',
        async () => {
            const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
            assert.equal(typeof s._pid, 'string',
                'no pid in the CONNECT answer: socket.io-client will not attempt recovery');
            assert.ok(s._pid.length > 0);
            await subscribeOk(s, { type: 'protocol', protocol: 'rec-other' });
            const r = await ingestTvl(rtad, [{ protocol: 'rec-other', chain: 'ethereum',
                tvl: 99 }]);
            const { args } = await waitEvent(s, 'tvl_change');
            assert.equal(args[args.length - 1], String(r.firstOffset));
            assert.equal(s._lastOffset, String(r.firstOffset),
                'socket.io-client tracks the offset');
            s.disconnect();
        });

    it('a dropped connection (socket destroyed) reconnects with socket.recovered, missed ' +
        'events in order, recovery {complete:true}, then live events, no duplicate',
    async () => {
        const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
        const firstId = s.id;
        await subscribeOk(s, { type: 'protocol', protocol: 'rec-p' });
        const live1 = await ingestTvl(rtad, [{ protocol: 'rec-p', chain: 'ethereum',
            tvl: 101 }]);
        await waitEvent(s, 'tvl_change', (p) => p.offset === live1.firstOffset);

        // drop the TCP connection under the client, without reconnecting yet
        s.io.reconnection(false);
        const lifeFrom = s.life.items.length;
        const logFrom = rtad.logs.length;
        s.io.engine.transport.ws._socket.destroy();
        const d = await lifeEvent(s, 'disconnect', T(5000), lifeFrom);
        assert.equal(d.reason, 'transport close');
        await serverSawDisconnect(rtad, key, logFrom);

        const missed = [];
        for (let i = 1; i <= 3; i++) {
            const r = await ingestTvl(rtad, [{ protocol: 'rec-other', chain: 'ethereum',
                tvl: 200 + i }, { protocol: 'rec-p', chain: 'ethereum', tvl: 101 + i }]);
            missed.push(r.lastOffset);
        }
        s.io.reconnection(true);
        s.connect();
        await lifeEvent(s, 'connect', T(10000), lifeFrom);
        assert.equal(s.recovered, true, 'socket.recovered');
        const rec = await waitEvent(s, 'recovery');
        assert.equal(rec.payload.complete, true, JSON.stringify(rec.payload));
        assert.equal(rec.payload.replayed, 3, JSON.stringify(rec.payload));
        assert.equal(rec.payload.fromOffset, live1.firstOffset, JSON.stringify(rec.payload));
        assert.ok(rec.payload.lastOffset >= missed[2], JSON.stringify(rec.payload));
        assert.deepEqual(offsetsOf(s), [live1.firstOffset, ...missed]);
        const evs = received(s, 'tvl_change');
        checkTvlChange(evs[1].payload, { protocol: 'rec-p', chain: 'ethereum', previous: 101,
            current: 102 });
        // replayed events come before the recovery notice
        const idxRecovery = s.inbox.items.findIndex((x) => x.event === 'recovery');
        const idxLastReplay = s.inbox.items.findIndex((x) => x.event === 'tvl_change' &&
            x.args[0].offset === missed[2]);
        assert.ok(idxLastReplay < idxRecovery, 'replay before recovery');

        const live2 = await ingestTvl(rtad, [{ protocol: 'rec-p', chain: 'ethereum',
            tvl: 300 }]);
        await waitEvent(s, 'tvl_change', (p) => p.offset === live2.firstOffset);
        assert.deepEqual(offsetsOf(s), [live1.firstOffset, ...missed, live2.firstOffset]);
        // the subscription itself was restored
        const again = await subscribeOk(s, { type: 'protocol', protocol: 'rec-p' });
        assert.equal(again.existing, true, JSON.stringify(again));
        // as in socket.io (and docs/modules/socketio.md): the CONNECT answer repeats the sid
        assert.equal(s.id, firstId, 'the recovered socket keeps its id');
        s.disconnect();
    });

    it('automatic reconnection after socket.io.engine.close() (default transports) ' +
        'recovers with no gap or duplicate', async () => {
        const s = await sioConnect(rtad, { apiKey: key });
        await upgraded(s);
        await subscribeOk(s, { type: 'protocol', protocol: 'rec-auto' });
        const before = await ingestTvl(rtad, [{ protocol: 'rec-auto', chain: 'ethereum',
            tvl: 101 }]);
        await waitEvent(s, 'tvl_change', (p) => p.offset === before.firstOffset);
        const lifeFrom = s.life.items.length;
        s.io.engine.close();
        await lifeEvent(s, 'disconnect', T(5000), lifeFrom);
        const want = [before.firstOffset];
        for (let i = 0; i < 5; i++) {
            const r = await ingestTvl(rtad, [{ protocol: 'rec-auto', chain: 'ethereum',
                tvl: 110 + i }]);
            want.push(r.firstOffset);
        }
        await lifeEvent(s, 'connect', T(10000), lifeFrom);
        assert.equal(s.recovered, true, 'socket.recovered');
        const rec = await waitEvent(s, 'recovery');
        assert.equal(rec.payload.complete, true, JSON.stringify(rec.payload));
        const after1 = await ingestTvl(rtad, [{ protocol: 'rec-auto', chain: 'ethereum',
            tvl: 500 }]);
        want.push(after1.firstOffset);
        await waitEvent(s, 'tvl_change', (p) => p.offset === after1.firstOffset);
        const got = offsetsOf(s);
        assertStrictlyIncreasing(got, 'offsets');
        assert.deepEqual(got, want);
        s.disconnect();
    });

    it('a deliberate disconnect() is not recovered: new session, no replay', async () => {
        const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
        await subscribeOk(s, { type: 'protocol', protocol: 'rec-not' });
        const r1 = await ingestTvl(rtad, [{ protocol: 'rec-not', chain: 'ethereum',
            tvl: 101 }]);
        await waitEvent(s, 'tvl_change', (p) => p.offset === r1.firstOffset);
        const oldId = s.id;
        const lifeFrom = s.life.items.length;
        s.disconnect();
        await lifeEvent(s, 'disconnect', T(5000), lifeFrom);
        await ingestTvl(rtad, [{ protocol: 'rec-not', chain: 'ethereum', tvl: 102 }]);
        s.connect();
        await lifeEvent(s, 'connect', T(10000), lifeFrom);
        assert.equal(s.recovered, false, 'socket.recovered after a client disconnect');
        assert.notEqual(s.id, oldId);
        // the subscription is gone with the session: subscribing again is not "existing"
        const ack = await subscribeOk(s, { type: 'protocol', protocol: 'rec-not' });
        assert.ok(!ack.existing, JSON.stringify(ack));
        const r3 = await ingestTvl(rtad, [{ protocol: 'rec-not', chain: 'ethereum',
            tvl: 103 }]);
        await waitEvent(s, 'tvl_change', (p) => p.offset === r3.firstOffset);
        assert.deepEqual(offsetsOf(s), [r1.firstOffset, r3.firstOffset]);
        assert.deepEqual(received(s, 'recovery'), []);
        s.disconnect();
    });

    it('a saved session belongs to its key: another key cannot take it over', async () => {
        const other = (await makeKey(rtad, { user: 'rec-thief', tier: 'pro' })).key;
        const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
        await subscribeOk(s, { type: 'protocol', protocol: 'rec-other' });
        const r = await ingestTvl(rtad, [{ protocol: 'rec-other', chain: 'ethereum',
            tvl: 50 }]);
        await waitEvent(s, 'tvl_change', (p) => p.offset === r.firstOffset);
        const pid = s._pid;
        s.io.reconnection(false);
        const logFrom = rtad.logs.length;
        s.io.engine.transport.ws._socket.destroy();
        await lifeEvent(s, 'disconnect');
        await serverSawDisconnect(rtad, key, logFrom);
        const thief = sio(rtad, { transports: ['websocket'], reconnection: false,
            auth: { apiKey: other, pid, offset: String(r.firstOffset) } });
        await connected(thief);
        assert.equal(thief.recovered, false);
        assert.notEqual(thief._pid, pid, 'the pid of another key was handed out');
        thief.disconnect();
        s.disconnect();
    });
});

describe('plain WebSocket resume', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad();
        key = (await makeKey(rtad, { user: 'rec-ws', tier: 'pro' })).key;
        await ingestTvl(rtad, [{ protocol: 'wsr-p', chain: 'ethereum', tvl: 100 },
            { protocol: 'wsr-q', chain: 'ethereum', tvl: 100 }]);
    });
    after(async () => {
        await stopClean(rtad);
    });

    it('a new connection resuming from the last offset it saw gets the missed events in ' +
        'order, then live ones', async () => {
        const a = await wsConnect(rtad, { apiKey: key });
        await a.request({ op: 'subscribe', type: 'protocol', protocol: 'wsr-p', id: 1 },
            'subscribed');
        const r1 = await ingestTvl(rtad, [{ protocol: 'wsr-p', chain: 'ethereum', tvl: 101 }]);
        const m = await a.inbox.waitFor((x) => x.type === 'tvl_change');
        assert.equal(m.data.offset, r1.firstOffset);
        a.ws.close(1000);
        await a.closed();

        const missed = [];
        for (let i = 2; i <= 4; i++) {
            const r = await ingestTvl(rtad, [{ protocol: 'wsr-p', chain: 'ethereum',
                tvl: 100 + i }, { protocol: 'wsr-q', chain: 'ethereum', tvl: 100 + i }]);
            missed.push(r.firstOffset);
        }
        const b = await wsConnect(rtad, { apiKey: key });
        await b.request({ op: 'subscribe', type: 'protocol', protocol: 'wsr-p', id: 1 },
            'subscribed');
        const from = b.inbox.items.length;
        const done = await b.request({ op: 'resume', offset: m.data.offset, id: 2 },
            ['resumed', 'error']);
        assert.equal(done.type, 'resumed', JSON.stringify(done));
        assert.equal(done.complete, true);
        assert.equal(done.replayed, 3);
        assert.equal(done.fromOffset, r1.firstOffset);
        const got = b.inbox.items.slice(from).filter((x) => x.type === 'tvl_change');
        assert.deepEqual(got.map((x) => x.data.offset), missed);
        checkTvlChange(got[0].data, { protocol: 'wsr-p', chain: 'ethereum', previous: 101,
            current: 102 });
        const live = await ingestTvl(rtad, [{ protocol: 'wsr-p', chain: 'ethereum', tvl: 9 }]);
        await b.inbox.waitFor((x) => x.type === 'tvl_change' && x.data.offset === live.firstOffset);
        const all = b.inbox.filter((x) => x.type === 'tvl_change').map((x) => x.data.offset);
        assert.deepEqual(all, [...missed, live.firstOffset]);
        b.close();
    });

    it('resume from 0 replays every matching event still in the log; resuming at the ' +
        'head replays nothing', async () => {
        const c = await wsConnect(rtad, { apiKey: key });
        await c.request({ op: 'subscribe', type: 'protocol', protocol: 'wsr-q', id: 1 },
            'subscribed');
        const from = c.inbox.items.length;
        const done = await c.request({ op: 'resume', offset: 0, id: 2 }, ['resumed', 'error']);
        assert.equal(done.type, 'resumed', JSON.stringify(done));
        assert.equal(done.complete, true, JSON.stringify(done));
        const got = c.inbox.items.slice(from).filter((x) => x.type !== 'resumed');
        // protocol_update(s) of the new protocol, then its three tvl_change
        assert.equal(done.replayed, got.length, JSON.stringify(done));
        assert.equal(got.filter((x) => x.type === 'tvl_change').length, 3, JSON.stringify(got));
        assert.equal(got[0].type, 'protocol_update', JSON.stringify(got));
        assert.ok(got.every((x) => x.data.protocol === 'wsr-q'), JSON.stringify(got));
        assertStrictlyIncreasing(got.map((x) => x.data.offset), 'replayed offsets');
        const head = await c.request({ op: 'resume', offset: done.lastOffset, id: 3 },
            ['resumed', 'error']);
        assert.equal(head.replayed, 0, JSON.stringify(head));
        assert.equal(head.complete, true, JSON.stringify(head));
        c.close();
    });
});

describe('recovery limits', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad({ env: { RTA_EVENTS_LOG_MAX: '16',
            RTA_REALTIME_RECOVERY_WINDOW_MS: String(T(3000)) } });
        key = (await makeKey(rtad, { user: 'rec-lim', tier: 'pro' })).key;
        const chains = Array.from({ length: 40 }, (_, i) => ({ protocol: 'gap-p',
            chain: `c${i}`, tvl: 100 }));
        await ingestTvl(rtad, chains);
    });
    after(async () => {
        await stopClean(rtad);
    });

    const bump = (tvl) => Array.from({ length: 40 }, (_, i) => ({ protocol: 'gap-p',
        chain: `c${i}`, tvl }));

    it('plain WS resume past the event log: complete:false', async () => {
        const r0 = await ingestTvl(rtad, bump(101));
        const c = await wsConnect(rtad, { apiKey: key });
        await c.request({ op: 'subscribe', type: 'protocol', protocol: 'gap-p', id: 1 },
            'subscribed');
        await ingestTvl(rtad, bump(102));
        const done = await c.request({ op: 'resume', offset: r0.firstOffset, id: 2 },
            ['resumed', 'error']);
        assert.equal(done.type, 'resumed', JSON.stringify(done));
        assert.equal(done.complete, false, JSON.stringify(done));
        assert.ok(done.replayed <= 16, JSON.stringify(done));
        c.close();
    });

    it('Socket.IO recovery past the event log: recovered, recovery {complete:false}',
        async () => {
            const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
            await subscribeOk(s, { type: 'protocol', protocol: 'gap-p', chain: 'c0' });
            const r = await ingestTvl(rtad, bump(200));
            await waitEvent(s, 'tvl_change', (p) => p.offset === r.firstOffset);
            s.io.reconnection(false);
            const lifeFrom = s.life.items.length;
            const logFrom = rtad.logs.length;
            s.io.engine.transport.ws._socket.destroy();
            await lifeEvent(s, 'disconnect', T(5000), lifeFrom);
            await serverSawDisconnect(rtad, key, logFrom);
            await ingestTvl(rtad, bump(201));
            await ingestTvl(rtad, bump(202)); // c0's first missed event is out of the log now
            s.connect();
            await lifeEvent(s, 'connect', T(10000), lifeFrom);
            assert.equal(s.recovered, true);
            const rec = await waitEvent(s, 'recovery');
            assert.equal(rec.payload.complete, false, JSON.stringify(rec.payload));
            s.disconnect();
        });

    it('after realtime.recovery_window_ms the session is not recovered', async () => {
        const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
        await subscribeOk(s, { type: 'protocol', protocol: 'gap-p', chain: 'c1' });
        const r = await ingestTvl(rtad, bump(300));
        await waitEvent(s, 'tvl_change', (p) => p.chain === 'c1' && p.offset >= r.firstOffset);
        s.io.reconnection(false);
        const lifeFrom = s.life.items.length;
        s.io.engine.transport.ws._socket.destroy();
        await lifeEvent(s, 'disconnect', T(5000), lifeFrom);
        await sleep(T(3000) + 1500);
        s.connect();
        await lifeEvent(s, 'connect', T(10000), lifeFrom);
        assert.equal(s.recovered, false);
        assert.deepEqual(received(s, 'recovery'), []);
        s.disconnect();
    });
});
