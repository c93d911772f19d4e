// Realtime API over the plain WebSocket endpoint /v1/realtime/ws (JSON text frames): welcome,
// the subscribe / unsubscribe / ping / resume ops with ids echoed, error messages, refusals as
// HTTP answers before the upgrade, event frames {type, data}, and protocol-level closes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, generateKeyText } from './lib/rtad.mjs';
import {
    wsConnect, wsOpen, wsRefused, stopClean, ingestTvl, ingestPrices, revokeKey,
    checkTvlChange, checkPriceChange, checkError, T, withTimeout,
} from './lib/rt.mjs';

describe('realtime over plain WebSocket', () => {
    let rtad;
    let proKey;
    before(async () => {
        rtad = await startRtad({ env: {
            RTA_REALTIME_MAX_SUBSCRIPTIONS: '3',
            RTA_TIERS_FREE_WEBSOCKET_CONNECTIONS: '2',
        } });
        proKey = (await makeKey(rtad, { user: 'ws-pro', tier: 'pro' })).key;
    });
    after(async () => {
        await stopClean(rtad);
    });

    const events = (c, type, pred = () => true) =>
        c.inbox.filter((m) => m.type === type && pred(m.data)).map((m) => m.data);

    it('welcome {type, lastOffset, maxSubscriptions} on connect', async () => {
        const r = await ingestTvl(rtad, [{ protocol: 'ws-welcome', chain: 'ethereum', tvl: 1 }]);
        const c = await wsConnect(rtad, { apiKey: proKey });
        const w = c.inbox.items[0];
        assert.equal(w.type, 'welcome', JSON.stringify(c.inbox.items));
        assert.equal(w.lastOffset, r.lastOffset, JSON.stringify(w));
        assert.equal(w.maxSubscriptions, 3, JSON.stringify(w));
        c.close();
    });

    it('Authorization: Bearer works as well as ?apiKey=', async () => {
        const c = await wsConnect(rtad, { headers: { Authorization: `Bearer ${proKey}` } });
        const pong = await c.request({ op: 'ping', id: 'p1' }, 'pong');
        assert.equal(pong.id, 'p1');
        c.close();
    });

    it('subscribe / unsubscribe / ping answer with the id echoed', async () => {
        const c = await wsConnect(rtad, { apiKey: proKey });
        const s = await c.request({ op: 'subscribe', type: 'protocol', protocol: 'uniswap-v3',
            chain: 'ethereum', id: 1 }, ['subscribed', 'error']);
        assert.deepEqual(s, { type: 'subscribed', subscription: { type: 'protocol',
            protocol: 'uniswap-v3', chain: 'ethereum' }, room: 'protocol:uniswap-v3:ethereum',
        id: 1 });
        const again = await c.request({ op: 'subscribe', type: 'protocol',
            protocol: 'uniswap-v3', chain: 'ethereum', id: 'again' }, ['subscribed', 'error']);
        assert.equal(again.type, 'subscribed', JSON.stringify(again));
        assert.equal(again.existing, true, JSON.stringify(again));
        assert.equal(again.id, 'again');
        const u = await c.request({ op: 'unsubscribe', type: 'protocol', protocol: 'uniswap-v3',
            id: { n: 2 } }, ['unsubscribed', 'error']);
        assert.deepEqual(u, { type: 'unsubscribed', removed: ['protocol:uniswap-v3:ethereum'],
            id: { n: 2 } });
        const p = await c.request({ op: 'ping', id: 3 }, 'pong');
        assert.equal(p.type, 'pong');
        assert.ok(Number.isInteger(p.lastOffset) && p.lastOffset >= 0, JSON.stringify(p));
        // without id: answered without one
        const from = c.inbox.items.length;
        c.send({ op: 'ping' });
        const p2 = await c.inbox.waitFor((m) => m.type === 'pong', T(5000), 'pong', from);
        assert.ok(!('id' in p2), JSON.stringify(p2));
        c.close();
    });

    it('events are {type, data} with the documented payloads', async () => {
        await ingestTvl(rtad, [{ protocol: 'ws-ev', chain: 'ethereum', tvl: 4e9 }]);
        await ingestPrices(rtad, [{ token: 'coingecko:ws-token', price: 3000 }]);
        const c = await wsConnect(rtad, { apiKey: proKey });
        await c.request({ op: 'subscribe', type: 'protocol', protocol: 'ws-ev', id: 1 },
            'subscribed');
        await c.request({ op: 'subscribe', type: 'price', token: 'coingecko:ws-token', id: 2 },
            'subscribed');
        const r = await ingestTvl(rtad, [{ protocol: 'ws-ev', chain: 'ethereum', tvl: 4.1e9 }]);
        const m = await c.inbox.waitFor((x) => x.type === 'tvl_change');
        assert.deepEqual(Object.keys(m).sort(), ['data', 'type'], JSON.stringify(m));
        checkTvlChange(m.data, { protocol: 'ws-ev', chain: 'ethereum', previous: 4e9,
            current: 4.1e9, ts: r.timestamp, offset: r.firstOffset });
        const pr = await ingestPrices(rtad, [{ token: 'coingecko:ws-token', price: 3012.5 }]);
        const pm = await c.inbox.waitFor((x) => x.type === 'price_change');
        checkPriceChange(pm.data, { token: 'coingecko:ws-token', previous: 3000,
            current: 3012.5, ts: pr.timestamp, offset: pr.firstOffset });
        // protocol_update for a new chain, once, plus the tvl_change without previous value
        const nc = await ingestTvl(rtad, [{ protocol: 'ws-ev', chain: 'base', tvl: 7 }]);
        const pu = await c.inbox.waitFor((x) => x.type === 'protocol_update');
        assert.equal(pu.data.protocol, 'ws-ev');
        assert.equal(pu.data.chain, 'base');
        assert.deepEqual(pu.data.update?.chains_added, ['base'], JSON.stringify(pu));
        const tc = await c.inbox.waitFor((x) => x.type === 'tvl_change' && x.data.chain === 'base');
        checkTvlChange(tc.data, { protocol: 'ws-ev', chain: 'base', previous: null, current: 7,
            ts: nc.timestamp });
        c.close();
    });

    it('error messages {type:"error", error:{code, message, field, rule}}; the connection ' +
        'stays usable', async () => {
        const c = await wsConnect(rtad, { apiKey: proKey });
        const cases = [
            [{ op: 'subscribe', id: 1 }, 'invalid_subscription', 'type', ['enum', 'required']],
            [{ op: 'subscribe', type: 'nope', id: 2 }, 'invalid_subscription', 'type', 'enum'],
            [{ op: 'subscribe', type: 'protocol', id: 3 }, 'invalid_subscription', 'protocol',
                'required'],
            [{ op: 'subscribe', type: 'protocol', protocol: 'Bad Slug', id: 4 },
                'invalid_subscription', 'protocol', 'slug'],
            [{ op: 'subscribe', type: 'protocol', protocol: 'ok', color: 'red', id: 5 },
                'invalid_subscription', 'color', 'unknown_field'],
            [{ op: 'subscribe', type: 'price', token: 'nocolon', id: 6 },
                'invalid_subscription', 'token', 'token'],
            [{ op: 'subscribe', type: 'tvl_changes', threshold: 0, id: 7 },
                'invalid_subscription', 'threshold', 'range'],
            [{ op: 'subscribe', type: 'tvl_changes', threshold: 'x', id: 8 },
                'invalid_subscription', 'threshold', 'type'],
            [{ op: 'dance', id: 9 }, 'invalid_message'],
            [{ type: 'protocol', protocol: 'x', id: 10 }, 'invalid_message'],
            [{ op: 'resume', offset: -1, id: 11 }, 'invalid_message'],
            [{ op: 'resume', offset: 'abc', id: 12 }, 'invalid_message'],
        ];
        for (const [msg, code, field, rule] of cases) {
            const e = await c.request(msg, 'error');
            assert.deepEqual(Object.keys(e).sort(), ['error', 'id', 'type'], JSON.stringify(e));
            checkError(e.error, code, field, rule);
        }
        for (const raw of ['not json', '[1,2]', '{"op":']) {
            const from = c.inbox.items.length;
            c.send(raw);
            const e = await c.inbox.waitFor((m) => m.type === 'error', T(5000),
                `error for ${raw}`, from);
            checkError(e.error, 'invalid_message');
        }
        // a binary frame is not a valid message either
        const from = c.inbox.items.length;
        c.ws.send(Buffer.from('{"op":"ping"}'), { binary: true });
        const e = await c.inbox.waitFor((m) => m.type === 'error', T(5000), 'binary error',
            from);
        checkError(e.error, 'invalid_message');
        const p = await c.request({ op: 'ping', id: 'still' }, 'pong');
        assert.equal(p.id, 'still');
        assert.equal(c.closeInfo, null, 'the connection stays open');
        c.close();
    });

    it('tier_not_allowed for a free key on threshold feeds; subscription_limit at 3',
        async () => {
            const k = await makeKey(rtad, { user: 'ws-free', tier: 'free' });
            const c = await wsConnect(rtad, { apiKey: k.key });
            for (const type of ['tvl_changes', 'price_changes']) {
                const e = await c.request({ op: 'subscribe', type, threshold: 0.05, id: type },
                    ['error', 'subscribed']);
                assert.equal(e.type, 'error', JSON.stringify(e));
                checkError(e.error, 'tier_not_allowed');
            }
            for (const p of ['a', 'b', 'c']) {
                const s = await c.request({ op: 'subscribe', type: 'protocol', protocol: `lim-${p}`,
                    id: p }, ['error', 'subscribed']);
                assert.equal(s.type, 'subscribed', JSON.stringify(s));
            }
            const e = await c.request({ op: 'subscribe', type: 'price',
                token: 'coingecko:ethereum', id: 'd' }, ['error', 'subscribed']);
            assert.equal(e.type, 'error', JSON.stringify(e));
            checkError(e.error, 'subscription_limit');
            c.close();
        });

    it('resume {offset} replays the matching events after it, in order, then resumed',
        async () => {
            await ingestTvl(rtad, [{ protocol: 'ws-res', chain: 'ethereum', tvl: 100 },
                { protocol: 'ws-res-other', chain: 'ethereum', tvl: 100 }]);
            const start = (await ingestTvl(rtad, [{ protocol: 'ws-res', chain: 'ethereum',
                tvl: 101 }])).lastOffset;
            const want = [];
            for (let i = 2; i <= 5; i++) {
                const r = await ingestTvl(rtad, [{ protocol: 'ws-res-other', chain: 'ethereum',
                    tvl: 100 + i }, { protocol: 'ws-res', chain: 'ethereum', tvl: 100 + i }]);
                want.push(r.lastOffset); // ws-res is the second item of each batch
            }
            const c = await wsConnect(rtad, { apiKey: proKey });
            await c.request({ op: 'subscribe', type: 'protocol', protocol: 'ws-res', id: 1 },
                'subscribed');
            const from = c.inbox.items.length;
            const done = await c.request({ op: 'resume', offset: start, id: 'r' },
                ['resumed', 'error']);
            assert.equal(done.type, 'resumed', JSON.stringify(done));
            assert.equal(done.id, 'r');
            assert.equal(done.complete, true, JSON.stringify(done));
            assert.equal(done.replayed, 4, JSON.stringify(done));
            assert.equal(done.fromOffset, start, JSON.stringify(done));
            assert.ok(done.lastOffset >= want[want.length - 1], JSON.stringify(done));
            const replayed = c.inbox.items.slice(from).filter((m) => m.type === 'tvl_change');
            assert.deepEqual(replayed.map((m) => m.data.offset), want);
            const idx = c.inbox.items.indexOf(done);
            assert.ok(c.inbox.items.slice(idx).every((m) => m.type !== 'tvl_change'),
                'replayed events come before "resumed"');
            checkTvlChange(replayed[0].data, { protocol: 'ws-res', chain: 'ethereum',
                previous: 101, current: 102 });
            // and live events follow
            const live = await ingestTvl(rtad, [{ protocol: 'ws-res', chain: 'ethereum',
                tvl: 200 }]);
            await c.inbox.waitFor((m) => m.type === 'tvl_change' &&
                m.data.offset === live.firstOffset);
            c.close();
        });

    describe('refusals before the upgrade', () => {
        it('401 with missing/malformed/invalid/revoked codes', async () => {
            const none = await wsRefused(rtad, {});
            assert.equal(none.status, 401);
            assert.equal(none.json?.error?.code, 'missing_api_key', none.text);
            const bad = await wsRefused(rtad, { apiKey: 'garbage' });
            assert.equal(bad.status, 401);
            assert.equal(bad.json?.error?.code, 'malformed_api_key', bad.text);
            const unknown = await wsRefused(rtad, { apiKey: generateKeyText() });
            assert.equal(unknown.status, 401);
            assert.equal(unknown.json?.error?.code, 'invalid_api_key', unknown.text);
            const k = await makeKey(rtad, { user: 'ws-revoked', tier: 'pro' });
            (await wsConnect(rtad, { apiKey: k.key })).close();
            await revokeKey(rtad, k.id);
            const rev = await wsRefused(rtad, { apiKey: k.key });
            assert.equal(rev.status, 401);
            assert.equal(rev.json?.error?.code, 'revoked_api_key', rev.text);
        });

        it('403 forbidden for a role without subscribe', async () => {
            const k = await makeKey(rtad, { user: 'ws-ingest', tier: 'pro', role: 'ingest' });
            const r = await wsRefused(rtad, { apiKey: k.key });
            assert.equal(r.status, 403);
            assert.equal(r.json?.error?.code, 'forbidden', r.text);
        });

        it('429 too_many_connections past the tier limit; a slot frees on close', async () => {
            const k = await makeKey(rtad, { user: 'ws-limit', tier: 'free' });
            const a = await wsConnect(rtad, { apiKey: k.key });
            const b = await wsConnect(rtad, { apiKey: k.key });
            const r = await wsRefused(rtad, { apiKey: k.key });
            assert.equal(r.status, 429);
            assert.equal(r.json?.error?.code, 'too_many_connections', r.text);
            a.ws.close(1000);
            await a.closed();
            const deadline = Date.now() + T(5000);
            for (;;) {
                try {
                    const c = await wsConnect(rtad, { apiKey: k.key });
                    c.close();
                    break;
                } catch (e) {
                    if (e.status !== 429 || Date.now() > deadline) throw e;
                    await new Promise((res) => setTimeout(res, 100));
                }
            }
            b.close();
        });
    });

    describe('closes', () => {
        it('a normal close is answered with 1000', async () => {
            const c = await wsConnect(rtad, { apiKey: proKey });
            c.ws.close(1000, 'bye');
            const info = await c.closed();
            assert.equal(info.code, 1000);
        });

        it('a message over 64 KiB closes with 1009', async () => {
            const c = await wsConnect(rtad, { apiKey: proKey });
            c.send({ op: 'ping', pad: 'x'.repeat(70 * 1024) });
            const info = await c.closed();
            assert.equal(info.code, 1009, JSON.stringify(info));
        });

        it('invalid UTF-8 in a text frame closes with 1007', async () => {
            const c = await wsConnect(rtad, { apiKey: proKey });
            c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
            const info = await c.closed();
            assert.equal(info.code, 1007, JSON.stringify(info));
        });

        it('WebSocket pings are answered with pongs', async () => {
            const c = await wsConnect(rtad, { apiKey: proKey });
            const pong = withTimeout(new Promise((r) => c.ws.once('pong', (d) => r(d))), T(5000),
                'a pong frame');
            c.ws.ping(Buffer.from('hi'));
            assert.equal((await pong).toString(), 'hi');
            c.close();
        });
    });
});
