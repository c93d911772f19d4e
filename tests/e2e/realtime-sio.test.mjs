// Realtime API over Socket.IO (namespace /v1/realtime), as a socket.io-client 4 user sees it:
// the spec's client code on both transports, auth refusals, every subscription type with its
// errors (ack and rta_error), threshold filtering, price feeds, tier and subscription limits,
// unsubscribe semantics, and one delivery per event.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, generateKeyText } from './lib/rtad.mjs';
import {
    io, track, sio, sioConnect, connected, connectError, emitAck, subscribeOk, upgraded,
    waitEvent, received, stopClean, ingestTvl, ingestPrices, revokeKey, checkTvlChange,
    checkPriceChange, checkError, T,
} from './lib/rt.mjs';

describe('realtime over Socket.IO', () => {
    let rtad;
    let proKey;
    before(async () => {
        rtad = await startRtad({ env: {
            RTA_REALTIME_MAX_SUBSCRIPTIONS: '3',
            RTA_TIERS_FREE_WEBSOCKET_CONNECTIONS: '2',
        } });
        proKey = (await makeKey(rtad, { user: 'rt-pro', tier: 'pro' })).key;
    });
    after(async () => {
        await stopClean(rtad);
    });

    const noErrors = (socket) => assert.deepEqual(received(socket, 'rta_error'), [],
        'unexpected rta_error events');

    describe('the spec client code', () => {
        it('default transports: polling, upgrade to websocket, tvl_change with the ' +
            'documented payload', async () => {
            await ingestTvl(rtad, [{ protocol: 'uniswap-v3', chain: 'ethereum', tvl: 4.0e9 }]);
            // exactly the documentation's snippet (URL with ws://, auth.apiKey, no options)
            const socket = io(`ws://127.0.0.1:${rtad.port}/v1/realtime`,
                { auth: { apiKey: proKey } });
            track(socket);
            await connected(socket);
            await upgraded(socket);
            assert.equal(socket.io.engine.transport.name, 'websocket');
            socket.emit('subscribe', { type: 'protocol', protocol: 'uniswap-v3',
                chain: 'ethereum' });
            const ack = await emitAck(socket, 'subscribe', { type: 'tvl_changes',
                threshold: 0.05 });
            assert.equal(ack.ok, true, JSON.stringify(ack));
            assert.equal(ack.subscription.type, 'tvl_changes', JSON.stringify(ack));
            assert.equal(ack.subscription.threshold, 0.05, JSON.stringify(ack));
            assert.equal(typeof ack.room, 'string', JSON.stringify(ack));

            // +2.5%: below the 0.05 feed, so only the (unacknowledged) protocol room delivers
            const r = await ingestTvl(rtad, [{ protocol: 'uniswap-v3', chain: 'ethereum',
                tvl: 4.1e9 }]);
            assert.equal(r.events, 1, JSON.stringify(r));
            const { payload, args } = await waitEvent(socket, 'tvl_change');
            checkTvlChange(payload, { protocol: 'uniswap-v3', chain: 'ethereum',
                previous: 4.0e9, current: 4.1e9, ts: r.timestamp, offset: r.firstOffset });
            assert.equal(args.length, 2, `args: ${JSON.stringify(args)}`);
            assert.equal(args[1], String(payload.offset),
                'the last argument is the offset as a string');
            noErrors(socket);
        });

        it("transports: ['websocket'] connects directly and receives events", async () => {
            await ingestTvl(rtad, [{ protocol: 'ws-only', chain: 'base', tvl: 1000 }]);
            const socket = io(`ws://127.0.0.1:${rtad.port}/v1/realtime`,
                { auth: { apiKey: proKey }, transports: ['websocket'] });
            track(socket);
            await connected(socket);
            assert.equal(socket.io.engine.transport.name, 'websocket');
            const ack = await subscribeOk(socket, { type: 'protocol', protocol: 'ws-only',
                chain: 'base' });
            assert.deepEqual(ack.subscription, { type: 'protocol', protocol: 'ws-only',
                chain: 'base' });
            assert.equal(ack.room, 'protocol:ws-only:base');
            const r = await ingestTvl(rtad, [{ protocol: 'ws-only', chain: 'base', tvl: 900 }]);
            const { payload } = await waitEvent(socket, 'tvl_change');
            checkTvlChange(payload, { protocol: 'ws-only', chain: 'base', previous: 1000,
                current: 900, ts: r.timestamp, offset: r.firstOffset });
            assert.ok(payload.changePercent < 0, 'a decrease is negative');
        });

        it('the key may also come as ?apiKey= or as Authorization: Bearer (polling)',
            async () => {
                const a = sio(rtad, { nsp: `/v1/realtime?apiKey=${proKey}`,
                    transports: ['websocket'] });
                await connected(a);
                const b = sio(rtad, { transports: ['polling'],
                    extraHeaders: { Authorization: `Bearer ${proKey}` } });
                await connected(b);
                await subscribeOk(b, { type: 'protocol', protocol: 'uniswap-v3' });
                a.disconnect();
                b.disconnect();
            });
    });

    describe('the main namespace', () => {
        it('"/" connects without a key, as on any Socket.IO server, and points to /v1/realtime',
            async () => {
                const root = await sioConnect(rtad, { nsp: '/', transports: ['websocket'] });
                assert.equal(root.connected, true);
                const ack = await emitAck(root, 'subscribe', { type: 'protocol', protocol: 'x' });
                assert.equal(ack.ok, false, JSON.stringify(ack));
                checkError(ack.error, 'wrong_namespace', 'namespace');
                assert.match(ack.error.message, /\/v1\/realtime/);
                root.emit('subscribe', { type: 'protocol', protocol: 'x' }); // no ack: rta_error
                const { payload } = await waitEvent(root, 'rta_error');
                checkError(payload, 'wrong_namespace', 'namespace');
                assert.equal(payload.event, 'subscribe');
                // a client with a key joins the realtime namespace as usual
                const rt = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                await subscribeOk(rt, { type: 'protocol', protocol: 'root-then-rt' });
                root.disconnect();
                rt.disconnect();
            });
    });

    describe('connection refusals', () => {
        async function refused(opts) {
            const s = sio(rtad, { reconnection: false, transports: ['websocket'], ...opts });
            const err = await connectError(s);
            assert.equal(s.connected, false);
            s.disconnect();
            return err;
        }

        it('no key, garbage, unknown and revoked keys: unauthorized with data.code',
            async () => {
                const none = await refused({});
                assert.equal(none.message, 'unauthorized');
                assert.equal(none.data?.code, 'missing_api_key', JSON.stringify(none.data));

                const garbage = await refused({ apiKey: 'garbage' });
                assert.equal(garbage.message, 'unauthorized');
                assert.equal(garbage.data?.code, 'malformed_api_key',
                    JSON.stringify(garbage.data));

                const unknown = await refused({ apiKey: generateKeyText() });
                assert.equal(unknown.message, 'unauthorized');
                assert.equal(unknown.data?.code, 'invalid_api_key', JSON.stringify(unknown.data));

                const k = await makeKey(rtad, { user: 'rt-revoked', tier: 'pro' });
                const ok = await sioConnect(rtad, { apiKey: k.key, transports: ['websocket'] });
                ok.disconnect();
                await revokeKey(rtad, k.id);
                const revoked = await refused({ apiKey: k.key });
                assert.equal(revoked.message, 'unauthorized');
                assert.equal(revoked.data?.code, 'revoked_api_key', JSON.stringify(revoked.data));
            });

        it('the same refusals on the default (polling) transport', async () => {
            const s = sio(rtad, { reconnection: false, apiKey: 'garbage' });
            const err = await connectError(s);
            assert.equal(err.message, 'unauthorized');
            assert.equal(err.data?.code, 'malformed_api_key');
            s.disconnect();
        });

        it("a role without subscribe (ingest) is 'forbidden'", async () => {
            const k = await makeKey(rtad, { user: 'rt-ingest', tier: 'pro', role: 'ingest' });
            const err = await refused({ apiKey: k.key });
            assert.equal(err.message, 'forbidden');
            assert.equal(err.data?.code, 'forbidden', JSON.stringify(err.data));
        });

        it('roles reader and admin may subscribe', async () => {
            const k = await makeKey(rtad, { user: 'rt-reader', tier: 'free', role: 'reader' });
            const a = await sioConnect(rtad, { apiKey: k.key, transports: ['websocket'] });
            await subscribeOk(a, { type: 'protocol', protocol: 'uniswap-v3' });
            const b = await sioConnect(rtad, { apiKey: rtad.adminKey,
                transports: ['websocket'] });
            await subscribeOk(b, { type: 'protocol', protocol: 'uniswap-v3' });
            a.disconnect();
            b.disconnect();
        });

        it("the tier's websocket_connections limit: the third is too_many_connections " +
            'and a slot frees on disconnect', async () => {
            const k = await makeKey(rtad, { user: 'rt-limit', tier: 'free' });
            const a = await sioConnect(rtad, { apiKey: k.key, transports: ['websocket'] });
            const b = await sioConnect(rtad, { apiKey: k.key }); // polling counts too
            const err = await refused({ apiKey: k.key });
            assert.equal(err.message, 'too_many_connections');
            assert.equal(err.data?.code, 'too_many_connections', JSON.stringify(err.data));
            assert.equal(err.data?.limit, 2, JSON.stringify(err.data));
            // another key is not affected
            const other = await makeKey(rtad, { user: 'rt-limit-2', tier: 'free' });
            const c = await sioConnect(rtad, { apiKey: other.key, transports: ['websocket'] });
            c.disconnect();
            a.disconnect();
            // once the server has seen the disconnect, a new connection is accepted
            const deadline = Date.now() + T(5000);
            for (;;) {
                const s = sio(rtad, { apiKey: k.key, reconnection: false,
                    transports: ['websocket'] });
                try {
                    await connected(s);
                    s.disconnect();
                    break;
                } catch (e) {
                    s.disconnect();
                    if (Date.now() > deadline) throw e;
                    await new Promise((r) => setTimeout(r, 100));
                }
            }
            b.disconnect();
        });
    });

    describe('subscriptions', () => {
        let socket;
        before(async () => {
            socket = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
        });
        after(() => socket?.disconnect());

        const invalid = [
            [{}, 'type', ['enum', 'required']],
            [{ type: 'bogus' }, 'type', 'enum'],
            [{ type: 5 }, 'type', ['type', 'enum']],
            [{ type: 'protocol' }, 'protocol', 'required'],
            [{ type: 'protocol', protocol: 'Uniswap V3' }, 'protocol', 'slug'],
            [{ type: 'protocol', protocol: 'uniswap-v3', chain: 'Ethereum!' }, 'chain', 'slug'],
            [{ type: 'protocol', protocol: 'uniswap-v3', chain: 5 }, 'chain', 'type'],
            [{ type: 'protocol', protocol: 'uniswap-v3', extra: 1 }, 'extra', 'unknown_field'],
            [{ type: 'protocol', protocol: 'uniswap-v3', threshold: 0.1 }, 'threshold',
                'unknown_field'],
            [{ type: 'price' }, 'token', 'required'],
            [{ type: 'price', token: 'ETH' }, 'token', 'token'],
            [{ type: 'tvl_changes' }, 'threshold', 'required'],
            [{ type: 'tvl_changes', threshold: 0 }, 'threshold', 'range'],
            [{ type: 'tvl_changes', threshold: -0.1 }, 'threshold', 'range'],
            [{ type: 'tvl_changes', threshold: 100.5 }, 'threshold', 'range'],
            [{ type: 'tvl_changes', threshold: '0.05' }, 'threshold', 'type'],
            [{ type: 'price_changes', threshold: 0 }, 'threshold', 'range'],
            [{ type: 'price_changes', threshold: 0.01, token: 'coingecko:x' }, 'token',
                'unknown_field'],
        ];

        it('invalid payloads answer {ok:false, error:{code, message, field, rule}} in the ack',
            async () => {
                for (const [payload, field, rule] of invalid) {
                    const ack = await emitAck(socket, 'subscribe', payload);
                    assert.equal(ack?.ok, false, `${JSON.stringify(payload)} -> ${
                        JSON.stringify(ack)}`);
                    checkError(ack.error, 'invalid_subscription', field, rule);
                }
                const ack = await emitAck(socket, 'subscribe', 'not an object');
                assert.equal(ack?.ok, false, JSON.stringify(ack));
                checkError(ack.error, 'invalid_subscription');
            });

        it('without an ack, errors arrive as rta_error {code, message, field, rule, event}',
            async () => {
                for (const [payload, field, rule] of invalid.slice(0, 6)) {
                    const from = socket.inbox.items.length;
                    socket.emit('subscribe', payload);
                    const x = await socket.inbox.waitFor((y) => y.event === 'rta_error',
                        T(5000), `rta_error for ${JSON.stringify(payload)}`, from);
                    checkError(x.args[0], 'invalid_subscription', field, rule);
                    assert.equal(x.args[0].event, 'subscribe', JSON.stringify(x.args[0]));
                }
                const from = socket.inbox.items.length;
                socket.emit('unsubscribe', { type: 'nope' });
                const x = await socket.inbox.waitFor((y) => y.event === 'rta_error', T(5000),
                    'rta_error for unsubscribe', from);
                checkError(x.args[0], 'invalid_subscription', 'type', 'enum');
                assert.equal(x.args[0].event, 'unsubscribe');
            });

        it('an unknown event is unknown_event (ack and rta_error)', async () => {
            const ack = await emitAck(socket, 'subscribe_all', { type: 'protocol' });
            assert.equal(ack?.ok, false, JSON.stringify(ack));
            checkError(ack.error, 'unknown_event');
            const from = socket.inbox.items.length;
            socket.emit('hello', 1);
            const x = await socket.inbox.waitFor((y) => y.event === 'rta_error', T(5000),
                'rta_error for an unknown event', from);
            checkError(x.args[0], 'unknown_event');
            assert.equal(x.args[0].event, 'hello');
        });

        it('valid subscriptions of every type; repeating one answers existing:true',
            async () => {
                const a = await subscribeOk(socket, { type: 'protocol', protocol: 'sub-p' });
                assert.deepEqual(a.subscription, { type: 'protocol', protocol: 'sub-p' });
                assert.equal(a.room, 'protocol:sub-p');
                assert.ok(!a.existing, JSON.stringify(a));
                const again = await subscribeOk(socket, { type: 'protocol', protocol: 'sub-p' });
                assert.equal(again.existing, true, JSON.stringify(again));
                assert.equal(again.room, 'protocol:sub-p');
                const p = await subscribeOk(socket, { type: 'price',
                    token: 'ethereum:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48' });
                assert.deepEqual(p.subscription, { type: 'price',
                    token: 'ethereum:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48' });
                assert.equal(p.room, 'price:ethereum:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48');
                const t = await subscribeOk(socket, { type: 'price_changes', threshold: 100 });
                assert.equal(t.subscription.type, 'price_changes');
                assert.equal(t.subscription.threshold, 100);
                // clean up: three removals, each answering the removed rooms
                let u = await emitAck(socket, 'unsubscribe', { type: 'protocol',
                    protocol: 'sub-p' });
                assert.deepEqual(u, { ok: true, removed: ['protocol:sub-p'] });
                u = await emitAck(socket, 'unsubscribe', { type: 'price',
                    token: 'ethereum:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48' });
                assert.deepEqual(u, { ok: true,
                    removed: ['price:ethereum:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48'] });
                u = await emitAck(socket, 'unsubscribe', { type: 'price_changes' });
                assert.equal(u.ok, true);
                assert.equal(u.removed.length, 1, JSON.stringify(u));
                u = await emitAck(socket, 'unsubscribe', { type: 'protocol',
                    protocol: 'sub-p' });
                assert.deepEqual(u, { ok: true, removed: [] }, 'nothing left to remove');
            });

        it('subscription_limit past realtime.max_subscriptions (3); repeats do not count',
            async () => {
                const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                for (const p of ['lim-a', 'lim-b', 'lim-c']) {
                    await subscribeOk(s, { type: 'protocol', protocol: p });
                }
                const again = await subscribeOk(s, { type: 'protocol', protocol: 'lim-b' });
                assert.equal(again.existing, true);
                const over = await emitAck(s, 'subscribe', { type: 'protocol',
                    protocol: 'lim-d' });
                assert.equal(over?.ok, false, JSON.stringify(over));
                checkError(over.error, 'subscription_limit');
                // and without ack
                const from = s.inbox.items.length;
                s.emit('subscribe', { type: 'price', token: 'coingecko:ethereum' });
                const x = await s.inbox.waitFor((y) => y.event === 'rta_error', T(5000),
                    'rta_error subscription_limit', from);
                checkError(x.args[0], 'subscription_limit');
                // a free slot can be used again
                await emitAck(s, 'unsubscribe', { type: 'protocol', protocol: 'lim-a' });
                await subscribeOk(s, { type: 'protocol', protocol: 'lim-d' });
                s.disconnect();
            });

        it('a free key may not use threshold feeds: tier_not_allowed', async () => {
            const k = await makeKey(rtad, { user: 'rt-free', tier: 'free' });
            const s = await sioConnect(rtad, { apiKey: k.key, transports: ['websocket'] });
            for (const type of ['tvl_changes', 'price_changes']) {
                const ack = await emitAck(s, 'subscribe', { type, threshold: 0.05 });
                assert.equal(ack?.ok, false, JSON.stringify(ack));
                checkError(ack.error, 'tier_not_allowed');
            }
            const from = s.inbox.items.length;
            s.emit('subscribe', { type: 'tvl_changes', threshold: 0.05 });
            const x = await s.inbox.waitFor((y) => y.event === 'rta_error', T(5000),
                'rta_error tier_not_allowed', from);
            checkError(x.args[0], 'tier_not_allowed');
            // rooms are fine for free keys
            await subscribeOk(s, { type: 'protocol', protocol: 'uniswap-v3' });
            await subscribeOk(s, { type: 'price', token: 'coingecko:ethereum' });
            s.disconnect();
        });
    });

    describe('delivery', () => {
        it('tvl_changes threshold 0.05: a 2% change is not delivered, 10% and -10% are',
            async () => {
                await ingestTvl(rtad, [{ protocol: 'thr-p', chain: 'ethereum', tvl: 1000 }]);
                const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                await subscribeOk(s, { type: 'tvl_changes', threshold: 0.05 });
                const small = await ingestTvl(rtad, [{ protocol: 'thr-p', chain: 'ethereum',
                    tvl: 1020 }]);
                const big = await ingestTvl(rtad, [{ protocol: 'thr-p', chain: 'ethereum',
                    tvl: 1122 }]);
                const down = await ingestTvl(rtad, [{ protocol: 'thr-p', chain: 'ethereum',
                    tvl: 1009.8 }]);
                const got = await s.inbox.waitCount((y) => y.event === 'tvl_change' &&
                    y.args[0]?.protocol === 'thr-p', 2, T(5000), 'two tvl_change');
                checkTvlChange(got[0].args[0], { protocol: 'thr-p', chain: 'ethereum',
                    previous: 1020, current: 1122, offset: big.firstOffset });
                checkTvlChange(got[1].args[0], { protocol: 'thr-p', chain: 'ethereum',
                    previous: 1122, current: 1009.8, offset: down.firstOffset });
                const offsets = received(s, 'tvl_change').map((x) => x.payload.offset);
                assert.ok(!offsets.includes(small.firstOffset), `2% change delivered: ${offsets}`);
                s.disconnect();
            });

        it('price room: price_change of that token only', async () => {
            await ingestPrices(rtad, [{ token: 'coingecko:ethereum', price: 3000 },
                { token: 'coingecko:bitcoin', price: 90000 }]);
            const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
            const ack = await subscribeOk(s, { type: 'price', token: 'coingecko:ethereum' });
            assert.equal(ack.room, 'price:coingecko:ethereum');
            const other = await ingestPrices(rtad, [{ token: 'coingecko:bitcoin',
                price: 91000 }]);
            const r = await ingestPrices(rtad, [{ token: 'coingecko:ethereum', price: 3012.5 }]);
            const { payload, args } = await waitEvent(s, 'price_change');
            checkPriceChange(payload, { token: 'coingecko:ethereum', previous: 3000,
                current: 3012.5, ts: r.timestamp, offset: r.firstOffset });
            assert.equal(args[args.length - 1], String(payload.offset));
            const all = received(s, 'price_change').map((x) => x.payload.offset);
            assert.deepEqual(all, [r.firstOffset], `other token delivered? ${other.firstOffset}`);
            // TVL changes do not reach a price room
            assert.deepEqual(received(s, 'tvl_change'), []);
            s.disconnect();
        });

        it('price_changes threshold: 1% not delivered, -10% delivered', async () => {
            await ingestPrices(rtad, [{ token: 'coingecko:thr-token', price: 100 }]);
            const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
            await subscribeOk(s, { type: 'price_changes', threshold: 0.05 });
            const small = await ingestPrices(rtad, [{ token: 'coingecko:thr-token',
                price: 101 }]);
            const big = await ingestPrices(rtad, [{ token: 'coingecko:thr-token',
                price: 90.9 }]);
            const { payload } = await waitEvent(s, 'price_change',
                (p) => p.token === 'coingecko:thr-token');
            checkPriceChange(payload, { token: 'coingecko:thr-token', previous: 101,
                current: 90.9, offset: big.firstOffset });
            const offsets = received(s, 'price_change').map((x) => x.payload.offset);
            assert.ok(!offsets.includes(small.firstOffset), `1% change delivered: ${offsets}`);
            s.disconnect();
        });

        it('a protocol room without chain receives every chain, protocol_update included',
            async () => {
                await ingestTvl(rtad, [
                    { protocol: 'multi', chain: 'ethereum', tvl: 100 },
                    { protocol: 'multi', chain: 'arbitrum', tvl: 200 },
                    { protocol: 'multi', chain: 'polygon', tvl: 300 },
                ]);
                const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                await subscribeOk(s, { type: 'protocol', protocol: 'multi' });
                const r = await ingestTvl(rtad, [
                    { protocol: 'multi', chain: 'ethereum', tvl: 110 },
                    { protocol: 'multi', chain: 'arbitrum', tvl: 220 },
                    { protocol: 'multi', chain: 'polygon', tvl: 330 },
                    { protocol: 'other-proto', chain: 'ethereum', tvl: 5 },
                ]);
                const got = await s.inbox.waitCount((y) => y.event === 'tvl_change', 3);
                const byChain = Object.fromEntries(got.map((x) => [x.args[0].chain, x.args[0]]));
                assert.deepEqual(Object.keys(byChain).sort(), ['arbitrum', 'ethereum', 'polygon']);
                checkTvlChange(byChain.ethereum, { protocol: 'multi', chain: 'ethereum',
                    previous: 100, current: 110, ts: r.timestamp });
                checkTvlChange(byChain.polygon, { protocol: 'multi', chain: 'polygon',
                    previous: 300, current: 330, ts: r.timestamp });

                // a new chain of a known protocol: protocol_update (chains_added) + tvl_change
                // with no previous value
                const nc = await ingestTvl(rtad, [{ protocol: 'multi', chain: 'base', tvl: 50 }]);
                const pu = await waitEvent(s, 'protocol_update', (p) => p.chain === 'base');
                assert.equal(pu.payload.protocol, 'multi');
                assert.deepEqual(pu.payload.update?.chains_added, ['base'],
                    JSON.stringify(pu.payload));
                assert.equal(pu.payload.currentTvl, 50, JSON.stringify(pu.payload));
                assert.ok(Number.isInteger(pu.payload.offset), JSON.stringify(pu.payload));
                assert.equal(pu.payload.source, 'ingest');
                const tc = await waitEvent(s, 'tvl_change', (p) => p.chain === 'base');
                checkTvlChange(tc.payload, { protocol: 'multi', chain: 'base', previous: null,
                    current: 50, ts: nc.timestamp });
                assert.ok(received(s, 'tvl_change').every((x) => x.payload.protocol === 'multi'),
                    'only the subscribed protocol');
                s.disconnect();
            });

        it('one delivery per event when several subscriptions match', async () => {
            await ingestTvl(rtad, [{ protocol: 'dup-p', chain: 'ethereum', tvl: 1000 }]);
            const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
            await subscribeOk(s, { type: 'protocol', protocol: 'dup-p' });
            await subscribeOk(s, { type: 'protocol', protocol: 'dup-p', chain: 'ethereum' });
            await subscribeOk(s, { type: 'tvl_changes', threshold: 0.01 });
            const r = await ingestTvl(rtad, [{ protocol: 'dup-p', chain: 'ethereum',
                tvl: 1100 }]);
            // barrier: a later event on the same rooms; events arrive in offset order
            const b = await ingestTvl(rtad, [{ protocol: 'dup-p', chain: 'ethereum',
                tvl: 1300 }]);
            await waitEvent(s, 'tvl_change', (p) => p.offset === b.firstOffset);
            const offsets = received(s, 'tvl_change').map((x) => x.payload.offset);
            assert.deepEqual(offsets, [r.firstOffset, b.firstOffset]);
            s.disconnect();
        });

        it('unsubscribe {type:protocol, protocol} without chain removes every chain',
            async () => {
                await ingestTvl(rtad, [
                    { protocol: 'uns-p', chain: 'ethereum', tvl: 10 },
                    { protocol: 'uns-p', chain: 'arbitrum', tvl: 20 },
                    { protocol: 'uns-barrier', chain: 'ethereum', tvl: 1 },
                ]);
                const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                await subscribeOk(s, { type: 'protocol', protocol: 'uns-p', chain: 'ethereum' });
                await subscribeOk(s, { type: 'protocol', protocol: 'uns-p', chain: 'arbitrum' });
                await subscribeOk(s, { type: 'protocol', protocol: 'uns-barrier' });
                const u = await emitAck(s, 'unsubscribe', { type: 'protocol',
                    protocol: 'uns-p' });
                assert.equal(u?.ok, true, JSON.stringify(u));
                assert.deepEqual([...u.removed].sort(),
                    ['protocol:uns-p:arbitrum', 'protocol:uns-p:ethereum']);
                await ingestTvl(rtad, [{ protocol: 'uns-p', chain: 'ethereum', tvl: 11 },
                    { protocol: 'uns-p', chain: 'arbitrum', tvl: 21 }]);
                const b = await ingestTvl(rtad, [{ protocol: 'uns-barrier', chain: 'ethereum',
                    tvl: 2 }]);
                await waitEvent(s, 'tvl_change', (p) => p.offset === b.firstOffset);
                assert.deepEqual(received(s, 'tvl_change').map((x) => x.payload.protocol),
                    ['uns-barrier']);
                s.disconnect();
            });

        it('unsubscribe {type:tvl_changes} without threshold removes every such feed',
            async () => {
                const s = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                await subscribeOk(s, { type: 'tvl_changes', threshold: 0.05 });
                await subscribeOk(s, { type: 'tvl_changes', threshold: 0.5 });
                await subscribeOk(s, { type: 'price_changes', threshold: 0.5 });
                const one = await emitAck(s, 'unsubscribe', { type: 'tvl_changes',
                    threshold: 0.5 });
                assert.equal(one.ok, true);
                assert.equal(one.removed.length, 1, JSON.stringify(one));
                await subscribeOk(s, { type: 'tvl_changes', threshold: 0.25 });
                const u = await emitAck(s, 'unsubscribe', { type: 'tvl_changes' });
                assert.equal(u?.ok, true, JSON.stringify(u));
                assert.equal(u.removed.length, 2, JSON.stringify(u));
                const again = await emitAck(s, 'unsubscribe', { type: 'tvl_changes' });
                assert.deepEqual(again.removed, []);
                // the price feed is still there
                const pc = await emitAck(s, 'unsubscribe', { type: 'price_changes' });
                assert.equal(pc.removed.length, 1, JSON.stringify(pc));
                s.disconnect();
            });

        it('subscriptions are per connection: a second socket of the same key is separate',
            async () => {
                await ingestTvl(rtad, [{ protocol: 'sep-p', chain: 'ethereum', tvl: 10 }]);
                const a = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                const b = await sioConnect(rtad, { apiKey: proKey, transports: ['websocket'] });
                await subscribeOk(a, { type: 'protocol', protocol: 'sep-p' });
                await subscribeOk(b, { type: 'protocol', protocol: 'sep-barrier' });
                await ingestTvl(rtad, [{ protocol: 'sep-p', chain: 'ethereum', tvl: 12 },
                    { protocol: 'sep-barrier', chain: 'ethereum', tvl: 1 }]);
                await waitEvent(a, 'tvl_change');
                await waitEvent(b, 'protocol_update');
                assert.deepEqual(received(b, 'tvl_change'), []);
                assert.deepEqual(received(a, 'protocol_update'), []);
                a.disconnect();
                b.disconnect();
            });
    });
});
